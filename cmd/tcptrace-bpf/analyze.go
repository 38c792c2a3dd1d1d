package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/recording"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/report"
)

const analyzeUsage = `Usage: tcptrace-bpf analyze [flags] [FILE|-]

Read a recording (tcptrace-bpf's NDJSON) and print the same table,
connection lines and dwell-time histograms as a live --format text run.
No privileges needed. Bad lines are reported with their number and
skipped.

Flags:
`

const reportUsage = `Usage: tcptrace-bpf report [flags] [FILE|-] -o report.html

Turn a recording (tcptrace-bpf's NDJSON) into one self-contained HTML page:
per-state dwell histograms on a log time axis, the state counts over time,
who holds the troubled states (CLOSE_WAIT, SYN_SENT, SYN_RECV, FIN_WAIT2,
TIME_WAIT), a waterfall of the longest and stuck connections on a
wall-clock axis, and each listener's queues over time (record with
--interval for the last two over time). No privileges needed; the page
fetches nothing.

Flags:
`

// offlineOpts are the flags of analyze and report.
type offlineOpts struct {
	ports, states, since, until, format, output *string
	help, utc                                   *bool
}

// offlineFlags defines the flags of analyze or report: each command has
// only the flags it uses, so a flag of the other is refused, not ignored.
func offlineFlags(cmd string) (*flag.FlagSet, *offlineOpts) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	empty := ""
	o := &offlineOpts{
		ports:  fs.String("port", "", "only records with this local or remote port (comma-separated)"),
		states: fs.String("state", "", "only what concerns these states (STATE[,STATE...])"),
		since:  fs.String("since", "", "only records at or after this time (RFC 3339)"),
		until:  fs.String("until", "", "only records at or before this time (RFC 3339)"),
		format: &empty,
		output: &empty,
	}
	if cmd == "report" {
		o.output = fs.StringP("output", "o", "", "the HTML file to write")
	} else {
		o.format = fs.String("format", string(config.FormatText), "text, or ndjson: the selected records again")
		o.utc = fs.Bool("utc", false, "with --format text: show times in UTC, not local time (as the live --utc)")
	}
	o.help = fs.BoolP("help", "h", false, "show this help")
	return fs, o
}

// runOffline runs the analyze or report subcommand; it returns the exit
// code.
func runOffline(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, o := offlineFlags(cmd)
	ports, states, since, until, format, htmlOut, help := o.ports, o.states, o.since, o.until, o.format, o.output, o.help
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tcptrace-bpf %s: %v\n", cmd, err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return fail(fmt.Errorf("%v (see --help)", err))
	}
	if *help {
		if cmd == "report" {
			fmt.Fprint(stdout, reportUsage)
		} else {
			fmt.Fprint(stdout, analyzeUsage)
		}
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	var f recording.Filter
	ps, err := parsePorts(*ports)
	if err != nil {
		return fail(err)
	}
	if len(ps) > 0 {
		f.Ports = map[uint16]bool{}
		for _, p := range ps {
			f.Ports[p] = true
		}
	}
	if f.States, err = config.ParseStates(*states); err != nil {
		return fail(err)
	}
	for _, t := range []struct {
		flag string
		val  string
		dst  *time.Time
	}{{"--since", *since, &f.Since}, {"--until", *until, &f.Until}} {
		if t.val == "" {
			continue
		}
		if *t.dst, err = time.Parse(time.RFC3339Nano, t.val); err != nil {
			return fail(fmt.Errorf("invalid %s %q: want an RFC 3339 time like 2026-11-30T16:25:07Z", t.flag, t.val))
		}
	}
	if fs.NArg() > 1 {
		return fail(errors.New("give one recording (FILE or - for stdin)"))
	}
	in := stdin
	name := "-"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		name = fs.Arg(0)
		file, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "tcptrace-bpf %s: cannot read the recording: %v\n", cmd, err)
			return 1
		}
		defer file.Close()
		in = file
	}
	if cmd == "report" {
		return writeReport(in, name, *htmlOut, f, stderr)
	}
	var sink pipeline.Sink
	zone := time.Local
	switch {
	case *o.utc && config.Format(*format) != config.FormatText:
		return fail(errors.New("--utc sets the zone of --format text; NDJSON times are always UTC: drop --utc"))
	case *o.utc:
		zone = time.UTC
	}
	switch config.Format(*format) {
	case config.FormatText:
		sink = output.NewText(stdout, recording.Clock, zone)
	case config.FormatNDJSON:
		sink = output.NewNDJSON(stdout, recording.Clock)
	default:
		return fail(fmt.Errorf("--format must be text or ndjson, not %q", *format))
	}
	s, err := recording.Replay(in, f, sink, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf analyze: %s: %v\n", name, err)
		return 1
	}
	summarize(stderr, "analyze", s)
	return 0
}

func summarize(stderr io.Writer, cmd string, s recording.Summary) {
	reclaimed := ""
	if s.Reclaimed > 0 {
		reclaimed = fmt.Sprintf(", and %d sockets with partial timelines (the kernel's table was full: --max-conns)", s.Reclaimed)
	}
	fmt.Fprintf(stderr, "tcptrace-bpf %s: %d lines, %d bad, %d transitions and %d connections selected; the recording reports %d transitions lost%s\n",
		cmd, s.Lines, s.Bad, s.Transitions, s.Connections, s.Lost, reclaimed)
}

// reportMode is the page's mode: it holds what the recording holds
// (addresses, processes), which the tracer writes 0640, so it is no more
// readable than that: not world-readable.
const reportMode = 0o640

// writeReport renders the HTML report; the file is written whole or not
// at all (a temporary file renamed into place).
func writeReport(in io.Reader, name, out string, f recording.Filter, stderr io.Writer) int {
	if out == "" {
		fmt.Fprintln(stderr, "tcptrace-bpf report: give the page to write with -o report.html")
		return 2
	}
	c := report.NewCollector(recording.Clock)
	s, err := recording.Replay(in, f, c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf report: %s: %v\n", name, err)
		return 1
	}
	c.Recorded(s) // lost records and bad lines, for the verdict
	tmp, err := os.CreateTemp(filepath.Dir(out), ".report-*.html")
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf report: cannot write %s: %v\n", out, err)
		return 1
	}
	defer os.Remove(tmp.Name())
	title := "tcptrace-bpf report: " + filepath.Base(name)
	if err := c.Render(tmp, title); err != nil {
		tmp.Close()
		fmt.Fprintf(stderr, "tcptrace-bpf report: %v\n", err)
		return 1
	}
	if err := tmp.Close(); err != nil || os.Chmod(tmp.Name(), reportMode) != nil || os.Rename(tmp.Name(), out) != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf report: cannot write %s\n", out)
		return 1
	}
	summarize(stderr, "report", s)
	return 0
}
