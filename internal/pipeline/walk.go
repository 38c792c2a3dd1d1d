package pipeline

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// One periodic walk of the kernel's sockets serves everything that needs
// live sockets rather than transitions: the socket tally and its gauges,
// the half-open watch (request sockets never pass the tracepoint),
// TIME_WAIT piles, the holders of stuck sockets and progress records.
// The first walk, at start, also seeds the connection table with the
// sockets older than the tracer and the kernel's figures of their ages.
// The run loop calls WalkDue every poll; a walk is taken every
// --walk-interval, and at --interval for the states records.

// walks is the state of the periodic walk.
type walks struct {
	last      time.Time     // when the last walk was taken
	took      time.Duration // its CPU time (walkMeter), else its and its use's wall time
	buf       []byte        // its records
	mono      event.Mono    // its kernel time
	firstMono event.Mono    // the first walk's: sockets older are at least that old
	statesAt  time.Time     // when states records were last written
	progress  progressWatch
	piles     map[pileKey]*episode
	sysctls   map[uint32]sysctlsRead
}

// Sysctls are the settings of one network namespace that bound a pile,
// read in that namespace (not the tracer's own).
type Sysctls struct {
	Somaxconn, TCPMaxSynBacklog, TCPSyncookies uint32
	TCPFinTimeout, TCPTwReuse                  uint32
	PortLo, PortHi                             uint32 // ip_local_port_range
}

type sysctlsRead struct {
	at  time.Time
	v   Sysctls
	err error
}

// sysctlsTTL: a namespace's settings are read at most this often.
const sysctlsTTL = time.Minute

// sysctlsOf returns netns's settings, read through the Source and kept
// for sysctlsTTL; false when they cannot be read (the namespace is gone).
func (r *Pipeline) sysctlsOf(netns uint32, now time.Time) (Sysctls, bool) {
	w := &r.walks
	if got, ok := w.sysctls[netns]; ok && now.Sub(got.at) < sysctlsTTL {
		return got.v, got.err == nil
	}
	if w.sysctls == nil || len(w.sysctls) > 4096 {
		w.sysctls = map[uint32]sysctlsRead{}
	}
	v, err := r.src.Sysctls(netns)
	w.sysctls[netns] = sysctlsRead{at: now, v: v, err: err}
	if err != nil {
		r.warn(err)
	}
	return v, err == nil
}

// WalkDue is the run loop's hook, called every poll: it takes a walk when
// one is due and hands it to everything that uses it; none when nothing
// does (--emit histograms alone).
func (r *Pipeline) WalkDue(now time.Time) error {
	if !r.src.HasWalker() || !r.walkUsed() {
		return nil
	}
	states := r.cfg.Interval > 0 && now.Sub(r.walks.statesAt) >= r.cfg.Interval
	if !states && (r.cfg.WalkInterval == 0 || now.Sub(r.walks.last) < r.walkEvery()) {
		return nil
	}
	return r.walkNow(now, states)
}

// walkUsed tells whether anything reads the periodic walk: states and
// stuck records (the half-open and pile watches, the holders), progress
// records, a sink of sockets, or an observer (the metrics' gauges).
func (r *Pipeline) walkUsed() bool {
	return r.cfg.Emit&(config.EmitStates|config.EmitStuck) != 0 || r.cfg.Progress > 0 ||
		r.socketSink != nil || len(r.observers) > 0
}

// walkDetail is which sockets a walk taken at now writes one by one
// (event.WalkDetail). Every one for the first walk (it seeds the
// connection table), for a sink that takes every socket (top), and for
// the walk whose progress records are due; else the listeners, the
// states the stuck watch follows (its holders, and WalkSaw's check of
// the sockets reported stuck) and SYN_SENT (the local port connect()
// picked), with request sockets grouped by listener and the half-open
// limit; the other sockets (idle connections, TIME_WAIT by destination)
// are counted in the kernel.
func (r *Pipeline) walkDetail(now time.Time) event.WalkDetail {
	pw := &r.walks.progress
	progressDue := r.cfg.Progress > 0 && !pw.last.IsZero() && now.Sub(pw.last) >= r.cfg.Progress
	var watched uint32 // the stuck watch's states: it sees what the kernel holds of them
	for st, limit := range r.cfg.Stuck {
		if limit > 0 {
			watched |= 1 << st
		}
	}
	if !r.seeded || r.socketSink != nil || progressDue {
		d := event.WalkAll
		d.Flush = watched
		if progressDue {
			// What the kernel holds of the connections that get one:
			// their start and state's start for the next ones (this
			// walk's records reach the table after it).
			d.Flush = event.WalkAll.States
		}
		return d
	}
	d := event.WalkDetail{HalfOpenPast: r.halfOpen.limit, Flush: watched}.With(event.Listen, event.SynSent)
	d.States |= watched
	for _, sn := range r.stuckNow {
		d = d.With(sn.state)
	}
	return d
}

