package pipeline

import (
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// tally is what one socket walk found: the count per state (the netstat
// tally), the listeners with their queues, and the sockets themselves for
// a sink that wants them.
type tally struct {
	counts    [event.NumStates]uint64
	listeners []Listener
	socks     []event.Socket
}

// take reads one walk (struct sock_snap records). The first walk also
// seeds the connection table with the sockets older than the tracer,
// which the stuck watch must know (a CLOSE_WAIT leak predates the person
// looking for it). Metrics see every walk.
func (r *Pipeline) take(walk []byte, mono event.Mono) (*tally, error) {
	t := &tally{}
	byPort := map[listenerKey]int{}
	halfOpen := map[listenerKey]uint32{}
	err := event.SplitSockets(walk, func(s *event.Socket) {
		if r.keepState(s.State) {
			t.counts[s.State]++
			if r.socketSink != nil {
				t.socks = append(t.socks, *s)
			}
		}
		k := listenerKey{s.Netns, s.Src.Port()}
		switch s.State {
		case event.Listen:
			byPort[k] = len(t.listeners)
			t.listeners = append(t.listeners, Listener{Netns: s.Netns, Family: s.Family, Addr: s.Src, Inode: s.Inode,
				PID: s.PID, Comm: s.Comm, OwnerKnown: s.OwnerKnown, AcceptQueue: s.AcceptQueue,
				AcceptQueueMax: s.AcceptQueueMax, SynAckRetrans: s.SynAckRetrans})
		case event.NewSynRecv:
			halfOpen[k]++
		}
		if !r.seeded && r.tracker != nil {
			r.tracker.Seed(s, mono)
		}
	})
	if err != nil {
		return nil, err
	}
	r.seeded = true
	for k, n := range halfOpen {
		if i, ok := byPort[k]; ok {
			t.listeners[i].HalfOpen += n // SO_REUSEPORT: all on the first
		}
	}
	r.listenerOwners(t.listeners)
	for _, o := range r.observers {
		o.Sockets(&t.counts)
	}
	return t, nil
}

// writeTally writes what one walk found: the states tally and, per
// listener, its queues (a full accept queue is otherwise silent on the
// server: the clients' SYNs are dropped and they sit in SYN_SENT).
func (r *Pipeline) writeTally(t *tally, now time.Time) {
	if r.cfg.Emit&config.EmitStates == 0 {
		return
	}
	r.sink.States(now, &t.counts)
	if r.socketSink != nil {
		r.socketSink.Sockets(now, t.socks)
	}
	if r.keepState(event.Listen) || r.keepState(event.SynRecv) || r.keepState(event.NewSynRecv) {
		for i := range t.listeners {
			r.sink.Listener(now, &t.listeners[i])
		}
	}
}

// WalkAndCount takes a fresh walk for the metrics alone (without
// --walk-interval).
func (r *Pipeline) WalkAndCount() error {
	if !r.src.HasWalker() {
		return nil
	}
	walk, err := r.src.Walk()
	if err != nil {
		r.warn(err)
	}
	_, err = r.take(walk, r.src.Now())
	return err
}

// listenerOwners fills in the owners the kernel side does not know (the
// histogram-only mode keeps no per-socket owners) from the processes that
// hold the listener's inode; listeners are few and long-lived, so the
// answers are kept and the Source is asked only about new ones.
func (r *Pipeline) listenerOwners(ls []Listener) {
	want := map[uint64]bool{}
	for i := range ls {
		if _, known := r.listenerOwner[ls[i].Inode]; !ls[i].OwnerKnown && ls[i].Inode != 0 && !known {
			want[ls[i].Inode] = true
		}
	}
	if len(want) > 0 {
		if r.listenerOwner == nil || len(r.listenerOwner) > 4096 {
			r.listenerOwner = map[uint64]Holder{} // bounded: listeners come and go
		}
		for ino, hs := range r.src.Holders(want) {
			r.listenerOwner[ino] = hs[0]
		}
	}
	for i := range ls {
		if o, known := r.listenerOwner[ls[i].Inode]; !ls[i].OwnerKnown && ls[i].Inode != 0 && known {
			ls[i].PID, ls[i].Comm, ls[i].OwnerKnown = o.PID, o.Comm, true
		}
	}
}
