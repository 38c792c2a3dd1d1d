//go:build linux

// Package tracer is the Linux run loop: it loads the probe, reads the
// ring buffer into the pipeline (internal/pipeline, which decides what
// every record says), polls the kernel's health for losses, serves the
// metrics endpoint, reopens the output on SIGHUP and writes the closing
// records. Run writes to a file or stdout, RunWith to a sink of the
// caller's (the live view).
package tracer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/cgroup"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/metrics"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/privileges"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/probe"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/sockowner"
)

// Run traces until ctx ends or cfg.Duration passes, writing records to
// cfg.Output (or stdout) and status lines to stderr. cfg has passed
// config.Validate (the flags' parser runs it, so that a bad flag exits 2
// before anything is touched). Everything captured is written out before
// it returns, also on error where the output still works. A closed stdout
// ends the run without error.
func Run(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	return start(ctx, cfg, &toWriter{cfg: cfg, stdout: stdout}, stderr)
}

// NewSink builds the sink of a run once the clock that turns kernel
// timestamps into wall time is known.
type NewSink func(clock event.Clock) pipeline.Sink

// RunWith is Run writing to the sink newSink builds instead of an output
// file or stdout: the live view (top) is such a sink. cfg.Output and
// cfg.Format are not used. A sink that also implements
// pipeline.SocketSink gets every socket of each walk.
func RunWith(ctx context.Context, cfg config.Config, newSink NewSink, stderr io.Writer) error {
	cfg.Output, cfg.Format = "", config.FormatNDJSON // for the start-up line
	return start(ctx, cfg, toSink{newSink}, stderr)
}

// start is one run, top to bottom: check, load, wire, drop privileges,
// trace.
func start(ctx context.Context, cfg config.Config, dest destination, stderr io.Writer) error {
	// 1. Everything that can fail before the kernel is touched.
	if err := privileges.Check(); err != nil {
		return err
	}
	cgID, cgLevel, err := cgroupFilter(cfg.Cgroup)
	if err != nil {
		return err
	}
	if err := dest.open(); err != nil {
		return err
	}
	defer dest.close()

	// 2. Load and attach, seeding the sockets that exist with their owners.
	owners, err := sockowner.Scan("/proc")
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf: warning: cannot read /proc (%v): owners of sockets that exist now are unknown\n", err)
	}
	p, err := probe.Load(probe.Options{Config: cfg, CgroupID: cgID, CgroupLevel: cgLevel,
		Owners: owners, NetnsPaths: sockowner.Netns("/proc", "/run/netns")})
	if err != nil {
		return err
	}
	defer p.Close()
	// Loading parsed the kernel's BTF (tens of MiB), now garbage: give
	// it back to the system rather than carry it for the whole run.
	debug.FreeOSMemory()

	// 3. Wire: the clock, the sink, the metrics endpoint, the pipeline.
	r := &run{cfg: cfg, p: p, stderr: stderr, start: time.Now()}
	r.sink = dest.sink(event.NewClock(r.start, probe.MonotonicNow()))
	dest.watch(r)
	stopMetrics, err := r.serveMetrics()
	if err != nil {
		return err
	}
	defer stopMetrics()
	src := newKernelSource(p, cfg, owners)
	r.pl = pipeline.New(r.cfg, src, r.sink, r.observers(), r.warn)
	if p.ConnRecords() {
		r.pl.KernelHistograms()
	}

	// 4. Everything that needed full privileges is done: programs
	// attached, maps, ring buffer, output and metrics socket open,
	// sockets seeded.
	kept := r.dropPrivileges()
	kmem, err := p.KernelMemory()
	if err != nil {
		r.warn(fmt.Errorf("kernel memory of the maps: %w", err))
	}
	ring := fmt.Sprintf("ring buffer %d MiB", p.RingSize()>>20)
	if p.RingSize() < 1<<20 {
		ring = "no records sent"
	}
	fmt.Fprintf(stderr, "tcptrace-bpf: tracing TCP state transitions (attach %s, %s, %s, kernel maps %.1f MiB, %d existing sockets seeded); %s\n",
		p.Attach(), r.where(kept), ring, float64(kmem)/(1<<20), len(owners), dest.describe(&r.cfg))

	// 5. What exists now: the netstat tally, and the sockets older than
	// the tracer, which stuck detection must know (a CLOSE_WAIT leak
	// predates the person looking for it).
	if err := p.WalkWarning(); err != nil {
		r.warn(err)
	}
	if err := r.pl.WriteSockets(p.InitialSockets(), r.start, probe.MonotonicNow()); err != nil {
		return err
	}
	src.forgetStart()

	// 6. Trace until ctx ends, --duration passes or the reader goes.
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

