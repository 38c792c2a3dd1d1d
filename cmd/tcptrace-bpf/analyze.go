package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/recording"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/tracer"
)

const analyzeUsage = `Usage: tcptrace-bpf analyze [flags] [FILE|-]

Read a recording (tcptrace-bpf's NDJSON) and print the same table,
connection lines and dwell-time histograms as a live --format text run.
No privileges needed. Bad lines are reported with their number and
skipped.

Flags:
`

// runAnalyze is the analyze subcommand; it returns the exit code.
func runAnalyze(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ports := fs.String("port", "", "only records with this local or remote port (comma-separated)")
	states := fs.String("state", "", "only what concerns these states")
	since := fs.String("since", "", "only records at or after this time (RFC 3339)")
	until := fs.String("until", "", "only records at or before this time (RFC 3339)")
	format := fs.String("format", string(output.FormatText), "text, or ndjson: the selected records again")
	help := fs.BoolP("help", "h", false, "show this help")
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tcptrace-bpf analyze: %v\n", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return fail(fmt.Errorf("%v (see --help)", err))
	}
	if *help {
		fmt.Fprint(stdout, analyzeUsage)
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
	if f.States, err = tracer.ParseStates(*states); err != nil {
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
			fmt.Fprintf(stderr, "tcptrace-bpf analyze: cannot read the recording: %v\n", err)
			return 1
		}
		defer file.Close()
		in = file
	}
	var sink output.Sink
	switch output.Format(*format) {
	case output.FormatText:
		sink = output.NewText(stdout, recording.Clock)
	case output.FormatNDJSON:
		sink = output.NewNDJSON(stdout, recording.Clock)
	default:
		return fail(fmt.Errorf("--format must be text or ndjson, not %q", *format))
	}
	s, err := recording.Replay(in, f, sink, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf analyze: %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stderr, "tcptrace-bpf analyze: %d lines, %d bad, %d transitions and %d connections selected; the recording reports %d transitions lost\n",
		s.Lines, s.Bad, s.Transitions, s.Connections, s.Lost)
	return 0
}
