// Package config is what a run of the tracer is asked to do: the flags'
// values, their defaults and validation, and the start-up line that names
// them. Pure Go with no operating-system imports, so the offline commands
// build everywhere.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// Emit selects the record types written.
type Emit uint8

const (
	EmitTransitions Emit = 1 << iota
	EmitConnections
	EmitHistograms
	// EmitStates: the states tally and the listener records of each
	// socket walk (at start, every --interval, at exit).
	EmitStates
	// EmitStuck: a stuck record when a connection outstays --stuck.
	EmitStuck
	EmitAll = EmitTransitions | EmitConnections | EmitHistograms | EmitStates | EmitStuck
	// EmitDefault is a bare tcptrace-bpf's output: one record per
	// connection (its timeline: every state with its entry time and
	// dwell), the histograms, states and stuck records. Per-transition
	// records are opt-in: they cost 1.5-2.8x the bytes for what the timeline
	// already says.
	EmitDefault = EmitAll &^ EmitTransitions
)

// emitNames are the --emit values, in the order String lists them.
var emitNames = []struct {
	bit  Emit
	name string
}{{EmitTransitions, "transitions"}, {EmitConnections, "connections"}, {EmitHistograms, "histograms"}, {EmitStates, "states"}, {EmitStuck, "stuck"}}

// ParseEmit reads a comma-separated list of transitions, connections,
// histograms, states, stuck, or "all" or "none". lost and stats records
// are written whatever it says: they account for the others.
func ParseEmit(s string) (Emit, error) {
	var e Emit
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(strings.ToLower(part)) {
		case "transitions", "transition":
			e |= EmitTransitions
		case "connections", "connection":
			e |= EmitConnections
		case "histograms", "histogram":
			e |= EmitHistograms
		case "states", "state":
			e |= EmitStates
		case "stuck":
			e |= EmitStuck
		case "all":
			e |= EmitAll
		case "none":
		default:
			return 0, fmt.Errorf("unknown --emit value %q (use transitions, connections, histograms, states, stuck, all or none)", part)
		}
	}
	return e, nil
}