// pastHalfOpen tells whether request socket s (or each of its group) has
// waited for its final ACK longer than the half-open limit.
func (r *Pipeline) pastHalfOpen(s *event.Socket) bool {
	limit := r.halfOpen.limit
	return limit > 0 && s.AgeSource == event.AgeSynAck && s.StateAge >= limit
}

// walkEvery is the time between periodic walks: --walk-interval, or
// longer when a walk costs more than walkBudget of it.
func (r *Pipeline) walkEvery() time.Duration {
	took := r.walks.took
	if meter, ok := r.src.(walkMeter); ok && took == 0 {
		// No periodic walk yet: the start's walk (a pass over the same
		// sockets, and seeding) sets the pace, so that a host with
		// 200,000 sockets is not walked again one interval after start.
		took = meter.WalkCPU()
	}
	return max(r.cfg.WalkInterval, time.Duration(float64(took)/walkBudget))
}

// walkBudget bounds the periodic walk's cost: the next walk waits at
// least the last one's time divided by it, so walking takes at most this
// share of one core. A walk's cost grows with the sockets on the host
// (docs/performance.md): up to a few thousand it runs every
// --walk-interval, on a host with 200,000 it is spaced out. The cost is
// the walk's CPU time where the Source counts it (walkMeter: the
// kernel's iterator and the read) plus the time its users here took,
// else the whole wall time, never less.
const walkBudget = 0.02

func (r *Pipeline) walkNow(now time.Time, writeStates bool) error {
	meter, metered := r.src.(walkMeter)
	var cpu0 time.Duration
	if metered {
		cpu0 = meter.WalkCPU()
	}
	t0 := time.Now()
	walk := r.timedWalk(now)
	walked := time.Now()
	var err error
	if writeStates {
		err = r.WriteSockets(walk, now, r.src.Now())
	} else {
		err = r.CountSockets(walk, now, r.src.Now())
	}
	if metered { // the kernel's part, then the reading of it here
		r.walks.took = meter.WalkCPU() - cpu0 + time.Since(walked)
	} else {
		r.walks.took = time.Since(t0)
	}
	return err
}

// walkMeter is a Source that counts the CPU time its walks take (the
// kernel's: the walking threads' own time, iterator included).
type walkMeter interface {
	WalkCPU() time.Duration
}

// timedWalk walks the kernel's sockets at now, counting the walk.
func (r *Pipeline) timedWalk(now time.Time) []byte {
	walk, err := r.src.Walk(r.walkDetail(now))
	r.Walks++
	if err != nil {
		r.warn(err)
	}
	return walk
}

// afterWalk hands one walk to everything besides the tally that uses it.
func (r *Pipeline) afterWalk(walk []byte, now time.Time, mono event.Mono) {
	w := &r.walks
	w.buf, w.mono, w.last = walk, mono, now
	if w.firstMono == 0 {
		w.firstMono = mono
	}
	r.checkHalfOpen(now, walk, mono)
	r.checkPiles(now, walk)
	r.writeProgress(now, walk, mono)
}

// recentWalk is the last periodic walk unless a newer one is overdue
// (the stuck watch names holders from it); else a fresh one.
func (r *Pipeline) recentWalk() []byte {
	w := &r.walks
	if w.buf != nil && r.cfg.WalkInterval > 0 && time.Since(w.last) <= r.walkEvery()+time.Second {
		return w.buf
	}
	return r.timedWalk(time.Now())
}

// episode is a pile that has been reported and not yet cleared.
type episode struct {
	since time.Time
	conn  timeline.Conn // the ends the records name
}

// pileKey names a pile: a listener's half-open handshakes (SYN_RECV; addr
// is the listener's port) or TIME_WAIT sockets toward one destination
// (addr).
type pileKey struct {
	state       event.State
	netns       uint32
	netnsCookie uint64
	addr        netip.AddrPort
}

func (r *Pipeline) startEpisode(k pileKey, now time.Time, c *timeline.Conn) {
	if r.walks.piles == nil {
		r.walks.piles = map[pileKey]*episode{}
	}
	r.walks.piles[k] = &episode{since: now, conn: *c}
}

