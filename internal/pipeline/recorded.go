package pipeline

import (
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// What a replay hands the pipeline besides transitions (Observe): the
// records a live run wrote whole. Each passes the selection a live run
// applies (--state), so a replay (`analyze`, `report`) has no rule of its
// own.

// RecordedConnection takes a recorded connection. Its spans' stays go to
// the histograms of a replay without transitions (Histograms); it is
// written if selected. A pipeline that rebuilds connections from the
// transitions (its Source records none) ignores it.
func (r *Pipeline) RecordedConnection(c *timeline.Conn) {
	if !r.src.Recorded() {
		return
	}
	c.Stays(func(st event.State, d time.Duration) {
		if r.keepState(st) {
			r.spanHists[st].Record(uint64(d))
		}
	}, func(st event.State, why event.UntimedReason) {
		if r.keepState(st) {
			r.spanUntimed[st].ByReason[why]++
		}
	})
	r.Connection(c)
}

// Histograms returns the dwell histograms and the untimed stays: those of the transitions'
// stays, or in a replay of connections alone (recorded with --emit
// connections) those of their spans' stays, by the same rule
// (timeline.Conn.Stays).
func (r *Pipeline) Histograms() (*Histograms, *Untimed) {
	if r.Events == 0 && r.src.Recorded() {
		return &r.spanHists, &r.spanUntimed
	}
	return &r.Hists, &r.Untimed
}

// RecordedStuck takes a recorded stuck record: written if --state keeps
// its state (a listener's half-open pile is SYN_RECV's), as writeStuck
// and CheckHalfOpen do.
func (r *Pipeline) RecordedStuck(s *Stuck) {
	if r.keepState(s.State) {
		r.writeOneStuck(s)
	}
}

// RecordedStates takes a recorded count of sockets per state: the states
// --state does not keep count 0, as in take. span: the namespaces the
// count spans, nil when the record does not say (an older recording).
func (r *Pipeline) RecordedStates(ts time.Time, counts *[event.NumStates]uint64, span []uint32) {
	if r.cfg.Emit&config.EmitStates == 0 {
		return
	}
	if ss, ok := r.sink.(SpanSink); ok && span != nil {
		ss.Span(span)
	}
	for st := range counts {
		if !r.keepState(event.State(st)) {
			counts[st] = 0
		}
	}
	r.sink.States(ts, counts)
}

// RecordedListener takes a recorded listener's queues: written if --state
// keeps a state they concern, as WriteSockets does.
func (r *Pipeline) RecordedListener(ts time.Time, l *Listener) {
	if r.cfg.Emit&config.EmitStates != 0 && r.keepListeners() {
		r.sink.Listener(ts, l)
	}
}