// String lists the selected record types.
func (e Emit) String() string {
	if e == EmitAll {
		return "all"
	}
	var names []string
	for _, x := range emitNames {
		if e&x.bit != 0 {
			names = append(names, x.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Config is everything a run needs.
type Config struct {
	Ports    []uint16
	Family   int    // 0, 4 or 6
	PID      uint32 // owner; 0 any
	Netns    uint32 // netns inode; 0 any
	Emit     Emit
	Interval time.Duration // histograms every Interval; 0: at exit only
	Duration time.Duration // stop after; 0: until a signal
	Flush    time.Duration // longest time a record waits in the tracer
	Output   string        // file, or "" / "-" for stdout
	Format   Format
	Attach   Attach
	RingSize int // bytes
	MaxConns int // open connections tracked at once
	// Stuck reports a connection once when it stays in a state longer
	// than Stuck[state] (0: not watched).
	Stuck [event.NumStates]time.Duration
	// States, when any is set, keeps only what concerns those states:
	// transitions into or out of them, connections that passed through
	// them, their histograms, counts and stuck reports.
	States [event.NumStates]bool
	// MinDwell keeps only transitions out of a state held at least this
	// long, and connections with such a stay. In the kernel when only
	// transitions are emitted.
	MinDwell time.Duration
	// CgroupFields adds the owner's cgroup path, container ID and
	// systemd unit to connection and stuck records, read from
	// /proc/PID/cgroup once per process.
	CgroupFields bool
	// UTC shows the text output's times in UTC instead of local time
	// (NDJSON times are always UTC).
	UTC bool
	// Cgroup keeps only sockets created in this cgroup (v2) or below it:
	// a path in the cgroup2 mount, or relative to it.
	Cgroup string
	// Metrics serves Prometheus metrics at http://Metrics/metrics; a
	// bare ":PORT" binds to loopback.
	Metrics string
	// WalkInterval: how often the kernel's sockets are walked, for
	// everything that needs live sockets rather than transitions (the
	// socket gauges, half-open and TIME_WAIT piles, the holders of stuck
	// sockets, progress records). 0: only at start, --interval and exit.
	WalkInterval time.Duration
	// Progress: every Progress, an open connection at least that old
	// gets a progress record; 0: off. At most ProgressMax per interval.
	Progress    time.Duration
	ProgressMax int

	// KeepPrivileges skips dropping capabilities after attach: tests run
	// many tracers in one process, which must stay privileged.
	KeepPrivileges bool

	// WakeupBytes overrides the reader wakeup watermark (default: an
	// eighth of the ring). 1 wakes the reader on every record, as the
	// peer tools do: the tests use it to provoke kernel recursion.
	WakeupBytes int
}

// Defaults returns the configuration of a bare `tcptrace-bpf`.
func Defaults() Config {
	return Config{
		Emit:     EmitDefault,
		Flush:    100 * time.Millisecond,
		Format:   FormatNDJSON,
		Attach:   AttachBTF,
		RingSize: 16 << 20,
		MaxConns: 262144,
		Stuck:    DefaultStuck(),

		WalkInterval: time.Second,
		ProgressMax:  1000,
	}
}

// The kernel memory the maps hold at the defaults (the sum of their
// memlock, the ring buffer and the preallocated socket table included), in
// MiB rounded up, as --help states it: with records (the default output,
// --emit all) and with --emit histograms alone (no socket table of
// owners, no ring). Measured and pinned by internal/tracer's
// TestKernelMemoryAtDefaults; --max-conns and --ring-size scale it.
const (
	KernelMiBRecords    = 84
	KernelMiBHistograms = 16
)

// DefaultStuck is the --stuck default (its flag shows StuckString of it).
func DefaultStuck() [event.NumStates]time.Duration {
	var d [event.NumStates]time.Duration
	d[event.SynSent] = 3 * time.Second
	d[event.SynRecv] = 3 * time.Second
	d[event.CloseWait] = 30 * time.Second
	d[event.LastAck] = 30 * time.Second
	d[event.FinWait2] = 60 * time.Second
	return d
}

// StuckString writes d as --stuck takes it: "STATE=DURATION,..." in the
// order of the states, or "none".
func StuckString(d [event.NumStates]time.Duration) string {
	var out []string
	for st, v := range d {
		if v > 0 {
			s := v.String()
			if strings.HasSuffix(s, "m0s") {
				s = strings.TrimSuffix(s, "0s") // 1m0s: 1m
			}
			out = append(out, fmt.Sprintf("%s=%s", event.State(st), s))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// ParseStuck reads "STATE=DURATION[,...]" or "none". The states given
// replace the defaults.
func ParseStuck(s string) ([event.NumStates]time.Duration, error) {
	var d [event.NumStates]time.Duration
	err := parseStateList(s, "--stuck", "STATE=DURATION, e.g. CLOSE_WAIT=30s", func(st event.State, val string) error {
		if !st.Dwells() {
			return fmt.Errorf("invalid --stuck: %s cannot be watched (no connection dwells there in view of the tracer)", st)
		}
		v, err := time.ParseDuration(val)
		if err != nil || v <= 0 {
			return fmt.Errorf("invalid --stuck duration %q for %s: want a positive duration like 30s", val, st)
		}
		d[st] = v
		return nil
	})
	return d, err
}

// DefaultPiles is the --pile default (the incident command): TIME_WAIT
// past 1000 toward one destination (a client that closes first keeps a
// local port per connection for 60 s; the default range has 28,232).
const DefaultPiles = "TIME_WAIT=1000"

// ParsePiles reads --pile: "STATE=N[,...]" or "none", the count past
// which a group of sockets in STATE is trouble. TIME_WAIT only: the other
// states are watched by age (--stuck).
func ParsePiles(s string) ([event.NumStates]uint64, error) {
	var p [event.NumStates]uint64
	err := parseStateList(s, "--pile", "STATE=N, e.g. TIME_WAIT=1000", func(st event.State, val string) error {
		if st != event.TimeWait {
			return fmt.Errorf("invalid --pile: %s: only TIME_WAIT piles are counted (the other states are watched by --stuck)", st)
		}
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("invalid --pile count %q for %s: want a positive number", val, st)
		}
		p[st] = n
		return nil
	})
	return p, err
}

// parseStateList reads "STATE=VALUE[,...]" or "none" for flag, handing
// each state and its trimmed value to each.
func parseStateList(s, flag, want string, each func(event.State, string) error) error {
	if strings.TrimSpace(strings.ToLower(s)) == "none" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("invalid %s %q: want %s", flag, part, want)
		}
		st, err := event.ParseState(name)
		if err != nil {
			return fmt.Errorf("invalid %s: %w", flag, err)
		}
		if err := each(st, strings.TrimSpace(val)); err != nil {
			return err
		}
	}
	return nil
}

// Validate reports the first invalid setting, worded for the command line.
func (c *Config) Validate() error {
	switch {
	case c.Family != 0 && c.Family != 4 && c.Family != 6:
		return fmt.Errorf("family must be 4 or 6, not %d", c.Family)
	case c.Interval < 0:
		return fmt.Errorf("--interval must not be negative (got %s); 0 means histograms only at exit", c.Interval)
	case c.Interval > 0 && c.Interval < MinInterval:
		return fmt.Errorf("--interval must be 0 or at least %s, how often the tracer's loop runs (got %s)", MinInterval, c.Interval)
	case c.Duration < 0:
		return fmt.Errorf("--duration must not be negative (got %s); 0 means until interrupted", c.Duration)
	case c.Flush <= 0 || c.Flush > time.Minute:
		return fmt.Errorf("--flush must be between 1ms and 1m (got %s)", c.Flush)
	case c.Format != FormatNDJSON && c.Format != FormatText:
		return fmt.Errorf("--format must be ndjson or text, not %q", c.Format)
	case c.RingSize < 4096 || c.RingSize&(c.RingSize-1) != 0 || c.RingSize > 1<<30:
		return fmt.Errorf("--ring-size must be a power of two between 4KiB and 1GiB (got %d)", c.RingSize)
	case c.MaxConns < 1:
		return fmt.Errorf("--max-conns must be at least 1 (got %d)", c.MaxConns)
	case c.MaxConns > MaxMaxConns:
		return fmt.Errorf("--max-conns must be at most %d (got %d)", MaxMaxConns, c.MaxConns)
	case c.MinDwell < 0:
		return fmt.Errorf("--min-dwell must not be negative (got %s)", c.MinDwell)
	case c.Emit == 0 && c.Metrics == "":
		return fmt.Errorf("--emit none writes no records: give --metrics ADDR for a pure Prometheus exporter, or name the records to write")
	case c.Interval > 0 && c.Emit&(EmitHistograms|EmitStates) == 0 && c.Metrics == "":
		return fmt.Errorf("--interval writes histograms and states records, and --emit %s has neither: add histograms or states to --emit, or drop --interval", c.Emit)
	case c.CgroupFields && c.Emit&(EmitConnections|EmitStuck) == 0:
		return fmt.Errorf("--cgroup-fields adds fields to connection and stuck records, and --emit %s has neither: add one to --emit, or drop --cgroup-fields", c.Emit)
	case c.UTC && c.Format != FormatText:
		return fmt.Errorf("--utc sets the zone of --format text; NDJSON times are always UTC: add --format text, or drop --utc")
	case c.WalkInterval < 0 || (c.WalkInterval > 0 && c.WalkInterval < MinInterval):
		return fmt.Errorf("--walk-interval must be 0 or at least %s (got %s)", MinInterval, c.WalkInterval)
	case c.Progress < 0 || (c.Progress > 0 && c.Progress < time.Second):
		return fmt.Errorf("--progress must be 0 (off) or at least 1s (got %s)", c.Progress)
	case c.Progress > 0 && c.ProgressMax < 1:
		return fmt.Errorf("--progress-max must be at least 1 (got %d)", c.ProgressMax)
	case c.MinDwell > 0 && c.Emit&(EmitTransitions|EmitConnections) == 0:
		return fmt.Errorf("--min-dwell selects transitions and connections, and --emit %s has neither: add one to --emit, or drop --min-dwell", c.Emit)
	}
	if c.Metrics != "" {
		if err := checkListenAddr(c.Metrics); err != nil {
			return fmt.Errorf("invalid --metrics %q: %v; give HOST:PORT such as 127.0.0.1:9917, [::1]:9917 or :9917", c.Metrics, err)
		}
	}
	if _, err := ParseAttach(string(c.Attach)); err != nil {
		return err
	}
	return nil
}

// TextZone is the zone of the text output's times.
func (c *Config) TextZone() *time.Location {
	if c.UTC {
		return time.UTC
	}
	return time.Local
}

// MinInterval is the shortest --interval: the tracer's loop runs at
// most every 100 ms, so a shorter one could not be kept.
const MinInterval = 100 * time.Millisecond

// MaxMaxConns bounds --max-conns: the connection table is sized from it
// (memory grows with it: docs/performance.md).
const MaxMaxConns = 1 << 24

// checkListenAddr checks --metrics before anything is loaded: a port
// number, and a host that is empty (loopback), an IP address or a name.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" || host == "localhost" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	return nil
}

// Describe is the "what, which filters" part of the start-up line: every
// filter in force, what is written where, and the stuck watch.
func (c *Config) Describe() string {
	out := c.Output
	if out == "" || out == "-" {
		out = "stdout"
	}
	every := "at exit"
	if c.Interval > 0 {
		every = "every " + c.Interval.String() + " and at exit"
	}
	return fmt.Sprintf("filters: %s; emit %s as %s to %s; histograms and states %s; stuck %s", c.Filters(), c.Emit, c.Format, out, every, c.stuckWatch())
}

// DescribeView is Describe for a run whose records go to a live view
// (top), not to an output: the filters and the stuck watch.
func (c *Config) DescribeView() string {
	return fmt.Sprintf("filters: %s; records to the live view; stuck %s", c.Filters(), c.stuckWatch())
}

// Filters names every filter in force ("none" without any).
func (c *Config) Filters() string {
	var f []string
	if len(c.Ports) > 0 {
		ps := make([]string, len(c.Ports))
		for i, p := range c.Ports {
			ps[i] = fmt.Sprint(p)
		}
		f = append(f, "port "+strings.Join(ps, ","))
	}
	if c.Family != 0 {
		f = append(f, fmt.Sprintf("IPv%d", c.Family))
	}
	if c.PID != 0 {
		f = append(f, fmt.Sprintf("pid %d", c.PID))
	}
	if c.Netns != 0 {
		f = append(f, fmt.Sprintf("netns %d", c.Netns))
	}
	if c.Cgroup != "" {
		f = append(f, "cgroup "+c.Cgroup)
	}
	if c.StateFilter() {
		var names []string
		for st, on := range c.States {
			if on {
				names = append(names, event.State(st).String())
			}
		}
		f = append(f, "state "+strings.Join(names, ","))
	}
	if c.MinDwell > 0 {
		f = append(f, "min-dwell "+c.MinDwell.String())
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ", ")
}

// stuckWatch names the stuck limits in force, or "off".
func (c *Config) stuckWatch() string {
	if stuck := StuckString(c.Stuck); stuck != "none" && (c.Emit&EmitStuck != 0 || c.Metrics != "") && !c.Aggregate() {
		return stuck
	}
	return "off"
}

// aggregate reports whether nothing needs the records in user space:
// only histograms and states (socket walks) are wanted. Then the kernel
// keeps the histograms and no record crosses. Transitions, connections
// and stuck records need the records; so does --metrics (it counts them).
func (c *Config) Aggregate() bool {
	return c.Emit&(EmitTransitions|EmitConnections|EmitStuck) == 0 && c.Metrics == ""
}

// ConnRecords reports whether the kernel holds each connection's
// transitions and sends them together (bpf/conn.h): the record modes
// that write no transition record, on tp_btf with a periodic walk (the
// walk that flushes what the stuck watch needs is tp_btf's), without
// --metrics (its transition counters are live), --min-dwell (it selects
// by stay), --state (the kernel's histograms keep every state) or
// --cgroup-fields (an owner's cgroup is read at its socket's birth, while
// it surely runs). The histograms then come from the kernel's
// aggregation. The probe also needs Linux 5.15 (probe.ConnRecords).
func (c *Config) ConnRecords() bool {
	return !c.Aggregate() && c.Emit&EmitTransitions == 0 && c.Metrics == "" && c.MinDwell == 0 &&
		!c.StateFilter() && !c.CgroupFields && c.WalkInterval > 0 && c.Attach == AttachBTF
}

// ParseStates reads --state: a comma-separated list of state names
// (SYN_RCVD is SYN_RECV).
func ParseStates(s string) ([event.NumStates]bool, error) {
	var set [event.NumStates]bool
	if strings.TrimSpace(s) == "" {
		return set, nil
	}
	for _, name := range strings.Split(s, ",") {
		st, err := event.ParseState(name)
		if err != nil {
			return set, fmt.Errorf("invalid --state: %w", err)
		}
		set[st] = true
	}
	return set, nil
}

// Filtered reports whether the run selects some sockets or transitions
// (--port, -4/-6, --pid, --netns, --cgroup, --state, --min-dwell). The
// kernel's recursion skips are counted for every TCP transition of the
// host, before any filter: on a filtered run they may concern sockets the
// run does not show, and are reported as the host's, not the run's.
func (c *Config) Filtered() bool {
	return len(c.Ports) > 0 || c.Family != 0 || c.PID != 0 || c.Netns != 0 || c.Cgroup != "" ||
		c.StateFilter() || c.MinDwell > 0
}

// stateFilter reports whether --state was given.
func (c *Config) StateFilter() bool {
	for _, on := range c.States {
		if on {
			return true
		}
	}
	return false
}

// MinDwellInKernel: the kernel can drop short stays only when nothing
// else needs every transition (timelines, histograms, stuck detection).
func (c *Config) MinDwellInKernel() bool { return c.MinDwell > 0 && c.Emit == EmitTransitions }

// Attach selects how the programs are attached.
type Attach string

const (
	// AttachBTF is the BTF-typed tracepoint (tp_btf): no tracefs needed,
	// socket cookies and socket storage available. The default.
	AttachBTF Attach = "tp_btf"
	// AttachTracepoint is the classic tracepoint, for kernels without
	// tp_btf; tracefs is mounted for the attach, in a private mount
	// namespace, if the host has none.
	AttachTracepoint Attach = "tracepoint"
)

// ParseAttach checks an --attach value.
func ParseAttach(s string) (Attach, error) {
	switch Attach(s) {
	case AttachBTF, AttachTracepoint:
		return Attach(s), nil
	}
	return "", fmt.Errorf("unknown attach mode %q (use tp_btf or tracepoint)", s)
}

// Format names an output format.
type Format string

const (
	FormatNDJSON Format = "ndjson"
	FormatText   Format = "text"
)
