package pipeline

import (
	"maps"
	"slices"
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
	walk      Walk
	// namespaces: those with a counted socket, ascending.
	namespaces []uint32
}

// take reads one walk (struct sock_snap records). The first walk also
// seeds the connection table with the sockets older than the tracer,
// which the stuck watch must know (a CLOSE_WAIT leak predates the person
// looking for it). Metrics see every walk.
func (r *Pipeline) take(walk []byte, mono event.Mono) (*tally, error) {
	t := &tally{}
	byPort := map[listenerKey]int{}
	halfOpen := map[listenerKey]uint32{}
	namespaces := map[uint32]bool{}
	saw := NewWalkSaw(nil)
	err := event.SplitSockets(walk, func(s *event.Socket) {
		if r.keepState(s.State) {
			t.counts[s.State] += uint64(s.Count)
			namespaces[s.Netns] = true
			if r.socketSink != nil {
				t.socks = append(t.socks, *s)
			}
		}
		if len(r.stuckNow) > 0 {
			saw.add(s)
		}
		if s.State == event.NewSynRecv {
			t.walk.HalfOpen += uint64(s.Count)
			if r.pastHalfOpen(s) && r.keepState(event.SynRecv) {
				t.walk.StuckNow[event.SynRecv] += uint64(s.Count)
			}
		}
		k := listenerKey{s.Netns, s.NetnsCookie, s.Src.Port()}
		switch s.State {
		case event.Listen:
			byPort[k] = len(t.listeners)
			t.listeners = append(t.listeners, Listener{Netns: s.Netns, NetnsCookie: s.NetnsCookie, IfIndex: s.IfIndex, Family: s.Family, Addr: s.Src, Inode: s.Inode,
				PID: s.PID, Comm: s.Comm, OwnerKnown: s.OwnerKnown, AcceptQueue: s.AcceptQueue,
				AcceptQueueMax: s.AcceptQueueMax, SynAckRetrans: s.SynAckRetrans,
				Drops: s.Drops, SynCookies: s.SynCookies})
			r.cookiesSent(&t.listeners[len(t.listeners)-1], s.SynCookieStamp)
		case event.NewSynRecv:
			halfOpen[k] += s.Count
		}
		if r.tracker != nil {
			if !r.seeded {
				r.tracker.Seed(s, mono)
			} else if s.State == event.SynSent {
				r.tracker.LearnLocal(s.Cookie, s.Src)
			}
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
	for ck, sn := range r.stuckNow {
		if saw.Left(ck, sn.netns, sn.state, &sn.missed) {
			delete(r.stuckNow, ck) // closed, or moved on
			continue
		}
		t.walk.StuckNow[sn.state]++
	}
	t.walk.Namespaces, t.walk.Listeners = len(namespaces), t.listeners
	t.namespaces = slices.Sorted(maps.Keys(namespaces))
	r.forgetStamps(t.listeners)
	var drops, senders uint64
	for i := range t.listeners {
		drops += uint64(t.listeners[i].Drops)
		if t.listeners[i].SynCookiesSent {
			senders++
		}
	}
	for _, o := range r.observers {
		o.Sockets(&t.counts)
		o.Listeners(drops, senders)
		if wo, ok := o.(WalkObserver); ok {
			wo.Walked(&t.walk)
		}
	}
	return t, nil
}

// cookiesSent sets whether the listener sent SYN cookies since the
// previous walk: the kernel stamps a listener (in jiffies, at most once
// a second) whenever it answers a SYN with a cookie, and never otherwise.
func (r *Pipeline) cookiesSent(l *Listener, stamp uint32) {
	if r.cookieStamps == nil {
		r.cookieStamps = map[uint64]uint32{}
	}
	prev, ok := r.cookieStamps[l.Inode]
	l.SynCookiesKnown = ok && l.Inode != 0
	l.SynCookiesSent = l.SynCookiesKnown && stamp != prev
	r.cookieStamps[l.Inode] = stamp
}

// forgetStamps drops the stamps of listeners that are gone.
func (r *Pipeline) forgetStamps(ls []Listener) {
	if len(r.cookieStamps) <= len(ls) {
		return
	}
	live := make(map[uint64]bool, len(ls))
	for i := range ls {
		live[ls[i].Inode] = true
	}
	for ino := range r.cookieStamps {
		if !live[ino] {
			delete(r.cookieStamps, ino)
		}
	}
}

// WriteSockets writes what one walk found (the tracepoint mode has no
// walker): the states tally and, per listener, its queues (a full accept
// queue is otherwise silent on the server: the clients' SYNs are dropped
// and they sit in SYN_SENT).
func (r *Pipeline) WriteSockets(walk []byte, now time.Time, mono event.Mono) error {
	if !r.src.HasWalker() {
		return nil
	}
	t, err := r.take(walk, mono)
	if err != nil {
		return err
	}
	r.walks.statesAt = now
	r.afterWalk(walk, now, mono)
	if r.cfg.Emit&config.EmitStates == 0 {
		return nil
	}
	if ss, ok := r.sink.(SpanSink); ok {
		ss.Span(t.namespaces)
	}
	r.sink.States(now, &t.counts)
	if r.socketSink != nil {
		r.socketSink.Sockets(now, t.socks)
	}
	if r.keepListeners() {
		for i := range t.listeners {
			r.sink.Listener(now, &t.listeners[i])
		}
	}
	return nil
}

// keepListeners applies --state to the listeners' queues: kept when it
// names a state they concern.
func (r *Pipeline) keepListeners() bool {
	return r.keepState(event.Listen) || r.keepState(event.SynRecv) || r.keepState(event.NewSynRecv)
}

// CountSockets updates the metrics' socket gauges from one walk, and
// hands it to everything else that uses walks, without states records.
func (r *Pipeline) CountSockets(walk []byte, now time.Time, mono event.Mono) error {
	if !r.src.HasWalker() {
		return nil
	}
	if _, err := r.take(walk, mono); err != nil {
		return err
	}
	r.afterWalk(walk, now, mono)
	return nil
}

// WalkAndWrite takes a fresh walk and writes it; a namespace that cannot
// be walked is a warning, not the end of the run.
func (r *Pipeline) WalkAndWrite(now time.Time) error {
	walk, err := r.src.Walk(r.walkDetail(now))
	return r.WriteWalk(walk, err, now, r.src.Now())
}

// WriteWalk writes a walk taken at mono; walkErr, what the walk could not
// do, is a warning.
func (r *Pipeline) WriteWalk(walk []byte, walkErr error, now time.Time, mono event.Mono) error {
	if walkErr != nil {
		r.warn(walkErr)
	}
	return r.WriteSockets(walk, now, mono)
}

// WalkAndCount takes a fresh walk for the metrics alone.
func (r *Pipeline) WalkAndCount() error {
	walk, err := r.src.Walk(r.walkDetail(time.Now()))
	if err != nil {
		r.warn(err)
	}
	return r.CountSockets(walk, time.Now(), r.src.Now())
}

// startOwners is a Source that knows who owned the sockets that existed
// when it started (the tracer's scan of /proc before it loaded): the
// listeners the first walk finds are named from it, not from a second
// scan of every process's descriptors.
type startOwners interface {
	StartOwner(ino uint64) (Holder, bool)
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
		if so, ok := r.src.(startOwners); ok {
			for ino := range want {
				if o, found := so.StartOwner(ino); found {
					r.listenerOwner[ino] = o
					delete(want, ino)
				}
			}
		}
		if len(want) > 0 {
			found := r.src.Holders(want)
			for ino := range want {
				// One that no process holds (PID 0) is not asked about
				// again at every walk: each asking reads all of /proc.
				if hs := found[ino]; len(hs) > 0 {
					r.listenerOwner[ino] = hs[0]
				} else {
					r.listenerOwner[ino] = Holder{}
				}
			}
		}
	}
	for i := range ls {
		if o, known := r.listenerOwner[ls[i].Inode]; !ls[i].OwnerKnown && ls[i].Inode != 0 && known && o.PID != 0 {
			ls[i].PID, ls[i].Comm, ls[i].OwnerKnown = o.PID, o.Comm, true
		}
	}
}
