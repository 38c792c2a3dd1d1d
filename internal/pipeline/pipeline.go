// Package pipeline turns the kernel's records into what the tracer
// writes: decode, the stays of the histograms, timelines and the stuck
// watch, the socket tallies, and the sinks and metrics that receive them.
// It is pure Go fed by a small Source, so it runs and is tested without
// root on any system; the Linux run loop (internal/tracer) reads the ring
// buffer and hands it the records.
package pipeline

import (
	"time"

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
	// records, those of the states detail leaves out counted in groups;
	// an error names namespaces it could not walk (a warning).
	Walk(detail event.WalkDetail) ([]byte, error)
	// Holders names the processes that hold each socket inode now.
	Holders(inodes map[uint64]bool) map[uint64][]Holder
	// Now is the kernel's monotonic clock.
	Now() event.Mono
	// Identity is the cgroup identity of the process pid (comm tells a
	// reused PID apart), nil when unknown: asked only with
	// --cgroup-fields, first at a socket's birth while its owner surely
	// runs, then as its records are written, so a source keeps what it
	// read.
	Identity(pid uint32, comm [16]byte) *event.Identity
	// Recorded reports whether the source hands whole connection records
	// (a replay of a recording, see Recorded*): then the pipeline keeps
	// no connection table and rebuilds nothing from the transitions.
	Recorded() bool
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
	// Listeners: from one socket walk, the kernel's drops summed over
	// the listeners (since each listen()), and how many of them sent SYN
	// cookies since the previous walk.
	Listeners(drops, cookieSenders uint64)
}

// WalkObserver is an Observer that also takes what each socket walk
// found beyond the tally (the metrics' listener, half-open and stuck
// gauges).
type WalkObserver interface {
	Walked(w *Walk)
}

// Walk is what one socket walk found, for a WalkObserver.
type Walk struct {
	// Namespaces: network namespaces with a socket counted in the tally.
	Namespaces int
	Listeners  []Listener
	// HalfOpen: request sockets (half-open handshakes).
	HalfOpen uint64
	// StuckNow: sockets past their --stuck limit now, by state: those
	// reported stuck and still in that state, and as SYN_RECV the
	// half-open handshakes older than its limit.
	StuckNow [event.NumStates]uint64
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
	// spanHists, spanUntimed: the stays of recorded connections
	// (RecordedConnection).
	spanHists   Histograms
	spanUntimed Untimed
	// Untimed: the stays that ended without a time (the kernel's in
	// aggregate mode).
	Untimed Untimed
	// Records: raw records handed in; Events: transitions among them
	// (or replayed), Written of them written; Conns: connection records
	// written, Open of them still open; DecodeErrs: bad records;
	// StuckCount: stuck records written.
	Records, Events, Written, Conns, Open, DecodeErrs, StuckCount uint64
	seeded                                                        bool
	// Walks of the kernel's sockets; progress records written and
	// skipped by the cap.
	Walks                          uint64
	ProgressCount, ProgressSkipped uint64
	walks                          walks

	// pendingStuck: stuck reports waiting for their holders (stuck.go).
	pendingStuck []pendingStuck
	halfOpen     halfOpenWatch
	// stuckNow: sockets reported stuck, by cookie, with the state,
	// until a walk finds them gone or elsewhere (for StuckNow).
	stuckNow map[uint64]*stuckNow
	// observe is r.Observe (Handle's, for connection records).
	observe func(*event.Event)
	// kernelHists: the histograms are the kernel's (KernelHistograms).
	kernelHists bool
	// listenerOwner: listeners' owners found by inode, kept.
	listenerOwner map[uint64]Holder
	// cookieStamps: each listener's SYN-cookie stamp at the previous
	// walk, by inode.
	cookieStamps map[uint64]uint32
}