// endEpisode writes the cleared record of a pile that is gone.
func (r *Pipeline) endEpisode(k pileKey, ep *episode, state event.State, now time.Time) {
	delete(r.walks.piles, k)
	if r.cfg.Emit&config.EmitStuck != 0 {
		r.sink.Cleared(&Cleared{TS: now, State: state, Conn: &ep.conn, Since: ep.since})
	}
}

// checkHalfOpen finds listeners whose half-open handshakes (request
// sockets, which no tracepoint reports) outlive the SYN_RECV limit: a
// SYN flood, or a lossy return path. The walk sees each request socket
// and when its first SYN-ACK left, so a pile is found whether or not a
// SYN-ACK is retransmitted while the tracer runs. One stuck record per
// listener per episode (a flood must not flood the output), and a
// cleared record when no handshake of it is past the limit any more.
func (r *Pipeline) checkHalfOpen(now time.Time, walk []byte, mono event.Mono) {
	limit := r.halfOpen.limit
	if limit == 0 || !r.keepState(event.SynRecv) {
		return
	}
	type pile struct {
		n      uint32
		oldest uint64
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
		case s.State == event.NewSynRecv && r.pastHalfOpen(s):
			p := piles[k]
			if p == nil {
				p = &pile{}
				piles[k] = p
			}
			p.n += s.Count
			p.oldest = max(p.oldest, s.StateAge)
		}
	}); err != nil {
		r.warn(err)
	}
	for k, ep := range r.walks.piles {
		if k.state == event.SynRecv && piles[listenerKey{k.netns, k.netnsCookie, k.addr.Port()}] == nil {
			r.endEpisode(k, ep, event.SynRecv, now)
		}
	}
	for k, p := range piles {
		pk := pileKey{event.SynRecv, k.netns, k.netnsCookie, netip.AddrPortFrom(netip.IPv4Unspecified(), k.port)}
		if r.walks.piles[pk] != nil {
			continue
		}
		l, found := listeners[k]
		if !found { // the listener is gone or filtered: name the port
			l = event.Socket{Netns: k.netns, Src: netip.AddrPortFrom(netip.IPv4Unspecified(), k.port), Family: event.IPv4}
		}
		c := timeline.Conn{Cookie: l.Cookie, Netns: l.Netns, Family: l.Family, Src: l.Src,
			Dst: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), PID: l.PID, Comm: l.Comm, OwnerKnown: l.OwnerKnown}
		if l.Family == event.IPv6 {
			c.Dst = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		r.startEpisode(pk, now, &c)
		st := &Stuck{TS: now, Conn: &c, State: event.SynRecv, Age: p.oldest, AtLeast: true,
			AgeSource: event.AgeSynAck, HalfOpen: p.n}
		if sc, ok := r.sysctlsOf(k.netns, now); ok {
			st.Limits = &record.Limits{Somaxconn: &sc.Somaxconn, TCPMaxSynBacklog: &sc.TCPMaxSynBacklog,
				TCPSyncookies: &sc.TCPSyncookies}
			if found {
				st.Limits.ListenBacklog = &l.AcceptQueueMax
			}
		}
		r.writeOneStuck(st)
	}
}

// Piles of TIME_WAIT toward one destination: a pile record once a
// destination holds at least half of its namespace's local port range
// (new connections to it are running out of ports), cleared below a
// quarter. A namespace's settings are read only for a destination with
// at least pileMin sockets.
const pileMin = 16

func (r *Pipeline) checkPiles(now time.Time, walk []byte) {
	if r.cfg.Emit&config.EmitStuck == 0 || !r.keepState(event.TimeWait) {
		return
	}
	type dest struct {
		n       uint64
		oldest  uint64
		src     event.AgeSource
		family  event.Family
		ifindex uint32
	}
	dests := map[pileKey]*dest{}
	if err := event.SplitSockets(walk, func(s *event.Socket) {
		if s.State != event.TimeWait {
			return
		}
		k := pileKey{event.TimeWait, s.Netns, s.NetnsCookie, s.Dst}
		d := dests[k]
		if d == nil {
			d = &dest{src: event.AgeFirstSeen, family: s.Family, ifindex: s.IfIndex}
			dests[k] = d
		}
		d.n += uint64(s.Count)
		if s.StateAge > d.oldest {
			d.oldest, d.src = s.StateAge, s.AgeSource
		}
	}); err != nil {
		r.warn(err)
	}
	for k, ep := range r.walks.piles {
		if k.state != event.TimeWait {
			continue
		}
		d := dests[k]
		if sc, ok := r.sysctlsOf(k.netns, now); d == nil || !ok || d.n*4 < portsIn(sc) {
			r.endEpisode(k, ep, event.TimeWait, now)
		}
	}
	for k, d := range dests {
		if d.n < pileMin || r.walks.piles[k] != nil {
			continue
		}
		sc, ok := r.sysctlsOf(k.netns, now)
		if !ok || d.n*2 < portsIn(sc) {
			continue
		}
		p := &Pile{TS: now, State: event.TimeWait, Netns: k.netns, Family: d.family, Dst: k.addr, IfIndex: d.ifindex, Count: d.n,
			Oldest: d.oldest, Source: d.src,
			Limits: &record.Limits{LocalPortRange: &[2]uint32{sc.PortLo, sc.PortHi}, TCPTwReuse: &sc.TCPTwReuse}}
		c := timeline.Conn{Netns: k.netns, Family: d.family, Src: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), Dst: k.addr}
		if d.family == event.IPv6 {
			c.Src = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		r.startEpisode(k, now, &c)
		r.sink.Pile(p)
	}
}

