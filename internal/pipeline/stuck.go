package pipeline

import (
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
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
	conn  timeline.Conn // States not kept
	state event.State
	age   uint64
	src   event.AgeSource
}

// stuck is the tracker's callback: it queues the report for writeStuck.
func (r *Pipeline) stuck(c *timeline.Conn, state event.State, age uint64, src event.AgeSource) {
	if !r.keepState(state) {
		return
	}
	p := pendingStuck{conn: *c, state: state, age: age, src: src}
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
		walk := r.recentWalk()
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
		st := Stuck{TS: now, Conn: &p.conn, State: p.state, Age: p.age, AtLeast: p.src != event.AgeTraced, AgeSource: p.src}
		if p.state == event.FinWait2 {
			if sc, ok := r.sysctlsOf(p.conn.Netns, now); ok {
				st.Limits = &record.Limits{TCPFinTimeout: &sc.TCPFinTimeout}
			}
		}
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

// halfOpenWatch is the half-open watch's limit (walk.go checkHalfOpen).
type halfOpenWatch struct {
	limit uint64 // ns; 0: SYN_RECV not watched
}