// New returns the pipeline of a run with cfg: records go to sink, counts
// to every observer, warnings to warn. The connection table, which also
// serves the stuck watch, exists unless the kernel aggregates or the
// source records connections itself.
func New(cfg config.Config, src Source, sink Sink, observers []Observer, warn func(error)) *Pipeline {
	r := &Pipeline{cfg: cfg, src: src, sink: sink, observers: observers, warn: warn, stateFilter: cfg.StateFilter()}
	r.socketSink, _ = sink.(SocketSink)
	r.observe = r.Observe // bound once: no closure per connection record
	if !cfg.Aggregate() && !src.Recorded() {
		r.tracker = timeline.New(cfg.MaxConns, r.Connection)
		var after [event.NumStates]uint64
		for st, d := range cfg.Stuck {
			after[st] = uint64(d)
		}
		r.tracker.WatchStuck(after, r.stuck)
		r.halfOpen.limit = after[event.SynRecv]
	}
	return r
}

// KernelHistograms tells the pipeline that the kernel keeps the
// histograms (config.ConnRecords: the transitions of a connection come
// when its record is sent, the stays were counted as they ended): the
// transitions it observes are not counted again.
func (r *Pipeline) KernelHistograms() { r.kernelHists = true }

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
	if len(raw) == event.ConnSize {
		if err := event.DecodeConn(raw, &r.ev, r.observe); err != nil {
			r.DecodeErrs++
		}
		return
	}
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
	r.Observe(e)
}

// Observe processes one transition: a decoded record (Handle), or a
// replayed one. Its stay goes to the histograms, the transition to the
// sink if selected, and to the connection table.
func (r *Pipeline) Observe(e *event.Event) {
	r.Events++
	stay, stayEnded := e.Stay()
	stayEnded = stayEnded && r.keepState(e.Old)
	switch {
	case r.kernelHists: // counted when the stay ended, not when its record came
	case stayEnded:
		r.Hists[e.Old].Record(uint64(stay))
	default:
		if why, untimed := e.Untimed(); untimed && r.keepState(e.Old) {
			r.Untimed[e.Old].ByReason[why]++
		}
	}
	for _, o := range r.observers {
		o.Transition(e, stay, stayEnded)
	}
	if r.cfg.Emit&config.EmitTransitions != 0 && r.keepTransition(e) {
		r.Written++
		r.sink.Transition(e)
	}
	if r.cfg.CgroupFields && e.Has(event.Birth) {
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
	r.learnLocalPorts()
	r.tracker.Flush(mono)
}

// learnLocalPorts gives the connections still held without a local port
// (connect() picked it after the last transition seen) the one the
// kernel has now, from one socket walk: every record names the port ss
// shows.
func (r *Pipeline) learnLocalPorts() {
	if !r.src.HasWalker() || !r.tracker.NoLocalPort() {
		return
	}
	walk, err := r.src.Walk(event.WalkAll)
	if err != nil {
		r.warn(err)
	}
	if err := event.SplitSockets(walk, func(s *event.Socket) { r.tracker.LearnLocal(s.Cookie, s.Src) }); err != nil {
		r.warn(err)
	}
}

// Connection writes one connection if selected: one the connection table
// ended, or a recorded one (RecordedConnection). An identity the record
// already carries is kept.
func (r *Pipeline) Connection(c *timeline.Conn) {
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
	if c.Identity == nil {
		c.Identity = r.identity(c.OwnerKnown, c.PID, &c.Comm)
	}
	r.sink.Connection(c)
}

// identity is the cgroup identity of an owner, nil when unknown or not
// asked for (--cgroup-fields).
func (r *Pipeline) identity(known bool, pid uint32, comm *[16]byte) *event.Identity {
	if !r.cfg.CgroupFields || !known || pid == 0 {
		return nil
	}
	return r.src.Identity(pid, *comm)
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

// stuckNow is a socket reported stuck, in its namespace, and the walks in
// a row that did not reach that namespace (WalkSaw.Left).
type stuckNow struct {
	state  event.State
	netns  uint32
	missed int
}
