// Command tcptrace-bpf traces TCP state transitions with eBPF and writes
// per-connection timelines and per-state dwell-time histograms.
package main

import (
	"errors"
	"fmt"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/buildinfo"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: tcptrace-bpf [flags]
       tcptrace-bpf analyze [flags] [FILE|-]   (read a recording; see analyze --help)
       tcptrace-bpf report [flags] [FILE|-] -o report.html   (an HTML page of it)
       tcptrace-bpf top [flags]                (a live full-screen view; see top --help)
       tcptrace-bpf incident [flags]           (only trouble, grouped; see incident --help)
       tcptrace-bpf demo [--top] [flags]       (the four classic piles, reproduced and traced)

Trace every TCP state transition on this host with eBPF, and write
per-connection timelines and per-state dwell-time histograms.

Examples:
  sudo tcptrace-bpf --port 8080                  NDJSON to stdout
  sudo tcptrace-bpf --port 443 --format text     a table, histograms at exit
  sudo tcptrace-bpf --emit histograms --duration 60s --format text

Flags:
`

func main() {
	buildinfo.Version = version
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "analyze" || args[0] == "report") {
		return runOffline(args[0], args[1:], os.Stdin, stdout, stderr)
	}
	runRole(args) // a server or client of the demo: runs and exits
	if len(args) > 0 && args[0] == "demo" {
		return runDemo(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "top" {
		return runTop(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "incident" {
		return runIncident(args[1:], stdout, stderr)
	}
	cfg, done, err := parseFlags(args, stdout)
	if done {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf: %v\n", err)
		return 2
	}
	return trace(cfg, stdout, stderr)
}

// traceOpts are the tracing flags that need parsing beyond pflag's.
type traceOpts struct {
	ports, emit, format, attach, ringSize, states, stuck, netns *string
	v4, v6, help, showVer, verbose                              *bool
	pid                                                         *uint32
}

// traceFlags defines the tracing flags on cfg; docs/cli.md is rendered
// from the same set (TestCLIReference).
func traceFlags(cfg *config.Config) (*flag.FlagSet, *traceOpts) {
	fs := flag.NewFlagSet("tcptrace-bpf", flag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	o := &traceOpts{
		ports:    fs.String("port", "", "only sockets with this local or remote port; a comma-separated list (applied in the kernel)"),
		v4:       fs.BoolP("ipv4", "4", false, "IPv4 only (v4-mapped IPv6 counts as IPv4)"),
		v6:       fs.BoolP("ipv6", "6", false, "IPv6 only"),
		pid:      fs.Uint32("pid", 0, "only sockets owned by this process (thread group) id"),
		netns:    fs.String("netns", "", "only sockets in the network namespace with this inode (ls -L -i /proc/PID/ns/net), or self: this shell's, whose tally is what ss shows here"),
		states:   fs.String("state", "", "only what concerns these states: transitions into or out of them, connections that passed through them (STATE[,STATE...]; SYN_RCVD = SYN_RECV)"),
		emit:     fs.String("emit", cfg.Emit.String(), "records to write: transitions, connections, histograms, states, stuck (a comma-separated list), all or none; lost and stats records are always written"),
		format:   fs.String("format", string(cfg.Format), "ndjson or text"),
		stuck:    fs.String("stuck", config.StuckString(cfg.Stuck), "report a connection once when it stays in STATE longer than DURATION (STATE=DURATION,...; the list replaces the defaults; none: off)"),
		attach:   fs.String("attach", string(cfg.Attach), "tp_btf, or tracepoint for kernels without tp_btf (mounts tracefs if needed)"),
		ringSize: fs.String("ring-size", formatSize(cfg.RingSize), "BPF ring buffer size, a power of two (e.g. 8MiB, 64MiB)"),
	}
	fs.BoolVar(&cfg.UTC, "utc", false, "with --format text: show times in UTC, not local time (NDJSON is always UTC)")
	fs.DurationVar(&cfg.Interval, "interval", 0, "write histograms and states records every DURATION as well as at exit (0: at exit only; at least 100ms)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after DURATION (0: until SIGINT/SIGTERM)")
	fs.DurationVar(&cfg.Flush, "flush", cfg.Flush, "longest time a record waits inside the tracer before it is written")
	fs.StringVarP(&cfg.Output, "output", "o", "", "write records to FILE (appended, created 0640; SIGHUP reopens it) instead of stdout")
	fs.DurationVar(&cfg.MinDwell, "min-dwell", 0, "only transitions out of a state held at least DURATION, and connections with such a stay (in the kernel with --emit transitions)")
	fs.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9917; a bare :PORT binds to loopback)")
	fs.StringVar(&cfg.Cgroup, "cgroup", "", "only sockets created in this cgroup (v2) or below it: a path such as /system.slice/nginx.service")
	fs.BoolVar(&cfg.CgroupFields, "cgroup-fields", false, "add the owner's cgroup, container_id and unit to connection and stuck records (read once per process from /proc/PID/cgroup)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, fmt.Sprintf("sockets tracked at once, in the kernel's socket table (preallocated: 256 bytes each with the transitions it holds, 67.1 MB at the default) and the tracer's; beyond it the least recently active are written early, marked evicted. Kernel memory at the defaults, the maps' memlock with the ring: %d MiB (--emit histograms: %d MiB)", config.KernelMiBRecords, config.KernelMiBHistograms))
	fs.DurationVar(&cfg.WalkInterval, "walk-interval", cfg.WalkInterval, "walk the kernel's sockets every DURATION for what needs live sockets: socket gauges, half-open and TIME_WAIT piles, holders of stuck sockets, progress records (0: only at start, --interval and exit; cost in docs/performance.md)")
	fs.DurationVar(&cfg.Progress, "progress", 0, "every DURATION, a progress record for each open connection at least that old, idle or not (0: off; at least 1s)")
	fs.IntVar(&cfg.ProgressMax, "progress-max", cfg.ProgressMax, "at most N progress records per --progress interval; the rest are counted in stats (progress_skipped) and come first next time")
	o.help = fs.BoolP("help", "h", false, "show this help")
	o.showVer = fs.Bool("version", false, "print the version and exit")
	o.verbose = fs.Bool("verbose", false, "with --version: also what this kernel offers (BTF, ring buffer, socket storage)")
	return fs, o
}

// parseFlags returns the configuration, or done for --help/--version.
func parseFlags(args []string, stdout io.Writer) (cfg config.Config, done bool, err error) {
	cfg, _, done, err = parseTraceFlags(args, usage, stdout)
	return cfg, done, err
}

// parseTraceFlags is parseFlags for any command that traces, with its
// usage text; the flag set tells what was given.
func parseTraceFlags(args []string, usage string, stdout io.Writer) (cfg config.Config, fs *flag.FlagSet, done bool, err error) {
	cfg = config.Defaults()
	fs, o := traceFlags(&cfg) // the flags write into cfg
	done, err = parseTraceFlagSet(fs, o, &cfg, args, usage, stdout)
	return cfg, fs, done, err
}

func parseTraceFlagSet(fs *flag.FlagSet, o *traceOpts, cfg *config.Config, args []string, usage string, stdout io.Writer) (done bool, err error) {
	if err := fs.Parse(args); err != nil {
		return false, fmt.Errorf("%v (see --help)", err)
	}
	if *o.help {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return true, nil
	}
	if *o.showVer {
		fmt.Fprintf(stdout, "tcptrace-bpf %s\n", buildinfo.Read())
		if *o.verbose {
			for _, f := range kernelFeatures() {
				fmt.Fprintf(stdout, "  %s\n", f)
			}
		}
		return true, nil
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if *o.verbose {
		return false, errors.New("--verbose goes with --version only: drop it, or add --version")
	}
	if cfg.Ports, err = parsePorts(*o.ports); err != nil {
		return false, err
	}
	switch {
	case *o.v4 && *o.v6:
		return false, errors.New("-4 and -6 exclude each other: give one, or neither for both")
	case *o.v4:
		cfg.Family = 4
	case *o.v6:
		cfg.Family = 6
	}
	cfg.PID = *o.pid
	if cfg.Netns, err = parseNetns(*o.netns); err != nil {
		return false, err
	}
	if cfg.Emit, err = config.ParseEmit(*o.emit); err != nil {
		return false, err
	}
	cfg.Format = config.Format(*o.format)
	cfg.Attach = config.Attach(*o.attach)
	if cfg.States, err = config.ParseStates(*o.states); err != nil {
		return false, err
	}
	if cfg.Stuck, err = config.ParseStuck(*o.stuck); err != nil {
		return false, err
	}
	if cfg.RingSize, err = parseSize(*o.ringSize); err != nil {
		return false, fmt.Errorf("--ring-size: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return false, err
	}
	// Stuck records need the connection table, which --emit without
	// stuck (and without --metrics, which counts them) does not keep.
	if fs.Changed("stuck") && cfg.Emit&config.EmitStuck == 0 && cfg.Metrics == "" && cfg.Stuck != ([len(cfg.Stuck)]time.Duration{}) {
		return false, fmt.Errorf("--stuck writes stuck records, and --emit %s leaves them out: add stuck to --emit (e.g. --emit %s,stuck)", cfg.Emit, cfg.Emit)
	}
	return false, nil
}

func parsePorts(s string) ([]uint16, error) {
	if s == "" {
		return nil, nil
	}
	var ports []uint16
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("invalid --port %q: a port is a number from 1 to 65535", part)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

// formatSize writes a byte count as parseSize reads it, in the largest
// unit that divides it.
func formatSize(n int) string {
	for _, u := range []struct {
		name string
		size int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.Itoa(n/u.size) + u.name
		}
	}
	return strconv.Itoa(n)
}

// parseSize reads a byte count with an optional KiB/MiB/GiB (or K/M/G) suffix.
func parseSize(s string) (int, error) {
	num := strings.TrimRight(s, "KMGiBkmgb")
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "b"))
	mult := map[string]int{"": 1, "K": 1 << 10, "KI": 1 << 10, "M": 1 << 20, "MI": 1 << 20, "G": 1 << 30, "GI": 1 << 30}[unit]
	n, err := strconv.Atoi(num)
	if err != nil || mult == 0 || n <= 0 {
		return 0, fmt.Errorf("invalid size %q (e.g. 16MiB)", s)
	}
	return n * mult, nil
}

// parseNetns reads --netns: an inode, or self (the namespace this
// process runs in: the one ss shows from the same shell).
func parseNetns(s string) (uint32, error) {
	switch s {
	case "", "0":
		return 0, nil
	case "self":
		ino, err := selfNetns()
		if err != nil {
			return 0, fmt.Errorf("--netns self: %v", err)
		}
		return ino, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid --netns %q: an inode number (ls -L -i /proc/PID/ns/net) or self", s)
	}
	return uint32(n), nil
}
