// Package tracer wires the kernel probe to timelines, histograms and the
// output: the data path kernel -> ring buffer -> decode -> timeline and
// histogram -> sink.
package tracer

import (
	"fmt"
	"strings"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/probe"
)

// Emit selects the record types written.
type Emit uint8

const (
	EmitTransitions Emit = 1 << iota
	EmitConnections
	EmitHistograms
	EmitAll = EmitTransitions | EmitConnections | EmitHistograms
)

// ParseEmit reads a comma-separated list of transitions, connections,
// histograms, or "all" or "none".
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
		case "all":
			e |= EmitAll
		case "none":
		default:
			return 0, fmt.Errorf("unknown --emit value %q (use transitions, connections, histograms, all or none)", part)
		}
	}
	return e, nil
}

// String lists the selected record types.
func (e Emit) String() string {
	var names []string
	for _, x := range []struct {
		bit  Emit
		name string
	}{{EmitTransitions, "transitions"}, {EmitConnections, "connections"}, {EmitHistograms, "histograms"}} {
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
	Format   output.Format
	Attach   probe.Attach
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
	// Cgroup keeps only sockets created in this cgroup (v2) or below it:
	// a path in the cgroup2 mount, or relative to it.
	Cgroup string
	// Metrics serves Prometheus metrics at http://Metrics/metrics; a
	// bare ":PORT" binds to loopback.
	Metrics string

	// keepPrivileges skips dropping capabilities after attach: tests run
	// many tracers in one process, which must stay privileged.
	keepPrivileges bool

	// wakeupBytes overrides the reader wakeup watermark (default: an
	// eighth of the ring). 1 wakes the reader on every record, as the
	// peer tools do: the tests use it to provoke kernel recursion.
	wakeupBytes int
}

// Defaults returns the configuration of a bare `tcptrace-bpf`.
func Defaults() Config {
	return Config{
		Emit:     EmitAll,
		Flush:    100 * time.Millisecond,
		Format:   output.FormatNDJSON,
		Attach:   probe.AttachBTF,
		RingSize: 16 << 20,
		MaxConns: 262144,
		Stuck:    DefaultStuck(),
	}
}

// DefaultStuck is the --stuck default: SYN_SENT=3s, SYN_RECV=3s,
// CLOSE_WAIT=30s, LAST_ACK=30s, FIN_WAIT2=60s.
func DefaultStuck() [event.NumStates]time.Duration {
	var d [event.NumStates]time.Duration
	d[event.SynSent] = 3 * time.Second
	d[event.SynRecv] = 3 * time.Second
	d[event.CloseWait] = 30 * time.Second
	d[event.LastAck] = 30 * time.Second
	d[event.FinWait2] = 60 * time.Second
	return d
}

// ParseStuck reads "STATE=DURATION[,...]" or "none". The states given
// replace the defaults.
func ParseStuck(s string) ([event.NumStates]time.Duration, error) {
	var d [event.NumStates]time.Duration
	if strings.TrimSpace(strings.ToLower(s)) == "none" {
		return d, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, dur, ok := strings.Cut(part, "=")
		if !ok {
			return d, fmt.Errorf("invalid --stuck %q: want STATE=DURATION, e.g. CLOSE_WAIT=30s", part)
		}
		st, err := event.ParseState(name)
		if err != nil {
			return d, fmt.Errorf("invalid --stuck: %w", err)
		}
		if st == event.Close || st == event.TimeWait || st == event.NewSynRecv {
			return d, fmt.Errorf("invalid --stuck: %s cannot be watched (no connection dwells there in view of the tracer)", st)
		}
		v, err := time.ParseDuration(strings.TrimSpace(dur))
		if err != nil || v <= 0 {
			return d, fmt.Errorf("invalid --stuck duration %q for %s: want a positive duration like 30s", dur, st)
		}
		d[st] = v
	}
	return d, nil
}

// Validate reports the first invalid setting, worded for the command line.
func (c *Config) Validate() error {
	switch {
	case c.Family != 0 && c.Family != 4 && c.Family != 6:
		return fmt.Errorf("family must be 4 or 6, not %d", c.Family)
	case c.Interval < 0:
		return fmt.Errorf("--interval must not be negative (got %s); 0 means histograms only at exit", c.Interval)
	case c.Duration < 0:
		return fmt.Errorf("--duration must not be negative (got %s); 0 means until interrupted", c.Duration)
	case c.Flush <= 0 || c.Flush > time.Minute:
		return fmt.Errorf("--flush must be between 1ms and 1m (got %s)", c.Flush)
	case c.Format != output.FormatNDJSON && c.Format != output.FormatText:
		return fmt.Errorf("--format must be ndjson or text, not %q", c.Format)
	case c.RingSize < 4096 || c.RingSize&(c.RingSize-1) != 0 || c.RingSize > 1<<30:
		return fmt.Errorf("--ring-size must be a power of two between 4KiB and 1GiB (got %d)", c.RingSize)
	case c.MaxConns < 1:
		return fmt.Errorf("--max-conns must be at least 1 (got %d)", c.MaxConns)
	case c.MinDwell < 0:
		return fmt.Errorf("--min-dwell must not be negative (got %s)", c.MinDwell)
	}
	if _, err := probe.ParseAttach(string(c.Attach)); err != nil {
		return err
	}
	return nil
}

// describe is the "what, which filters" part of the start-up line.
func (c *Config) describe() string {
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
	filters := "none"
	if len(f) > 0 {
		filters = strings.Join(f, ", ")
	}
	out := c.Output
	if out == "" || out == "-" {
		out = "stdout"
	}
	return fmt.Sprintf("filters: %s; emit %s as %s to %s", filters, c.Emit, c.Format, out)
}

// aggregate reports whether only histograms are wanted: then the kernel
// keeps them and no record crosses to user space.
// With --metrics the events are needed in user space (metrics count them).
func (c *Config) aggregate() bool { return c.Emit == EmitHistograms && c.Metrics == "" }

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

// stateFilter reports whether --state was given.
func (c *Config) stateFilter() bool {
	for _, on := range c.States {
		if on {
			return true
		}
	}
	return false
}

// minDwellInKernel: the kernel can drop short stays only when nothing
// else needs every transition (timelines, histograms, stuck detection).
func (c *Config) minDwellInKernel() bool { return c.MinDwell > 0 && c.Emit == EmitTransitions }
