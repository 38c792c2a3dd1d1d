//go:build linux

package tracer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/metrics"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/privileges"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/probe"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/sockowner"
)

// Run traces until ctx ends or cfg.Duration passes, writing records to
// cfg.Output (or stdout) and status lines to stderr. Everything captured
// is written out before it returns, also on error where the output still
// works. A closed stdout ends the run without error.
func Run(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) (err error) {
	return start(ctx, cfg, stdout, nil, stderr)
}

// NewSink builds the sink of a run once the clock that turns kernel
// timestamps into wall time is known.
type NewSink func(clock event.Clock) pipeline.Sink

// RunWith is Run writing to the sink newSink builds instead of an output
// file or stdout: the live view (top) is such a sink. cfg.Output and
// cfg.Format are not used. A sink that also implements
// pipeline.SocketSink gets every socket of each walk.
func RunWith(ctx context.Context, cfg config.Config, newSink NewSink, stderr io.Writer) error {
	return start(ctx, cfg, nil, newSink, stderr)
}

func start(ctx context.Context, cfg config.Config, stdout io.Writer, newSink NewSink, stderr io.Writer) (err error) {
	if newSink != nil {
		cfg.Output, cfg.Format = "", config.FormatNDJSON
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := privileges.Check(); err != nil {
		return err
	}
	var cgID uint64
	var cgLevel uint32
	if cfg.Cgroup != "" {
		if cgID, cgLevel, err = cgroupID(cfg.Cgroup); err != nil {
			return err
		}
	}
	w, closeOut := io.Discard, func() {}
	if newSink == nil {
		if w, closeOut, err = openOutput(cfg.Output, stdout); err != nil {
			return err
		}
	}
	defer func() { closeOut() }()

	owners, err := sockowner.Scan("/proc")
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf: warning: cannot read /proc (%v): owners of sockets that exist now are unknown\n", err)
	}
	p, err := probe.Load(probe.Options{
		Attach:       cfg.Attach,
		Ports:        cfg.Ports,
		Family:       cfg.Family,
		PID:          cfg.PID,
		Netns:        cfg.Netns,
		RingSize:     cfg.RingSize,
		WakeupBytes:  cmp.Or(cfg.WakeupBytes, cfg.RingSize/8),
		MaxSockets:   cfg.MaxConns,
		Aggregate:    cfg.Aggregate(),
		Cgroup:       cgID,
		CgroupLevel:  cgLevel,
		MinDwell:     minDwellKernel(cfg),
		SynRecvStuck: uint64(cfg.Stuck[event.SynRecv]),
		Owners:       owners,
		NetnsPaths:   sockowner.Netns("/proc", "/run/netns"),
	})
	if err != nil {
		return err
	}
	defer p.Close()
	// Loading parsed the kernel's BTF (tens of MiB), now garbage: give
	// it back to the system rather than carry it for the whole run.
	debug.FreeOSMemory()

	start := time.Now()
	clock := event.NewClock(start, probe.MonotonicNow())
	var sink pipeline.Sink
	switch {
	case newSink != nil:
		sink = newSink(clock)
	case cfg.Format == config.FormatText:
		sink = output.NewText(w, clock, cfg.TextZone())
	default:
		sink = output.NewNDJSON(w, clock)
	}
	r := &run{cfg: cfg, p: p, sink: sink, stderr: stderr, start: start}
	switch {
	case newSink != nil:
		// The sink is no writer: nothing to watch or reopen.
	case cfg.Output == "" || cfg.Output == "-":
		r.readerGone = readerGone(stdout)
	default:
		// logrotate: SIGHUP reopens the output file.
		r.hup = make(chan os.Signal, 1)
		signal.Notify(r.hup, syscall.SIGHUP)
		defer signal.Stop(r.hup)
		r.closeOut = &closeOut
	}
	if cfg.Metrics != "" {
		stopMetrics, addr, err := r.serveMetrics(cfg.Metrics)
		if err != nil {
			return err
		}
		defer stopMetrics()
		cfg.Metrics = addr
		r.cfg.Metrics = addr
	}
	var observers []pipeline.Observer
	if r.m != nil {
		observers = append(observers, r.m)
	}
	r.pl = pipeline.New(r.cfg, kernelSource{p: p, netns: cfg.Netns}, sink, observers, r.warn)
	where := "records to user space"
	if cfg.Aggregate() {
		where = "histograms aggregated in the kernel"
	}

	if cfg.Metrics != "" {
		where += ", metrics at http://" + cfg.Metrics + "/metrics"
	}
	// Everything that needed full privileges is done: programs attached,
	// maps, ring buffer, output and metrics socket open, sockets seeded.
	if !cfg.KeepPrivileges {
		if kept, err := privileges.Drop(); err != nil {
			r.warn(fmt.Errorf("running with all capabilities: %w", err))
		} else {
			where += ", capabilities dropped but " + strings.Join(kept, " ")
		}
	}
	fmt.Fprintf(stderr, "tcptrace-bpf: tracing TCP state transitions (attach %s, %s, ring buffer %d MiB, %d existing sockets seeded); %s\n",
		p.Attach(), where, p.RingSize()>>20, len(owners), cfg.Describe())

	// What exists now: the netstat tally, and the sockets older than the
	// tracer, which stuck detection must know (a CLOSE_WAIT leak predates
	// the person looking for it).
	if err := p.WalkWarning(); err != nil {
		r.warn(err)
	}
	if err := r.pl.WriteSockets(p.InitialSockets(), start, probe.MonotonicNow()); err != nil {
		return err
	}

	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	// A signal must not wait for the read deadline.
	stopWake := context.AfterFunc(ctx, func() { _ = p.Flush() })
	defer stopWake()
	err = r.loop(ctx)
	if errors.Is(err, syscall.EPIPE) {
		return nil // the reader went away: | head -1
	}
	return err
}

