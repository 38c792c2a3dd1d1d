// Package pipeline turns the kernel's records into what the tracer
// writes: decode, the stays of the histograms, timelines and the stuck
// watch, the socket tallies, and the sinks and metrics that receive them.
// It is pure Go fed by a small Source, so it runs and is tested without
// root on any system; the Linux run loop (internal/tracer) reads the ring
// buffer and hands it the records.
package pipeline

import (
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/cgroup"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// Source is what the pipeline asks of the kernel side besides the records
// it is handed.
type Source interface {
	// HasWalker reports whether Walk works (not in the tracepoint mode).
	HasWalker() bool
	// Walk returns the sockets that exist now, as struct sock_snap
	// records; an error names namespaces it could not walk (a warning).
	Walk() ([]byte, error)
	// Holders names the processes that hold each socket inode now.
	Holders(inodes map[uint64]bool) map[uint64][]Holder
	// Now is the kernel's monotonic clock.
	Now() event.Mono
	// Sysctls reads the settings of the network namespace with inode
	// netns, in that namespace.
	Sysctls(netns uint32) (Sysctls, error)
}

// Observer is told what the pipeline counts, besides what it writes to
// its sink: the Prometheus metrics are one (internal/metrics).
type Observer interface {
	// Transition: one transition, and the stay it ends (stayEnded).
	Transition(e *event.Event, stay time.Duration, stayEnded bool)
	// Closed: a connection that reached CLOSE from the state from.
	Closed(from event.State, reset uint8, errno uint16, tw event.TW)
	// Sockets: the count per state of one socket walk.
	Sockets(counts *[event.NumStates]uint64)
	// Stuck: one stuck report.
	Stuck(s event.State)
}

// Pipeline is one run's state. Not safe for concurrent use.
type Pipeline struct {
	cfg  config.Config
	src  Source
	sink Sink
	// socketSink: the sink also takes every socket of each walk.
	socketSink  SocketSink
	tracker     *timeline.Tracker
	observers   []Observer
	warn        func(error)
	stateFilter bool

	ev event.Event
	// Hists: the dwell histograms built from records (the kernel's own
	// in aggregate mode, see the tracer).
	Hists Histograms
	// Records: raw records handed in; Events: transitions among them;
	// Conns: connection records written, Open of them still open;
	// DecodeErrs: bad records; StuckCount: stuck records written.
	Records, Events, Conns, Open, DecodeErrs, StuckCount uint64
	seeded                                               bool
	// Walks of the kernel's sockets; progress records written and
	// skipped by the cap.
	Walks                          uint64
	ProgressCount, ProgressSkipped uint64
	walks                          walks

	// pendingStuck: stuck reports waiting for their holders (stuck.go).
	pendingStuck []pendingStuck
	halfOpen     halfOpenWatch
	// listenerOwner: listeners' owners found by inode, kept.
	listenerOwner map[uint64]Holder
	// idents: the owners' cgroup identities (--cgroup-fields), nil
	// without.
	idents *cgroup.Cache
}

// New returns the pipeline of a run with cfg: records go to sink, counts
// to every observer, warnings to warn. The connection table, which also
// serves the stuck watch, exists unless the kernel aggregates.
func New(cfg config.Config, src Source, sink Sink, observers []Observer, warn func(error)) *Pipeline {
	r := &Pipeline{cfg: cfg, src: src, sink: sink, observers: observers, warn: warn, stateFilter: cfg.StateFilter()}
	r.socketSink, _ = sink.(SocketSink)
	if cfg.CgroupFields {
		r.idents = cgroup.NewCache("/proc", identityCacheSize)
	}
	if !cfg.Aggregate() {
		r.tracker = timeline.New(cfg.MaxConns, r.connection)
		var after [event.NumStates]uint64
		for st, d := range cfg.Stuck {
			after[st] = uint64(d)
		}
		r.tracker.WatchStuck(after, r.stuck)
		r.halfOpen.limit = after[event.SynRecv]
	}
	return r
}

// TrackerStats returns the connection table's counters (zero without one).
func (r *Pipeline) TrackerStats() timeline.Stats {
	if r.tracker == nil {
		return timeline.Stats{}
	}
	return r.tracker.Stats()
}

// Handle processes one raw record from the ring buffer.
func (r *Pipeline) Handle(raw []byte) {
	r.Records++
	if err := event.Decode(raw, &r.ev); err != nil {
		r.DecodeErrs++
		return
	}
	e := &r.ev
	if e.Kind == event.KindResetAfterClose {
		if r.tracker != nil {
			r.tracker.ResetAfterClose(e.Cookie, e.Reset)
		}
		return
	}
	r.Events++
	stay, stayEnded := e.Stay()
	stayEnded = stayEnded && r.keepState(e.Old)
	if stayEnded {
		r.Hists[e.Old].Record(uint64(stay))
	}
	for _, o := range r.observers {
		o.Transition(e, stay, stayEnded)
	}
	if r.cfg.Emit&config.EmitTransitions != 0 && r.keepTransition(e) {
		r.sink.Transition(e)
	}
	if r.idents != nil && e.Has(event.Birth) {
		// Read the owner's cgroup while it surely runs: a short-lived
		// client has exited by the time its connection is written.
		r.identity(e.Has(event.OwnerKnown), e.PID, &e.Comm)
	}
	if r.tracker != nil {
		r.tracker.Observe(e)
	}
}

// Tick is each poll's work on the connection table: closed connections
// past their hold are written, and stuck connections reported.
func (r *Pipeline) Tick(now time.Time) {
	if r.tracker == nil {
		return
	}
	mono := r.src.Now()
	r.tracker.ReleaseClosed(mono)
	r.tracker.CheckStuck(mono)
	r.writeStuck(now)
}

// Drain ends the run's connection table: the last stuck reports, then
// every connection still held, written as open.
func (r *Pipeline) Drain(now time.Time) {
	if r.tracker == nil {
		return
	}
	mono := r.src.Now()
	r.tracker.CheckStuck(mono)
	r.writeStuck(now)
	r.tracker.Flush(mono)
}

func (r *Pipeline) connection(c *timeline.Conn) {
	if !c.Open && c.Ending.CloseKnown {
		// Counted here, not at the CLOSE transition: a reset the kernel
		// sends right after it (an abortive close) is on the connection.
		end := &c.Ending
		for _, o := range r.observers {
			o.Closed(c.ClosedFrom(), end.Reset, end.Err, end.TW)
		}
	}
	if r.cfg.Emit&config.EmitConnections == 0 || !r.keepConnection(c) {
		return
	}
	r.Conns++
	if c.Open {
		r.Open++
	}
	c.Identity = r.identity(c.OwnerKnown, c.PID, &c.Comm)
	r.sink.Connection(c)
}

// identityCacheSize bounds the processes whose cgroup identity is kept:
// about 200 bytes each with a Kubernetes path, so at most ~2 MB.
const identityCacheSize = 8192

// identity is the cgroup identity of an owner, nil when unknown or not
// asked for (--cgroup-fields): one /proc read per process (made at its
// socket's birth, see Handle), then a map lookup that allocates nothing.
func (r *Pipeline) identity(known bool, pid uint32, comm *[16]byte) *cgroup.Identity {
	if r.idents == nil || !known || pid == 0 {
		return nil
	}
	return r.idents.Lookup(pid, *comm)
}

// keepState applies --state (everything passes without it).
func (r *Pipeline) keepState(s event.State) bool { return !r.stateFilter || r.cfg.States[s] }

// keepTransition applies --state and, where the kernel did not, --min-dwell.
func (r *Pipeline) keepTransition(e *event.Event) bool {
	// A socket that went on to TIME_WAIT counts as entering it.
	intoTW := e.TW == event.TWTimeWait && r.cfg.States[event.TimeWait]
	if r.stateFilter && !r.cfg.States[e.Old] && !r.cfg.States[e.New] && !intoTW {
		return false
	}
	return r.cfg.MinDwell == 0 || (e.Has(event.DwellKnown) && e.Dwell >= r.cfg.MinDwell)
}

// keepConnection: a connection that passed through a --state state, and
// held some state at least --min-dwell.
func (r *Pipeline) keepConnection(c *timeline.Conn) bool {
	through, long := !r.stateFilter, r.cfg.MinDwell == 0
	for i := range c.States {
		sp := &c.States[i]
		through = through || r.cfg.States[sp.State]
		long = long || (sp.DwellKnown && time.Duration(sp.Dwell) >= r.cfg.MinDwell)
	}
	return through && long
}