// cgroupFilter resolves --cgroup ("": no filter).
func cgroupFilter(path string) (id uint64, level uint32, err error) {
	if path == "" {
		return 0, 0, nil
	}
	return cgroupID(path)
}

// observers are those told what the pipeline counts: the metrics, with
// --metrics.
func (r *run) observers() []pipeline.Observer {
	if r.m == nil {
		return nil
	}
	return []pipeline.Observer{r.m}
}

// dropPrivileges gives up every capability the run no longer needs
// (unless the config keeps them, as the tests do); it returns those kept.
func (r *run) dropPrivileges() []string {
	if r.cfg.KeepPrivileges {
		return nil
	}
	kept, err := privileges.Drop()
	if err != nil {
		r.warn(fmt.Errorf("running with all capabilities: %w", err))
	}
	return kept
}

// where says, for the start-up line, where the transitions go.
func (r *run) where(kept []string) string {
	where := "records to user space"
	switch {
	case r.cfg.Aggregate():
		where = "histograms aggregated in the kernel"
	case r.p.ConnRecords():
		where = "one record per connection, histograms aggregated in the kernel"
	}
	if r.cfg.Metrics != "" {
		where += ", metrics at http://" + r.cfg.Metrics + "/metrics"
	}
	if kept != nil {
		where += ", capabilities dropped but " + strings.Join(kept, " ")
	}
	return where
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
	// inferred: transitions lost beyond the counted ones, seen as gaps in
	// sockets' states (probe.Health.Inferred), as reported so far.
	inferred      uint64
	lastLostAt    time.Time
	lastHistsAt   time.Time
	lastFlushAt   time.Time
	lastGaugeAt   time.Time
	lastEvictions uint64
	warned        map[string]bool
	hup           chan os.Signal
	closeOut      *func()
	// readerGone reports a stdout pipe whose reader has closed; nil
	// when writing to a file.
	readerGone func() bool
}

// kernelSource is the pipeline's view of the kernel: the probe's socket
// walker and /proc, where it also keeps the owners' cgroup identities
// (nil without --cgroup-fields).
type kernelSource struct {
	p      *probe.Probe
	idents *cgroup.Cache
	netns  uint32 // --netns: only that namespace is walked (0: every one)
	// started: the owners of the sockets that existed at the start (the
	// scan that seeded them), until the first walk has been read.
	started *sockowner.Table
}

// newKernelSource is the kernel source of a run with cfg: the identity
// cache exists with --cgroup-fields.
func newKernelSource(p *probe.Probe, cfg config.Config, started sockowner.Table) kernelSource {
	k := kernelSource{p: p, netns: cfg.Netns, started: &started}
	if cfg.CgroupFields {
		k.idents = cgroup.NewCache("/proc", identityCacheSize)
	}
	return k
}

// identityCacheSize bounds the processes whose cgroup identity is kept:
// about 200 bytes each with a Kubernetes path, so at most ~2 MB.
const identityCacheSize = 8192

// Identity reads /proc once per process (at its socket's birth, see
// pipeline.Source), then answers from the cache without allocating.
func (k kernelSource) Identity(pid uint32, comm [16]byte) *event.Identity {
	if k.idents == nil {
		return nil
	}
	return k.idents.Lookup(pid, comm)
}

// StartOwner is who owned socket inode ino at the start (pipeline's
// startOwners).
func (k kernelSource) StartOwner(ino uint64) (pipeline.Holder, bool) {
	o, ok := (*k.started)[ino]
	return pipeline.Holder{PID: o.PID, Comm: o.Comm}, ok
}