// portsIn is the size of the local port range.
func portsIn(sc Sysctls) uint64 {
	if sc.PortHi < sc.PortLo {
		return 0
	}
	return uint64(sc.PortHi-sc.PortLo) + 1
}

// progressWatch schedules progress records (--progress).
type progressWatch struct {
	last time.Time
	// skipped: how many intervals in a row the cap left each connection
	// out; the longest-skipped come first next time.
	skipped map[uint64]uint32
}

// writeProgress writes, once per --progress interval, a progress record
// for each open connection at least that old, at most --progress-max of
// them, the connections the cap skipped longest first; the rest are
// counted (ProgressSkipped).
func (r *Pipeline) writeProgress(now time.Time, walk []byte, mono event.Mono) {
	pw := &r.walks.progress
	if r.cfg.Progress == 0 {
		return
	}
	if pw.last.IsZero() {
		pw.last = now // the first interval starts with the first walk
		return
	}
	if now.Sub(pw.last) < r.cfg.Progress {
		return
	}
	pw.last = now
	type due struct {
		off     int
		skipped uint32
	}
	var dues []due
	off := 0
	_ = event.SplitSockets(walk, func(s *event.Socket) {
		if s.Cookie != 0 && s.State != event.Listen && r.keepState(s.State) {
			if p := r.progressOf(s, now, mono); p.Age >= uint64(r.cfg.Progress) {
				dues = append(dues, due{off, pw.skipped[s.Cookie]})
			}
		}
		off += event.SocketSize
	})
	slices.SortStableFunc(dues, func(a, b due) int { return cmp.Compare(b.skipped, a.skipped) })
	next := map[uint64]uint32{}
	var s event.Socket
	for i, d := range dues {
		if event.DecodeSocket(walk[d.off:d.off+event.SocketSize], &s) != nil {
			continue
		}
		if i >= r.cfg.ProgressMax {
			next[s.Cookie] = d.skipped + 1
			r.ProgressSkipped++
			continue
		}
		p := r.progressOf(&s, now, mono)
		r.ProgressCount++
		r.sink.Progress(&p)
	}
	pw.skipped = next
}

// progressOf is a socket's progress record: its ages from the connection
// table when the tracer saw them begin, else the kernel's lower bound,
// else since the first walk.
func (r *Pipeline) progressOf(s *event.Socket, now time.Time, mono event.Mono) Progress {
	p := Progress{TS: now, Sock: s}
	var start, since event.Mono
	src := event.AgeFirstSeen
	if r.tracker != nil {
		var ok bool
		if start, since, src, ok = r.tracker.Known(s.Cookie); !ok || since == 0 {
			src = event.AgeFirstSeen
		}
	}
	switch {
	case since != 0 && mono >= since:
		p.StateAge, p.Source = mono.Since(since), src
	case s.AgeSource > event.AgeFirstSeen:
		p.StateAge, p.Source = s.StateAge, s.AgeSource
	default:
		p.StateAge, p.Source = mono.Since(r.walks.firstMono), event.AgeFirstSeen
	}
	if start != 0 && mono >= start {
		p.Start, p.Age = start, mono.Since(start)
		return p
	}
	p.AtLeast = true
	if p.Source == event.AgeTraced { // the state's start was seen, not the birth
		p.Source = event.AgeFirstSeen
	}
	p.Age = max(p.StateAge, mono.Since(r.walks.firstMono))
	if p.Age > p.StateAge {
		p.Source = event.AgeFirstSeen
	}
	return p
}
