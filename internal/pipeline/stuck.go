package pipeline

import (
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// A stuck record is rare and must name the process that has to act, so
// it may cost a lookup: when records are due, one socket walk gives each
// socket's current local port (a SYN_SENT socket had none when the
// tracer last heard of it) and its file's inode, and one /proc scan the
// processes holding each inode (after a fork-per-connection server's
// fork, the child, not the creator).

// pendingStuck is a stuck report waiting for that lookup. The tracker's
// Conn is reused after its callback, so the fields are copied.
type pendingStuck struct {
	conn    timeline.Conn // States not kept
	state   event.State
	age     uint64
	atLeast bool
}

// stuck is the tracker's callback: it queues the report for writeStuck.
func (r *Pipeline) stuck(c *timeline.Conn, state event.State, age uint64, atLeast bool) {
	if !r.keepState(state) {
		return
	}
	p := pendingStuck{conn: *c, state: state, age: age, atLeast: atLeast}
	p.conn.States = nil
	r.pendingStuck = append(r.pendingStuck, p)
}

// writeStuck writes the queued stuck records with their holders.
func (r *Pipeline) writeStuck(now time.Time) {
	if len(r.pendingStuck) == 0 {
		return
	}
	socks := map[uint64]event.Socket{}
	if r.src.HasWalker() && r.cfg.Emit&config.EmitStuck != 0 { // the metrics need no holders
		walk, err := r.src.Walk()
		if err != nil {
			r.warn(err)
		}
		want := map[uint64]bool{}
		for i := range r.pendingStuck {
			want[r.pendingStuck[i].conn.Cookie] = true
		}
		if err := event.SplitSockets(walk, func(s *event.Socket) {
			if s.Cookie != 0 && want[s.Cookie] {
				socks[s.Cookie] = *s
			}
		}); err != nil {
			r.warn(err)
		}
	}
	inodes := map[uint64]bool{}
	for _, s := range socks {
		if s.Inode != 0 {
			inodes[s.Inode] = true
		}
	}
	holders := r.src.Holders(inodes)
	for i := range r.pendingStuck {
		p := &r.pendingStuck[i]
		st := Stuck{TS: now, Conn: &p.conn, State: p.state, Age: p.age, AtLeast: p.atLeast}
		if s, ok := socks[p.conn.Cookie]; ok {
			if p.conn.Src.Port() == 0 && s.Src.Port() != 0 {
				p.conn.Src = s.Src
				r.tracker.LearnLocal(s.Cookie, s.Src) // the connection record names it too
			}
			st.HoldersKnown = true
			st.Holders = holders[s.Inode]
		}
		r.writeOneStuck(&st)
	}
	clear(r.pendingStuck)
	r.pendingStuck = r.pendingStuck[:0]
}

func (r *Pipeline) writeOneStuck(st *Stuck) {
	for _, o := range r.observers {
		o.Stuck(st.State)
	}
	if st.HalfOpen == 0 && st.Conn.Cookie != 0 {
		if r.stuckNow == nil {
			r.stuckNow = map[uint64]*stuckNow{}
		}
		r.stuckNow[st.Conn.Cookie] = &stuckNow{state: st.State, netns: st.Conn.Netns}
	}
	if r.cfg.Emit&config.EmitStuck == 0 {
		return // counted in the metrics only
	}
	r.StuckCount++
	if st.Identity == nil { // a recorded one keeps its own
		pid, comm, known, _ := st.Owner()
		st.Identity = r.identity(known, pid, comm)
	}
	r.sink.Stuck(st)
}

// listenerKey names a listening port: request sockets carry the
// listener's local port and namespace.
type listenerKey struct {
	netns       uint32
	netnsCookie uint64 // the namespace's identity: its inode is reused
	port        uint16
}

// halfOpenWatch finds listeners whose half-open handshakes (request
// sockets, which no tracepoint reports) outlive the SYN_RECV limit: a SYN
// flood, or a lossy return path. The kernel counts SYN-ACKs retransmitted
// for such handshakes; only when that count moves, or an episode is open,
// does it walk the sockets. One stuck record per listener per episode: a
// flood must not flood the output.
type halfOpenWatch struct {
	limit    uint64 // ns; 0: SYN_RECV not watched
	lastLate uint64 // the kernel's count at the last look
	episodes map[listenerKey]bool
}

// CheckHalfOpen looks at the listeners' half-open handshakes if there is
// reason to (see halfOpenWatch); late is the kernel's count now.
func (r *Pipeline) CheckHalfOpen(now time.Time, late uint64) {
	w := &r.halfOpen
	if w.limit == 0 || !r.src.HasWalker() || !r.keepState(event.SynRecv) ||
		(late == w.lastLate && len(w.episodes) == 0) {
		return
	}
	w.lastLate = late
	walk, err := r.src.Walk()
	if err != nil {
		r.warn(err)
	}
	mono := r.src.Now()
	type pile struct {
		n      uint32
		oldest event.Mono
	}
	piles := map[listenerKey]*pile{}
	listeners := map[listenerKey]event.Socket{}
	if err := event.SplitSockets(walk, func(s *event.Socket) {
		k := listenerKey{s.Netns, s.NetnsCookie, s.Src.Port()}
		switch {
		case s.State == event.Listen:
			if _, dup := listeners[k]; !dup { // SO_REUSEPORT: the first
				listeners[k] = *s
			}
		case s.State == event.NewSynRecv && s.SynAck != 0 && mono.Since(s.SynAck) >= w.limit:
			p := piles[k]
			if p == nil {
				p = &pile{oldest: s.SynAck}
				piles[k] = p
			}
			p.n++
			p.oldest = min(p.oldest, s.SynAck)
		}
	}); err != nil {
		r.warn(err)
	}
	for k := range w.episodes {
		if piles[k] == nil {
			delete(w.episodes, k) // the pile is gone: the episode ends
		}
	}
	for k, p := range piles {
		if w.episodes[k] {
			continue
		}
		if w.episodes == nil {
			w.episodes = map[listenerKey]bool{}
		}
		w.episodes[k] = true
		l, ok := listeners[k]
		if !ok { // the listener is gone or filtered: name the port
			l = event.Socket{Netns: k.netns, NetnsCookie: k.netnsCookie, Src: netip.AddrPortFrom(netip.IPv4Unspecified(), k.port), Family: event.IPv4}
		}
		c := timeline.Conn{Cookie: l.Cookie, Netns: l.Netns, NetnsCookie: l.NetnsCookie, IfIndex: l.IfIndex, Family: l.Family, Src: l.Src,
			Dst: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), PID: l.PID, Comm: l.Comm, OwnerKnown: l.OwnerKnown}
		if l.Family == event.IPv6 {
			c.Dst = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		r.writeOneStuck(&Stuck{TS: now, Conn: &c, State: event.SynRecv, Age: mono.Since(p.oldest), HalfOpen: p.n})
	}
}