// forgetStart drops the start's owners once the first walk is read.
func (k kernelSource) forgetStart() { *k.started = nil }

func (k kernelSource) HasWalker() bool { return k.p.HasWalker() }
func (k kernelSource) Walk(detail event.WalkDetail) ([]byte, error) {
	return k.p.Sockets(netnsPaths(k.netns), detail)
}

// WalkCPU is the CPU time of the walks so far (pipeline's walk budget).
func (k kernelSource) WalkCPU() time.Duration { return k.p.WalkCPU() }

// netnsPaths names the network namespaces in use, one path each; only
// the one with inode only when only is not 0. A TCP iterator opened in
// any namespace visits the sockets of all that share the host's hash
// table, so each namespace walked costs a pass over them all
// (docs/performance.md).
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
func (k kernelSource) Now() event.Mono { return probe.MonotonicNow() }
func (k kernelSource) Recorded() bool  { return false }

func (k kernelSource) Holders(inodes map[uint64]bool) map[uint64][]pipeline.Holder {
	out := map[uint64][]pipeline.Holder{}
	for ino, hs := range sockowner.Holders("/proc", inodes) {
		for _, h := range hs {
			out[ino] = append(out[ino], pipeline.Holder{PID: h.PID, Comm: h.Comm})
		}
	}
	return out
}

// serveMetrics starts the Prometheus endpoint of --metrics (none
// without), and sets the address it listens on into the run's config; it
// returns a function that stops it.
func (r *run) serveMetrics() (func(), error) {
	addr := r.cfg.Metrics
	if addr == "" {
		return func() {}, nil
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		addr = net.JoinHostPort("127.0.0.1", port) // loopback unless told otherwise
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	r.m = metrics.New()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.m.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	r.cfg.Metrics = ln.Addr().String()
	return func() { srv.Close() }, nil
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

// loop reads the ring buffer in batches: each Next returns at once
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
	if r.kernelHists() {
		for i := range r.pl.Hists {
			r.pl.Hists[i].Reset()
		}
		r.pl.Untimed = pipeline.Untimed{}
		if err := r.p.DwellHistograms(r.pl.Hists[:], r.pl.Untimed[:]); err != nil {
			return err
		}
	}
	r.sink.Histograms(now, r.start, &r.pl.Hists, &r.pl.Untimed)
	return nil
}

// kernelHists reports whether the histograms are the kernel's: the
// aggregate mode's, and the connection records' (config.ConnRecords).
func (r *run) kernelHists() bool { return r.cfg.Aggregate() || r.p.ConnRecords() }

// untimedNote is the exit line's account of the stays the histograms
// could not time: empty when there were none.
func untimedNote(u *event.UntimedStays) string {
	n := u.Total()
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d stays untimed and missing from the histograms (%s)", n, output.UntimedWhy(u))
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
		Unsent:           h.Unsent - r.lastHealth.Unsent,
		Gap:              max(h.Inferred(), r.inferred) - r.inferred,
		TotalRingbufFull: h.RingbufFull,
		TotalRecursion:   h.Recursion,
		TotalDecode:      r.pl.DecodeErrs,
		TotalUnread:      r.unread,
		TotalUnsent:      h.Unsent,
		// The kernel counts recursion skips for every TCP transition
		// of the host, before any filter.
		RecursionHostWide: r.cfg.Filtered(),
	}
	r.inferred += l.Gap // only grows: recursion skips may catch up with the gaps
	l.TotalGap = r.inferred
	if n := h.Reclaimed - r.lastHealth.Reclaimed; n > 0 {
		if r.m != nil {
			r.m.Reclaimed(n)
		}
		fmt.Fprintf(r.stderr, "tcptrace-bpf: warning: the connection table is full (--max-conns %d): %d live sockets' kernel entries reclaimed, their timelines miss what the entries held; raise --max-conns\n", r.cfg.MaxConns, n)
	}
	r.lastHealth, r.lastDecode, r.lastUnread = h, r.pl.DecodeErrs, r.unread
	if r.m != nil {
		r.m.Lost(l.Parts(), l.RecursionHostWide)
		ev := r.pl.TrackerStats().Evictions
		r.m.Evicted(ev - r.lastEvictions)
		r.lastEvictions = ev
		r.m.RingFill(r.p.RingFill())
		r.m.BPFStats(h.Runs, h.RunTimeNs)
	}
	if l.Count() > 0 {
		r.sink.Lost(&l)
		fmt.Fprintf(r.stderr, "tcptrace-bpf: warning: %d transitions lost (%s)%s\n", l.Count(), l.Parts().Breakdown(), l.HostWideNote())
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
			return // flushed: drained
		}
		r.pl.Handle(raw)
	}
}

