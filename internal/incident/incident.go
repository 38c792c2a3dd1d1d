// Package incident shows only trouble, grouped: the answer to a pile in
// `netstat -nat`. It is a sink of the pipeline (internal/pipeline) that
// takes the stuck records and the socket walk of every second, and keeps
// groups of troubled sockets:
//
//   - CLOSE_WAIT, FIN_WAIT2, LAST_ACK past their stuck limit, by owning
//     process and local address (for a server, its listener's);
//   - SYN_SENT past its limit, by remote host:port (the upstream that does
//     not answer);
//   - half-open handshakes (request sockets) older than the SYN_RECV
//     limit, by listener and remote prefix (/24, /64): who does not
//     complete its handshakes;
//   - TIME_WAIT past a count toward one destination (--pile), by
//     destination host (a timewait socket has no owner).
//
// A group gets a line when it appears, at most one more per interval
// while its count changes, and one when it clears. Pure Go: fed by
// the pipeline live, and by tests.
package incident

import (
	"io"
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// Config is what counts as trouble and how often a group may speak.
type Config struct {
	// Stuck: the stuck limits (--stuck); SYN_RECV's applies to
	// request sockets.
	Stuck [event.NumStates]time.Duration
	// Piles: the count per group past which it is trouble (--pile);
	// 0: not watched. TIME_WAIT only for now.
	Piles [event.NumStates]uint64
	// Every: at most one line per group per Every while it changes.
	Every time.Duration
	// ShowNetns: lines name the namespace (the run spans several).
	ShowNetns bool
}

// Line is one line of the incident output: a group that appeared,
// changed or cleared.
type Line struct {
	TS            time.Time
	State         event.State
	Netns         uint32
	Count         uint64
	Oldest        time.Duration // 0: unknown
	OldestAtLeast bool
	OwnerKnown    bool
	PID           uint32
	Comm          [16]byte
	Local, Remote netip.AddrPort // zero when not part of the group
	RemotePrefix  netip.Prefix   // zero when not part of the group
	LimitNs       uint64         // stuck groups
	PileLimit     uint64         // piles
	Cleared       bool
	ShowNetns     bool
}

// Writer writes Lines (text or NDJSON).
type Writer interface {
	Line(l *Line)
	Flush() error
	Redirect(w io.Writer) error
}

// key names a group.
type key struct {
	state  event.State
	netns  uint32
	pid    uint32
	comm   [16]byte
	local  netip.AddrPort
	remote netip.AddrPort
	prefix netip.Prefix
}

// group is a group's state between walks.
type group struct {
	line     Line // the last line written
	count    uint64
	oldest   time.Duration
	atLeast  bool
	owner    bool
	lastSaid time.Time
	seen     bool // in this walk
}

// stuckSock is a socket a stuck record named, until it leaves the state.
type stuckSock struct {
	key     key
	owner   bool
	at      time.Time // when the record was written
	age     time.Duration
	atLeast bool
	state   event.State
	missed  int // walks in a row that did not reach its namespace
}

// Watch is the incident sink.
type Watch struct {
	cfg       Config
	clock     event.Clock
	w         Writer
	stuck     map[uint64]*stuckSock
	groups    map[key]*group
	listeners map[listenerKey]owner
}

type listenerKey struct {
	netns uint32
	port  uint16
}

type owner struct {
	pid  uint32
	comm [16]byte
}

// New returns a Watch writing to w; clock turns the walk's kernel times
// into wall time.
func New(cfg Config, clock event.Clock, w Writer) *Watch {
	return &Watch{cfg: cfg, clock: clock, w: w, stuck: map[uint64]*stuckSock{}, groups: map[key]*group{}, listeners: map[listenerKey]owner{}}
}

// Stuck takes a stuck record: the socket joins its group until a walk
// finds it gone or in another state.
func (x *Watch) Stuck(s *pipeline.Stuck) {
	if s.HalfOpen > 0 || s.Conn.Cookie == 0 {
		return // half-open handshakes come from the walk's request sockets
	}
	pid, comm, known, _ := s.Owner()
	c := s.Conn
	k := key{state: s.State, netns: c.Netns}
	switch s.State {
	case event.SynSent:
		k.remote = c.Dst
	case event.CloseWait, event.FinWait2, event.LastAck, event.Closing, event.FinWait1:
		k.local = c.Src
	default:
		k.local, k.remote = c.Src, c.Dst
	}
	if known && s.State != event.SynSent {
		k.pid, k.comm = pid, *comm
	}
	st := &stuckSock{key: k, at: s.TS, age: time.Duration(s.Age), atLeast: s.AtLeast, state: s.State, owner: known}
	if s.State == event.SynSent && known {
		// The holder is said, not grouped by: one upstream, whoever
		// calls it.
		st.key.pid, st.key.comm = 0, [16]byte{}
	}
	x.stuck[c.Cookie] = st
	x.ensure(st.key, s.TS, known, pid, comm)
}

// ensure makes the group of a new stuck socket exist, with its holder.
func (x *Watch) ensure(k key, ts time.Time, known bool, pid uint32, comm *[16]byte) {
	g := x.groups[k]
	if g == nil {
		g = &group{}
		x.groups[k] = g
	}
	if known && !g.owner {
		g.owner, g.line.PID, g.line.Comm = true, pid, *comm
	}
}

// Sockets takes one walk: it ends stuck sockets that left their state,
// finds the half-open and TIME_WAIT piles, and says what changed.
func (x *Watch) Sockets(ts time.Time, socks []event.Socket) {
	saw := pipeline.NewWalkSaw(socks)
	for i := range socks {
		s := &socks[i]
		if s.State == event.Listen {
			lk := listenerKey{s.Netns, s.Src.Port()}
			if _, ok := x.listeners[lk]; !ok && s.OwnerKnown {
				x.listeners[lk] = owner{s.PID, s.Comm}
			}
		}
	}
	for ck, st := range x.stuck {
		if saw.Left(ck, st.key.netns, st.state, &st.missed) {
			delete(x.stuck, ck)
		}
	}
	for _, g := range x.groups {
		g.count, g.oldest, g.atLeast, g.seen = 0, 0, false, false
	}
	for _, st := range x.stuck {
		g := x.groups[st.key]
		if g == nil {
			g = &group{}
			x.groups[st.key] = g
		}
		age := st.age + ts.Sub(st.at)
		g.count++
		g.seen = true
		if age > g.oldest {
			g.oldest, g.atLeast = age, st.atLeast
		}
	}
	x.piles(ts, socks)
	for k, g := range x.groups {
		x.say(ts, k, g)
	}
}

// piles counts the walk's request sockets past the SYN_RECV limit and
// TIME_WAIT sockets per destination.
func (x *Watch) piles(ts time.Time, socks []event.Socket) {
	limit := x.cfg.Stuck[event.SynRecv]
	tw := map[key]uint64{}
	for i := range socks {
		s := &socks[i]
		switch {
		case s.State == event.NewSynRecv && limit > 0 && s.SynAck != 0:
			age := ts.Sub(x.clock.Wall(s.SynAck))
			if age < limit {
				continue
			}
			k := key{state: event.SynRecv, netns: s.Netns, local: s.Src, prefix: remotePrefix(s.Dst.Addr())}
			g := x.groups[k]
			if g == nil {
				g = &group{}
				x.groups[k] = g
				if o, ok := x.listeners[listenerKey{s.Netns, s.Src.Port()}]; ok {
					g.owner, g.line.PID, g.line.Comm = true, o.pid, o.comm
				}
			}
			g.count++
			g.seen = true
			g.oldest = max(g.oldest, age)
		case s.State == event.TimeWait && x.cfg.Piles[event.TimeWait] > 0:
			a := s.Dst.Addr().Unmap()
			tw[key{state: event.TimeWait, netns: s.Netns, prefix: netip.PrefixFrom(a, a.BitLen())}]++
		}
	}
	for k, n := range tw {
		if n <= x.cfg.Piles[event.TimeWait] { // past the count, not at it
			continue
		}
		g := x.groups[k]
		if g == nil {
			g = &group{}
			x.groups[k] = g
		}
		g.count, g.seen = n, true
	}
}

// remotePrefix is the /24 (IPv4) or /64 (IPv6) a remote address is in:
// the clients that do not complete handshakes are often one network.
func remotePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// say writes a group's line when it appeared, changed (at most once per
// Every), or cleared.
func (x *Watch) say(ts time.Time, k key, g *group) {
	said := !g.lastSaid.IsZero()
	switch {
	case !g.seen && !said:
		delete(x.groups, k) // a stuck socket that left before any walk
		return
	case !g.seen:
		l := g.line
		l.TS, l.Cleared = ts, true
		x.w.Line(&l)
		delete(x.groups, k)
		return
	case said && (g.count == g.line.Count || ts.Sub(g.lastSaid) < x.cfg.Every):
		return
	}
	l := &g.line
	l.TS, l.State, l.Netns, l.Count, l.Cleared, l.ShowNetns = ts, k.state, k.netns, g.count, false, x.cfg.ShowNetns
	l.Oldest, l.OldestAtLeast = g.oldest, g.atLeast
	l.OwnerKnown = g.owner
	l.Local, l.Remote, l.RemotePrefix = k.local, k.remote, k.prefix
	switch k.state {
	case event.TimeWait:
		l.PileLimit = x.cfg.Piles[event.TimeWait]
	default:
		l.LimitNs = uint64(x.cfg.Stuck[k.state])
	}
	g.lastSaid = ts
	x.w.Line(l)
}

// The rest of pipeline.SocketSink: what the incident view leaves out.

func (x *Watch) Transition(*event.Event)                                                {}
func (x *Watch) Connection(*timeline.Conn)                                              {}
func (x *Watch) Histograms(_, _ time.Time, _ *pipeline.Histograms, _ *pipeline.Untimed) {}
func (x *Watch) States(time.Time, *[event.NumStates]uint64)                             {}
func (x *Watch) Lost(*pipeline.Lost)                                                    {}
func (x *Watch) Stats(*pipeline.Stats)                                                  {}
func (x *Watch) Flush() error                                                           { return x.w.Flush() }
func (x *Watch) Redirect(w io.Writer) error                                             { return x.w.Redirect(w) }

// Listener keeps the listeners' owners, which the pipeline fills in from
// /proc where the walk has none, for the half-open groups.
func (x *Watch) Listener(_ time.Time, l *pipeline.Listener) {
	if l.OwnerKnown {
		x.listeners[listenerKey{l.Netns, l.Addr.Port()}] = owner{l.PID, l.Comm}
	}
}

// Progress, Pile and Cleared: the incident view groups the walk's
// sockets itself (Sockets); these records add nothing to it yet.
func (x *Watch) Progress(*pipeline.Progress) {}
func (x *Watch) Pile(*pipeline.Pile)         {}
func (x *Watch) Cleared(*pipeline.Cleared)   {}