// openOutput opens the output file (created 0640, appended to), or
// returns stdout.
func openOutput(path string, stdout io.Writer) (io.Writer, func(), error) {
	if path == "" || path == "-" {
		return stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open output file: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// run is the Linux run loop: it reads the ring buffer and hands the
// records to the pipeline, polls the kernel's health, reopens the output
// on SIGHUP and writes the closing records.
type run struct {
	cfg    config.Config
	p      *probe.Probe
	pl     *pipeline.Pipeline
	sink   pipeline.Sink
	m      *metrics.Metrics
	stderr io.Writer
	start  time.Time

	lastHealth probe.Health
	lastDecode uint64
	// unread: records the kernel submitted that the drain at the end
	// did not find (known only then); lastUnread: reported so far.
	unread, lastUnread uint64
	lastLostAt         time.Time
	lastHistsAt        time.Time
	lastFlushAt        time.Time
	lastGaugeAt        time.Time
	lastEvictions      uint64
	warned             map[string]bool
	hup                chan os.Signal
	closeOut           *func()
	// readerGone reports a stdout pipe whose reader has closed; nil
	// when writing to a file.
	readerGone func() bool
}

// kernelSource is the pipeline's view of the kernel: the probe's socket
// walker and /proc. With --netns only that namespace is walked: a TCP
// iterator opened in any namespace visits the sockets of all that share
// the host's hash table, so each namespace walked costs a pass over them
// all (docs/performance.md).
type kernelSource struct {
	p     *probe.Probe
	netns uint32 // 0: every namespace
}

func (k kernelSource) HasWalker() bool { return k.p.HasWalker() }

// WalkCPU is the CPU time of the walks so far (pipeline's walk budget).
func (k kernelSource) WalkCPU() time.Duration { return k.p.WalkCPU() }
func (k kernelSource) Walk() ([]byte, error) {
	return k.p.Sockets(netnsPaths(k.netns))
}

// netnsPaths names the network namespaces in use, one path each; only
// the one with inode only when only is not 0.
func netnsPaths(only uint32) []string {
	all := sockowner.Netns("/proc", "/run/netns")
	if only == 0 {
		return all
	}
	for _, p := range all {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Ino == uint64(only) {
			return []string{p}
		}
	}
	return nil
}
func (k kernelSource) Now() event.Mono { return probe.MonotonicNow() }

// Sysctls reads a namespace's settings there, through the first path
// that names it (/proc/PID/ns/net of a process in it, or /run/netns).
func (k kernelSource) Sysctls(netns uint32) (pipeline.Sysctls, error) {
	var sc pipeline.Sysctls
	paths := netnsPaths(netns)
	if len(paths) == 0 {
		return sc, fmt.Errorf("network namespace %d: no process or /run/netns name to read its settings through", netns)
	}
	v, err := probe.NetSysctls(paths[0], []string{"core/somaxconn", "ipv4/tcp_max_syn_backlog", "ipv4/tcp_syncookies",
		"ipv4/tcp_fin_timeout", "ipv4/tcp_tw_reuse", "ipv4/ip_local_port_range"})
	if err != nil {
		return sc, fmt.Errorf("reading the settings of network namespace %d: %w", netns, err)
	}
	one := func(name string, i int) uint32 {
		if f := v[name]; len(f) > i {
			return uint32(f[i])
		}
		return 0
	}
	sc.Somaxconn, sc.TCPMaxSynBacklog = one("core/somaxconn", 0), one("ipv4/tcp_max_syn_backlog", 0)
	sc.TCPSyncookies, sc.TCPFinTimeout = one("ipv4/tcp_syncookies", 0), one("ipv4/tcp_fin_timeout", 0)
	sc.TCPTwReuse = one("ipv4/tcp_tw_reuse", 0)
	sc.PortLo, sc.PortHi = one("ipv4/ip_local_port_range", 0), one("ipv4/ip_local_port_range", 1)
	return sc, nil
}

func (k kernelSource) Holders(inodes map[uint64]bool) map[uint64][]pipeline.Holder {
	out := map[uint64][]pipeline.Holder{}
	for ino, hs := range sockowner.Holders("/proc", inodes) {
		for _, h := range hs {
			out[ino] = append(out[ino], pipeline.Holder{PID: h.PID, Comm: h.Comm})
		}
	}
	return out
}

// serveMetrics starts the Prometheus endpoint; it returns a function that
// stops it and the address it listens on.
func (r *run) serveMetrics(addr string) (func(), string, error) {
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		addr = net.JoinHostPort("127.0.0.1", port) // loopback unless told otherwise
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("--metrics %s: %w", addr, err)
	}
	r.m = metrics.New()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.m.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, ln.Addr().String(), nil
}

// reopen switches the output to a fresh open of the same path, after
// writing out everything buffered for the old one (logrotate has renamed
// it; the new file starts with whole records).
func (r *run) reopen() error {
	w, closeNew, err := openOutput(r.cfg.Output, nil)
	if err != nil {
		return err
	}
	if err := r.sink.Redirect(w); err != nil {
		closeNew()
		return err
	}
	(*r.closeOut)()
	*r.closeOut = closeNew
	fmt.Fprintf(r.stderr, "tcptrace-bpf: SIGHUP: reopened %s\n", r.cfg.Output)
	return nil
}

// minDwellKernel is --min-dwell for the kernel, when it may apply it.
func minDwellKernel(cfg config.Config) uint64 {
	if cfg.MinDwellInKernel() {
		return uint64(cfg.MinDwell)
	}
	return 0
}

// warn writes a warning line to stderr, the same one at most once.
func (r *run) warn(err error) {
	msg := err.Error()
	if r.warned[msg] {
		return
	}
	if r.warned == nil {
		r.warned = map[string]bool{}
	}
	r.warned[msg] = true
	fmt.Fprintf(r.stderr, "tcptrace-bpf: warning: %s\n", strings.ReplaceAll(msg, "\n", "; "))
}

// loop reads the ring buffer in batches: each ReadInto returns at once
// while records wait, and the deadline bounds how long a record can sit
// in the ring (the kernel side wakes us only past a fill watermark).
func (r *run) loop(ctx context.Context) error {
	r.lastLostAt, r.lastHistsAt, r.lastFlushAt = r.start, r.start, r.start
	// Poll at least every 100 ms, so losses are checked every second
	// whatever --flush is.
	poll := min(r.cfg.Flush, 100*time.Millisecond)
	for {
		deadline := time.Now().Add(poll)
		r.p.SetDeadline(deadline)
		for n := 0; ; n++ {
			raw, err := r.p.Next()
			if err != nil {
				if probe.IsDeadline(err) || probe.IsFlushed(err) {
					break
				}
				return r.finish(fmt.Errorf("reading ring buffer: %w", err))
			}
			r.pl.Handle(raw)
			// A ring that never runs dry must not starve the periodic
			// work (the reader reports its deadline only at the ring's
			// end): losses, held closes, stuck checks, flushes.
			if n&4095 == 4095 && (ctx.Err() != nil || time.Now().After(deadline)) {
				break
			}
		}
		if ctx.Err() != nil {
			return r.finish(nil)
		}
		if err := r.periodic(time.Now()); err != nil {
			return r.finish(err)
		}
	}
}

func (r *run) periodic(now time.Time) error {
	select {
	case <-r.hup:
		if err := r.reopen(); err != nil {
			// logrotate must not end the trace: say so each time, and
			// keep the old file.
			fmt.Fprintf(r.stderr, "tcptrace-bpf: warning: SIGHUP: %v; still writing to the file opened before\n", err)
		}
	default:
	}
	if r.readerGone != nil && r.readerGone() {
		return syscall.EPIPE // nobody reads stdout any more: | head -1
	}
	if now.Sub(r.lastLostAt) >= time.Second {
		r.lastLostAt = now
		if err := r.reportLost(now); err != nil {
			return err
		}
	}
	// Each poll: closed connections past their hold, and a look at the
	// oldest connection of each watched state.
	r.pl.Tick(now)
	if r.m != nil && r.cfg.Interval == 0 && r.cfg.WalkInterval == 0 && now.Sub(r.lastGaugeAt) >= 10*time.Second {
		// No periodic walk: keep the socket gauges fresh.
		r.lastGaugeAt = now
		if err := r.pl.WalkAndCount(); err != nil {
			return err
		}
	}
	if r.cfg.Interval > 0 && now.Sub(r.lastHistsAt) >= r.cfg.Interval {
		r.lastHistsAt = now
		if r.cfg.Emit&config.EmitHistograms != 0 {
			if err := r.writeHistograms(now); err != nil {
				return err
			}
		}
	}
	// The periodic walk of the kernel's sockets (pipeline/walk.go), with
	// the states records at --interval.
	if err := r.pl.WalkDue(now); err != nil {
		return err
	}
	if now.Sub(r.lastFlushAt) < r.cfg.Flush {
		return nil
	}
	r.lastFlushAt = now
	return r.sink.Flush()
}

// writeHistograms writes the cumulative histograms: the ones built from
// records, or in aggregate mode the kernel's.
func (r *run) writeHistograms(now time.Time) error {
	if r.cfg.Aggregate() {
		for i := range r.pl.Hists {
			r.pl.Hists[i].Reset()
		}
		if err := r.p.DwellHistograms(r.pl.Hists[:]); err != nil {
			return err
		}
	}
	r.sink.Histograms(now, r.start, &r.pl.Hists)
	return nil
}

// reportLost writes a lost record when the kernel dropped or skipped
// anything, or a record was bad, since the last report.
func (r *run) reportLost(now time.Time) error {
	h, err := r.p.Health()
	if err != nil {
		return err
	}
	l := pipeline.Lost{
		TS:               now,
		RingbufFull:      h.RingbufFull - r.lastHealth.RingbufFull,
		Recursion:        h.Recursion - r.lastHealth.Recursion,
		Decode:           r.pl.DecodeErrs - r.lastDecode,
		Unread:           r.unread - r.lastUnread,
		TotalRingbufFull: h.RingbufFull,
		TotalRecursion:   h.Recursion,
		TotalDecode:      r.pl.DecodeErrs,
		TotalUnread:      r.unread,
	}
	r.lastHealth, r.lastDecode, r.lastUnread = h, r.pl.DecodeErrs, r.unread
	if r.m != nil {
		r.m.Lost(l.RingbufFull, l.Recursion, l.Decode, l.Unread)
		ev := r.pl.TrackerStats().Evictions
		r.m.Evicted(ev - r.lastEvictions)
		r.lastEvictions = ev
		r.m.RingFill(r.p.RingFill())
	}
	if l.Count() > 0 {
		r.sink.Lost(&l)
		fmt.Fprintf(r.stderr, "tcptrace-bpf: warning: %d transitions lost (ring buffer full %d, kernel recursion %d, bad records %d, submitted but never read %d)\n",
			l.Count(), l.RingbufFull, l.Recursion, l.Decode, l.Unread)
	}
	return nil
}

// drain reads what is left in the ring after the programs are detached.
func (r *run) drain() {
	if err := r.p.Flush(); err != nil {
		return
	}
	for {
		raw, err := r.p.Next()
		if err != nil {
			return // ringbuf.ErrFlushed: drained
		}
		r.pl.Handle(raw)
	}
}

// finish detaches the programs, drains what is left in the ring, and
// writes the closing records. cause is returned, or the first error of
// the closing work.
func (r *run) finish(cause error) error {
	r.p.Detach()
	if cause == nil {
		r.drain()
		// Every record the kernel submitted must have been read by now:
		// the kernel counts each submit, so a record that vanished
		// between the program and the reader is counted, not silent.
		if h, err := r.p.Health(); err == nil {
			r.drain() // one still being committed as the programs left
			if h.Submitted > r.pl.Records {
				r.unread = h.Submitted - r.pl.Records
			}
		}
	}
	now := time.Now()
	var walkErr error
	if cause == nil {
		walkErr = r.pl.WalkAndWrite(now)
	}
	r.pl.Drain(now)
	lostErr := r.reportLost(now)
	var histErr error
	if r.cfg.Emit&config.EmitHistograms != 0 {
		histErr = r.writeHistograms(now)
	}
	h := r.lastHealth
	st := pipeline.Stats{
		TS: now, Attach: string(r.p.Attach()), Events: r.pl.Events, Connections: r.pl.Conns, Open: r.pl.Open,
		Aggregated: h.Aggregated,
		Rescued:    h.Rescued, StorageFail: h.StorageFail, Lost: h.Lost() + r.pl.DecodeErrs + r.unread,
		Runs: h.Runs, PrimaryRunTimeNs: h.PrimaryRunTimeNs, RunTimeNs: h.RunTimeNs,
	}
	ts := r.pl.TrackerStats()
	st.Evictions, st.Gaps, st.Reordered, st.StuckDropped = ts.Evictions, ts.Gaps, ts.Reordered, ts.StuckDropped
	st.Stuck = r.pl.StuckCount
	st.Walks, st.WalkNs = r.pl.Walks, uint64(r.p.WalkCPU())
	st.ProgressOn, st.Progress, st.ProgressSkipped = r.cfg.Progress > 0, r.pl.ProgressCount, r.pl.ProgressSkipped
	r.sink.Stats(&st)
	flushErr := r.sink.Flush()
	fmt.Fprintf(r.stderr, "tcptrace-bpf: done: %d transitions, %d connections, %d lost\n", r.pl.Events, r.pl.Conns, st.Lost)
	if cause != nil {
		return cause
	}
	if lostErr != nil {
		return lostErr
	}
	if histErr != nil {
		return histErr
	}
	if walkErr != nil {
		return walkErr
	}
	if flushErr != nil {
		return fmt.Errorf("writing output: %w", flushErr)
	}
	return nil
}