// finish detaches the programs, drains what is left in the ring, and
// writes the closing records. cause is returned, or the first error of
// the closing work.
func (r *run) finish(cause error) error {
	// The closing walk, taken while the programs still run: it also finds
	// the sockets gone with their CLOSE unseen (after the detach, closes
	// would no longer be seen at all).
	var (
		walk     []byte
		walkErr  error
		walkMono event.Mono
	)
	if cause == nil {
		walkMono = probe.MonotonicNow()
		walk, walkErr = r.p.UnseenCloses(sockowner.Netns("/proc", "/run/netns"))
	}
	r.p.Detach()
	if cause == nil {
		// What a socket held since the closing walk passed it.
		if err := r.p.FlushHeld(sockowner.Netns("/proc", "/run/netns")); err != nil {
			r.warn(fmt.Errorf("sending the transitions held at exit: %w", err))
		}
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
	if cause == nil {
		walkErr = r.pl.WriteWalk(walk, walkErr, now, walkMono)
	}
	r.pl.Drain(now)
	lostErr := r.reportLost(now)
	var histErr error
	if r.cfg.Emit&config.EmitHistograms != 0 {
		histErr = r.writeHistograms(now)
	} else if r.kernelHists() {
		histErr = r.p.DwellHistograms(r.pl.Hists[:], r.pl.Untimed[:])
	}
	h := r.lastHealth
	st := pipeline.Stats{
		TS: now, Attach: string(r.p.Attach()), Events: r.pl.Events, Connections: r.pl.Conns, Open: r.pl.Open,
		Aggregated: h.Aggregated,
		Rescued:    h.Rescued, StorageFail: h.StorageFail, Lost: h.Lost() + r.pl.DecodeErrs + r.unread + r.inferred, LostInferred: r.inferred,
		LostHostWide: h.Recursion, HostWide: r.cfg.Filtered(), Reclaimed: h.Reclaimed,
		Runs: h.Runs, PrimaryRunTimeNs: h.PrimaryRunTimeNs, RunTimeNs: h.RunTimeNs,
	}
	ts := r.pl.TrackerStats()
	st.Evictions, st.Gaps, st.Reordered, st.StuckDropped = ts.Evictions, ts.Gaps, ts.Reordered, ts.StuckDropped
	st.Stuck = r.pl.StuckCount
	st.Walks, st.WalkNs = r.pl.Walks, uint64(r.p.WalkCPU())
	st.ProgressOn, st.Progress, st.ProgressSkipped = r.cfg.Progress > 0, r.pl.ProgressCount, r.pl.ProgressSkipped
	st.Untimed = r.pl.Untimed.Sum()
	st.Evictions += st.Untimed.Evicted // the histogram-only mode's, in the kernel
	r.sink.Stats(&st)
	flushErr := r.sink.Flush()
	if flushErr != nil {
		flushErr = fmt.Errorf("writing output: %w", flushErr)
	}
	err := cmp.Or(cause, lostErr, histErr, walkErr, flushErr)
	if err == nil || errors.Is(err, syscall.EPIPE) {
		// "done" only when the records were written: a failed write
		// is the run's last word, not a success line before it.
		fmt.Fprintf(r.stderr, "tcptrace-bpf: done: %d transitions, %d connections, %d lost%s%s\n", r.pl.Events, r.pl.Conns, st.Lost, st.HostWideNote(), untimedNote(&st.Untimed))
	}
	return err
}
