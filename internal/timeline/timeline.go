// Package timeline assembles the transitions of each socket into one
// connection record: every state entered, in order, with when it was
// entered and how long it was held.
package timeline

import (
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// Span is one state a connection held.
type Span struct {
	State      event.State
	Enter      event.Mono // when entered; 0 = unknown
	Dwell      uint64     // ns held; valid with DwellKnown
	DwellKnown bool
	// Unseen: the transition into this state was not seen (lost or
	// filtered); the state is known only as the old state of the next one.
	Unseen bool
	// Inferred: no tracepoint reports this state or its start; it is
	// deduced: the TIME_WAIT of an active closer's timewait socket, or
	// the SYN_RECV of an accepted socket, which starts when the first
	// SYN-ACK left (the kernel's handshake time), before the full socket
	// existed.
	Inferred bool
	// AgeSource: the state began before tracing and Enter is the
	// kernel's lower bound of its start, from this field (Dwell, too,
	// is then a lower bound).
	AgeSource event.AgeSource
}

// Ending is why and how a connection ended, and what the kernel counted.
type Ending struct {
	Retrans    uint16 // retransmits (on a listener: SYN-ACK retransmits)
	SynRetrans uint8  // SYN retransmits while connecting
	Reset      uint8  // event.ResetSent | event.ResetReceived
	Err        uint16 // errno that ended it, 0 if none
	TW         event.TW
	// Read from the socket at CLOSE (CloseKnown).
	CloseKnown    bool
	BytesAcked    uint64
	BytesReceived uint64
	SRTTMicros    uint32
	TotalRetrans  uint32
	// The server's view of the handshake (accepted sockets), read at
	// SYN_RECV->ESTABLISHED: first SYN-ACK sent to final ACK, and the
	// number of SYN-ACK retransmits.
	HandshakeKnown  bool
	HandshakeMicros uint32
	SynAckRetrans   uint32
	// SynCookie: the handshake was completed by a SYN cookie (its time
	// is unknown).
	SynCookie bool
}

// Conn is one socket's timeline.
type Conn struct {
	Cookie     uint64
	Netns      uint32
	Family     event.Family
	Src, Dst   netip.AddrPort
	PID        uint32
	Comm       [16]byte
	OwnerKnown bool
	// Identity is the owner's cgroup, container and unit: set by the
	// tracer as the connection is written (with --cgroup-fields), nil
	// when unknown. Shared with the tracer's cache: never modified.
	Identity *event.Identity
	// Start is when the first state was entered (0 when unknown: the
	// socket existed before tracing began). End is when CLOSE was entered,
	// or for an open connection the time it was flushed.
	Start, End event.Mono
	// Partial: the beginning was not seen, or a transition is missing.
	// Set when the connection is emitted.
	Partial bool
	// Open: the connection had not reached CLOSE when it was emitted;
	// the last span's Dwell is the time held so far.
	Open bool
	// Evicted: emitted early because the table was full.
	Evicted bool
	States  []Span
	Ending  Ending

	// NetnsCookie, IfIndex: as event.Event's.
	NetnsCookie uint64
	IfIndex     uint32

	// stub: the timeline was evicted; only the stuck watch is kept.
	stub bool
	// held: reached CLOSE, held for CloseHold (in Tracker.closing).
	held bool

	startUnknown bool // born before tracing began
	unseen       int  // spans with Unseen set

	prev, next *Conn // LRU list, most recently active first

	// Stuck detection: the list of connections in one state, oldest
	// first, that this one is on (0: none).
	stuckState event.State
	since      event.Mono // when it entered that state, or was first seen in it
	// sinceSource: AgeTraced when since is when it entered; else since
	// is a lower bound: the kernel's figure, or when first seen.
	sinceSource  event.AgeSource
	sprev, snext *Conn
}

// ClosedFrom returns the state a closed connection left for CLOSE (the
// inferred TIME_WAIT of an active closer is not one it was in as a full
// socket), or Close when there is none.
func (c *Conn) ClosedFrom() event.State {
	for i := len(c.States) - 2; i >= 0; i-- {
		if !(c.States[i].Inferred && c.States[i].State == event.TimeWait) {
			return c.States[i].State
		}
	}
	return event.Close
}

// Stay is what span i adds to its state's dwell histogram, and whether it
// adds anything: event.Event.Stay, the one rule, applied to the span read
// as the transition that left it (to the next state seen, or CLOSE). An
// accepted socket's SYN_RECV followed by ESTABLISHED is its handshake, as
// the kernel flags it; a span not left yet (the last of an open
// connection) or left by no transition (an inferred TIME_WAIT) adds
// nothing.
func (c *Conn) Stay(i int) (time.Duration, bool) {
	e, ok := c.left(i)
	if !ok {
		return 0, false
	}
	return e.Stay()
}

// Untimed is Stay's other half: whether span i is a stay that ended
// without a time, and why (event.Event.Untimed, the one rule). A span
// entered by a transition that was not seen (Unseen) is a gap: its start
// is not known, so a dwell measured from an earlier transition would
// span two states, and it is never timed.
func (c *Conn) Untimed(i int) (event.UntimedReason, bool) {
	e, ok := c.left(i)
	if !ok {
		return 0, false
	}
	return c.untimed(i, &e)
}

// untimed is Untimed for span i read as e (left).
func (c *Conn) untimed(i int, e *event.Event) (event.UntimedReason, bool) {
	if c.States[i].Unseen && e.Old != event.Close && e.Old != e.New {
		return event.UntimedGap, true
	}
	return e.Untimed()
}

// left reads span i as the transition that left it; false: no transition
// left it (the last span of an open connection, an inferred TIME_WAIT).
func (c *Conn) left(i int) (event.Event, bool) {
	sp := &c.States[i]
	e := event.Event{Old: sp.State, New: event.Close, Dwell: time.Duration(sp.Dwell)}
	switch next := c.nextSeen(i); {
	case next >= 0:
		e.New = c.States[next].State
	case c.Open:
		return e, false
	}
	if sp.DwellKnown && !sp.Unseen {
		e.Flags |= event.DwellKnown
	}
	switch {
	case sp.State == event.SynRecv && e.New == event.Established:
		e.Flags |= event.Handshake
		if c.Ending.HandshakeKnown {
			e.HandshakeMicros = c.Ending.HandshakeMicros
		}
		e.SynCookie = c.Ending.SynCookie
	case sp.Inferred:
		return e, false
	}
	return e, true
}

// nextSeen is the index of the first span after i that a transition
// entered (not inferred), or -1.
func (c *Conn) nextSeen(i int) int {
	for j := i + 1; j < len(c.States); j++ {
		if !c.States[j].Inferred {
			return j
		}
	}
	return -1
}

// Stays calls timed with each stay the connection's spans add to the
// dwell histograms (Stay), and untimed with each that ended without a
// time (Untimed), in order.
func (c *Conn) Stays(timed func(st event.State, d time.Duration), untimed func(st event.State, why event.UntimedReason)) {
	for i := range c.States {
		e, ok := c.left(i) // once per span, for both rules
		if !ok {
			continue
		}
		if d, ok := e.Stay(); ok {
			timed(c.States[i].State, d)
		} else if why, ok := c.untimed(i, &e); ok {
			untimed(c.States[i].State, why)
		}
	}
}

// Last returns the current (last) span.
func (c *Conn) Last() *Span { return &c.States[len(c.States)-1] }

// Stats counts what the tracker did besides assembling timelines.
type Stats struct {
	Evictions uint64 // connections emitted early because the table was full
	Gaps      uint64 // transitions whose old state was not the known current one
	Reordered uint64 // transitions older than the connection's latest one
	// StuckDropped counts sockets taken off the stuck watch because even
	// the evicted sockets' watch entries were at their limit.
	StuckDropped uint64
}

// CloseHold is how long a connection that reached CLOSE is held before it
// is emitted (kernel ns): an abortive close sends its reset right after
// the CLOSE transition (see ResetAfterClose), within the same system call.
const CloseHold event.Mono = 20_000_000

// Tracker holds the connections that have not reached CLOSE. It reuses
// Conn values, so a Conn passed to the emit function is valid only until
// that function returns.
type Tracker struct {
	// conns: every connection by cookie, open or held after its CLOSE:
	// one map, so that a connection is inserted and deleted once.
	conns    map[uint64]*Conn
	open     int // of conns, those not held
	capacity int
	head     Conn // sentinel of the LRU ring
	free     []*Conn
	emit     func(*Conn)
	stats    Stats

	stuckAfter [event.NumStates]uint64 // ns; 0: not watched
	stuck      [event.NumStates]Conn   // sentinels of the per-state lists
	emitStuck  func(c *Conn, s event.State, age uint64, src event.AgeSource)
	// stubs: evicted connections still on a stuck list, by cookie; at
	// most capacity of them.
	stubs map[uint64]*Conn

	// closing: connections that reached CLOSE, oldest first, held for
	// CloseHold; releaseAt: when the first of them is due.
	closing   []*Conn
	releaseAt event.Mono
}

// New returns a Tracker that holds at most capacity open connections and
// passes every finished (or evicted) connection to emit.
func New(capacity int, emit func(*Conn)) *Tracker {
	t := &Tracker{conns: make(map[uint64]*Conn), capacity: max(capacity, 1), emit: emit,
		stubs: make(map[uint64]*Conn)}
	t.head.prev, t.head.next = &t.head, &t.head
	for i := range t.stuck {
		t.stuck[i].sprev, t.stuck[i].snext = &t.stuck[i], &t.stuck[i]
	}
	return t
}

// WatchStuck reports, once per connection and stay, every connection that
// stays in a state longer than after[state] (ns; 0: not watched): see
// CheckStuck.
func (t *Tracker) WatchStuck(after [event.NumStates]uint64, emit func(c *Conn, s event.State, age uint64, src event.AgeSource)) {
	t.stuckAfter, t.emitStuck = after, emit
}

// CheckStuck emits the connections that have been in a watched state for
// longer than its limit at now (kernel monotonic ns). age is how long;
// src other than AgeTraced means the connection was already in the state
// when first seen, so age is a lower bound: from the kernel field src
// names, or (AgeFirstSeen) from when it was first seen.
func (t *Tracker) CheckStuck(now event.Mono) {
	for st := range t.stuck {
		limit := t.stuckAfter[st]
		if limit == 0 {
			continue
		}
		head := &t.stuck[st]
		for c := head.snext; c != head && now >= c.since && now.Since(c.since) >= limit; c = head.snext {
			unlinkStuck(c)
			t.emitStuck(c, event.State(st), now.Since(c.since), c.sinceSource)
			if c.stub {
				t.dropStub(c)
			}
		}
	}
}

// entered puts c on the list of the state it just entered (at since).
func (t *Tracker) entered(c *Conn, s event.State, since event.Mono, src event.AgeSource) {
	unlinkStuck(c)
	if t.stuckAfter[s] == 0 || since == 0 {
		return
	}
	head := &t.stuck[s]
	c.stuckState, c.since, c.sinceSource = s, since, src
	// Keep the list oldest first; arrivals are nearly in time order, so
	// this walks back a step or none.
	at := head.sprev
	for at != head && at.since > since {
		at = at.sprev
	}
	c.sprev, c.snext = at, at.snext
	at.snext.sprev, at.snext = c, c
}

func unlinkStuck(c *Conn) {
	if c.stuckState == 0 {
		return
	}
	c.sprev.snext, c.snext.sprev = c.snext, c.sprev
	c.sprev, c.snext, c.stuckState = nil, nil, 0
}

// Seed adds a socket that existed before tracing began, in its current
// state since the kernel's lower bound of its age there (s.StateAge from
// s.AgeSource: the span's Enter, marked with its source), or since seen,
// when it was found, if the kernel holds nothing. Its birth stays
// unknown. Sockets already held, and sockets without a cookie (request
// and timewait sockets), are left alone.
func (t *Tracker) Seed(s *event.Socket, seen event.Mono) {
	if s.Cookie == 0 || t.conns[s.Cookie] != nil {
		return
	}
	e := event.Event{Mono: seen, Cookie: s.Cookie, Src: s.Src, Dst: s.Dst, Netns: s.Netns,
		NetnsCookie: s.NetnsCookie, IfIndex: s.IfIndex,
		PID: s.PID, Comm: s.Comm, Family: s.Family, Old: s.State, New: s.State}
	if s.OwnerKnown {
		e.Flags |= event.OwnerKnown
	}
	c := t.insert(&e) // a partial connection whose only span is s.State
	c.Netns, c.Family, c.Src, c.Dst = s.Netns, s.Family, s.Src, s.Dst
	c.NetnsCookie, c.IfIndex = s.NetnsCookie, s.IfIndex
	if s.OwnerKnown {
		c.PID, c.Comm, c.OwnerKnown = s.PID, s.Comm, true
	}
	since, src := seen, event.AgeFirstSeen
	if s.AgeSource > event.AgeFirstSeen && s.StateAge > 0 && uint64(seen) > s.StateAge {
		since, src = seen-event.Mono(s.StateAge), s.AgeSource
		c.Last().Enter, c.Last().AgeSource = since, src
	}
	t.entered(c, s.State, since, src)
}

// LearnLocal gives the connection cookie its local end when the tracer
// only saw it without a port (a connect() picks its port after
// CLOSE->SYN_SENT, and nothing may fire until the handshake ends): the
// port a socket walk found. A known port is kept.
func (t *Tracker) LearnLocal(cookie uint64, src netip.AddrPort) {
	if src.Port() == 0 {
		return
	}
	for _, c := range []*Conn{t.conns[cookie], t.stubs[cookie]} { // held closes are in conns too
		if c != nil && c.Src.Port() == 0 {
			c.Src = src
		}
	}
}

// NoLocalPort reports whether a connection held has no local port yet
// (see LearnLocal).
func (t *Tracker) NoLocalPort() bool {
	for c := t.head.next; c != &t.head; c = c.next {
		if c.Src.Port() == 0 && c.Dst.Port() != 0 {
			return true
		}
	}
	return false
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats { return t.stats }

// Observe applies one transition.
func (t *Tracker) Observe(e *event.Event) {
	if e.Cookie == 0 {
		// The kernel had no entry for the socket (counted there in
		// storage_fail): its records cannot be told apart, so they make
		// no timeline rather than one that merges several sockets.
		return
	}
	if len(t.stubs) > 0 {
		if stub := t.stubs[e.Cookie]; stub != nil {
			t.dropStub(stub) // the socket is back in the table from here on
		}
	}
	c := t.conns[e.Cookie]
	if c != nil && c.held {
		if !e.Has(event.Birth) && e.Mono < c.End {
			// A record that arrived after its connection's CLOSE
			// (reordered on the way): it belongs to that timeline.
			t.insertOutOfOrder(c, e)
			return
		}
		// The same socket again after its CLOSE (a new connect(), a
		// birth): the held timeline is complete.
		t.releaseClosed(c)
		c = nil
	}
	if c != nil && e.Has(event.Birth) {
		// The socket was reborn (reconnected after CLOSE without our
		// seeing the CLOSE): close the books on the old timeline.
		t.finishOpen(c, e.Mono)
		c = nil
	}
	if c == nil {
		c = t.insert(e)
	} else {
		t.touch(c)
	}
	t.apply(c, e)
	if e.New == event.Close && c.Last().State == event.Close {
		c.End = e.Mono
		t.holdClosed(c)
	}
	if len(t.closing) > 0 && e.Mono >= t.releaseAt {
		// The records read so far reach CloseHold past the oldest
		// held CLOSE: whatever the kernel sent right after it has been
		// read (the ring is in the order records were made). Written
		// now, a connection is still in the CPU's caches; at the next
		// poll it would be written from memory.
		t.ReleaseClosed(e.Mono)
	}
}

// holdClosed takes c out of the table of open connections and holds it
// for CloseHold: see ResetAfterClose.
func (t *Tracker) holdClosed(c *Conn) {
	unlinkStuck(c)
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
	c.held = true
	t.open--
	if len(t.closing) == 0 {
		t.releaseAt = c.End + CloseHold
	}
	t.closing = append(t.closing, c)
}

// ResetAfterClose adds a reset the kernel sent right after the socket's
// transition into CLOSE (an abortive close: SO_LINGER 0, or close() with
// unread data) to its connection, if that is still held.
func (t *Tracker) ResetAfterClose(cookie uint64, reset uint8) {
	if c := t.conns[cookie]; c != nil && c.held {
		c.Ending.Reset |= reset
	}
}

// ReleaseClosed emits the connections that reached CLOSE at least
// CloseHold before now (kernel monotonic ns). Observe does it too, with
// the time of the record it was given.
func (t *Tracker) ReleaseClosed(now event.Mono) {
	i := 0
	for ; i < len(t.closing); i++ {
		c := t.closing[i]
		if c == nil {
			continue
		}
		if now < c.End+CloseHold {
			break
		}
		delete(t.conns, c.Cookie)
		t.emitAndRecycle(c)
	}
	n := copy(t.closing, t.closing[i:])
	clear(t.closing[n:])
	t.closing = t.closing[:n]
	if n > 0 && t.closing[0] != nil {
		t.releaseAt = t.closing[0].End + CloseHold
	} else {
		t.releaseAt = 0 // the first is gone (releaseClosed): look at once
	}
}

// releaseClosed emits one held connection ahead of its time.
func (t *Tracker) releaseClosed(c *Conn) {
	for i, h := range t.closing {
		if h == c {
			t.closing[i] = nil
			break
		}
	}
	delete(t.conns, c.Cookie)
	t.emitAndRecycle(c)
}

func (t *Tracker) insert(e *event.Event) *Conn {
	if t.open >= t.capacity {
		t.stats.Evictions++
		t.evict(t.head.prev, e.Mono)
	}
	c := t.newConn()
	c.Cookie = e.Cookie
	if e.Has(event.Birth) {
		c.Start = e.Mono
	} else {
		// Born before we looked: the old state's start is known only if
		// the kernel knew its dwell.
		c.startUnknown = true
		s := Span{State: e.Old, Unseen: e.Has(event.Gap)}
		if e.Has(event.DwellKnown) && !e.Has(event.Gap) {
			s.Enter = e.Mono - event.Mono(e.Dwell)
			c.Start = s.Enter
		}
		if s.Unseen {
			c.unseen++
		}
		c.States = append(c.States, s)
	}
	t.conns[e.Cookie] = c
	t.open++
	c.next, c.prev = t.head.next, &t.head
	c.next.prev, t.head.next = c, c
	return c
}

// apply records e on c: the old state's dwell, then the new state.
func (t *Tracker) apply(c *Conn, e *event.Event) {
	c.Netns, c.Family, c.Dst = e.Netns, e.Family, e.Dst
	if e.Kind == event.KindTransition {
		c.NetnsCookie, c.IfIndex = e.NetnsCookie, e.IfIndex
	}
	// The local port reads 0 before connect() picks one and after a
	// closing socket releases it: keep the one we know.
	if e.Src.Port() != 0 || !c.Src.IsValid() {
		c.Src = e.Src
	}
	if e.Has(event.OwnerKnown) {
		c.PID, c.Comm, c.OwnerKnown = e.PID, e.Comm, true
	}
	end := &c.Ending
	end.Retrans, end.SynRetrans, end.Reset = e.Retrans, e.SynRetrans, e.Reset
	if e.Old == event.SynRecv && e.New == event.Established {
		end.HandshakeKnown = e.HandshakeMicros != 0
		end.HandshakeMicros, end.SynAckRetrans = e.HandshakeMicros, e.TotalRetrans
		end.SynCookie = e.SynCookie
	}
	if e.Has(event.CloseInfo) {
		end.CloseKnown = true
		end.Err, end.TW = e.Err, e.TW
		end.BytesAcked, end.BytesReceived = e.BytesAcked, e.BytesReceived
		end.SRTTMicros, end.TotalRetrans = e.SRTTMicros, e.TotalRetrans
	}

	n := len(c.States)
	if n > 0 && e.Mono < c.States[n-1].Enter {
		t.insertOutOfOrder(c, e)
		return
	}
	if n > 0 && c.States[n-1].State != e.Old {
		// A transition into e.Old was not seen (lost, or filtered).
		t.stats.Gaps++
		c.unseen++
		s := Span{State: e.Old, Unseen: true}
		if e.Has(event.DwellKnown) && !e.Has(event.Gap) {
			s.Enter = e.Mono - event.Mono(e.Dwell)
		}
		c.States = append(c.States, s)
	}
	// With Gap the kernel's dwell runs from the last transition it saw,
	// across unseen states: no span's stay.
	if n := len(c.States); n > 0 && e.Has(event.DwellKnown) && !e.Has(event.Gap) {
		c.States[n-1].Dwell, c.States[n-1].DwellKnown = uint64(e.Dwell), true
	}
	if e.Has(event.Handshake) && e.HandshakeMicros != 0 {
		t.handshakeSpan(c, e)
	}
	if e.Old == e.New && len(c.States) > 0 {
		// A repeated set (FIN_WAIT1 -> FIN_WAIT1): still the same stay;
		// the kernel keeps counting its dwell from the first entry.
		return
	}
	if e.New == event.Close && e.TW == event.TWTimeWait {
		// The full socket closes as its timewait socket enters TIME_WAIT.
		c.States = append(c.States, Span{State: event.TimeWait, Enter: e.Mono, Inferred: true})
	}
	c.States = append(c.States, Span{State: e.New, Enter: e.Mono})
	t.entered(c, e.New, e.Mono, event.AgeTraced)
}

// handshakeSpan makes an accepted socket's SYN_RECV stay the server-side
// handshake, as the SYN_RECV histogram and handshake_ns have it: it starts
// when the first SYN-ACK left, before the full socket existed, and the
// connection with it. Marked inferred: no tracepoint reports that start.
func (t *Tracker) handshakeSpan(c *Conn, e *event.Event) {
	hs := uint64(e.HandshakeMicros) * 1000
	sp := c.Last()
	if sp.State != event.SynRecv || hs > uint64(e.Mono) {
		return
	}
	sp.Enter, sp.Dwell, sp.DwellKnown, sp.Inferred = e.Mono-event.Mono(hs), hs, true, true
	if len(c.States) == 1 && !c.startUnknown {
		c.Start = sp.Enter
	}
}

// insertOutOfOrder places a transition that arrived after a later one of
// the same socket where its timestamp puts it. The kernel serialises a
// socket's transitions, so this means records were reordered on the way.
func (t *Tracker) insertOutOfOrder(c *Conn, e *event.Event) {
	t.stats.Reordered++
	i := len(c.States) - 1
	for i > 0 && c.States[i-1].Enter > e.Mono {
		i--
	}
	// c.States[i] is the first span entered after e. If the state e
	// entered is already there as an unseen gap, e fills it in.
	if i > 0 && c.States[i-1].Unseen && c.States[i-1].State == e.New {
		i--
		c.States[i].Unseen = false
		c.States[i].Enter = e.Mono
		c.unseen--
	} else {
		c.States = append(c.States, Span{})
		copy(c.States[i+1:], c.States[i:])
		c.States[i] = Span{State: e.New, Enter: e.Mono, Dwell: c.States[i+1].Enter.Since(e.Mono), DwellKnown: true}
	}
	if i > 0 && e.Has(event.DwellKnown) {
		c.States[i-1].Dwell, c.States[i-1].DwellKnown = uint64(e.Dwell), true
	}
	if i == 0 || c.States[i-1].State != e.Old {
		// Still nothing known of how the socket got into e.Old.
		c.startUnknown = c.startUnknown || i == 0
		if i > 0 {
			c.unseen++
			t.stats.Gaps++
		}
	}
}

func (t *Tracker) touch(c *Conn) {
	if t.head.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.next, c.prev = t.head.next, &t.head
	c.next.prev, t.head.next = c, c
}

// finishOpen emits c, which has not reached CLOSE, and recycles it: now
// is its end and bounds the last dwell.
func (t *Tracker) finishOpen(c *Conn, now event.Mono) {
	c.Open = true
	c.End = now
	if last := c.Last(); last.Enter != 0 && now >= last.Enter {
		last.Dwell, last.DwellKnown = now.Since(last.Enter), true
	}
	unlinkStuck(c)
	delete(t.conns, c.Cookie)
	t.open--
	c.prev.next, c.next.prev = c.next, c.prev
	t.emitAndRecycle(c)
}

// evict emits c early to make room. If c is on a stuck watch it has not
// yet been reported for, a stub of it stays on that watch (a leak is
// exactly the least recently active connection, and makes no transition
// that would put it back); the stubs are bounded like the table.
func (t *Tracker) evict(c *Conn, now event.Mono) {
	c.Evicted = true
	if c.stuckState == 0 || len(t.stubs) >= t.capacity {
		if c.stuckState != 0 {
			t.stats.StuckDropped++
		}
		t.finishOpen(c, now)
		return
	}
	state, since, src := c.stuckState, c.since, c.sinceSource
	stub := t.newConn()
	stub.Cookie, stub.Netns, stub.Family, stub.Src, stub.Dst = c.Cookie, c.Netns, c.Family, c.Src, c.Dst
	stub.NetnsCookie, stub.IfIndex = c.NetnsCookie, c.IfIndex
	stub.PID, stub.Comm, stub.OwnerKnown = c.PID, c.Comm, c.OwnerKnown
	stub.stub = true
	t.finishOpen(c, now)
	t.stubs[stub.Cookie] = stub
	t.entered(stub, state, since, src)
}

func (t *Tracker) dropStub(c *Conn) {
	unlinkStuck(c)
	delete(t.stubs, c.Cookie)
	*c = Conn{States: c.States[:0]}
	t.free = append(t.free, c)
}

func (t *Tracker) newConn() *Conn {
	if n := len(t.free); n > 0 {
		c := t.free[n-1]
		t.free = t.free[:n-1]
		return c
	}
	return &Conn{States: make([]Span, 0, 8)}
}

// emitAndRecycle emits c, out of every list, and recycles it.
func (t *Tracker) emitAndRecycle(c *Conn) {
	c.Partial = c.startUnknown || c.unseen > 0
	t.emit(c)
	*c = Conn{States: c.States[:0]}
	t.free = append(t.free, c)
}

// Flush emits every connection held: those that reached CLOSE, then those
// still open, least recently active first, with now (kernel monotonic ns)
// as the time they were seen last.
func (t *Tracker) Flush(now event.Mono) {
	for _, c := range t.closing {
		if c != nil {
			delete(t.conns, c.Cookie)
			t.emitAndRecycle(c)
		}
	}
	t.closing = t.closing[:0]
	for t.head.prev != &t.head {
		t.finishOpen(t.head.prev, now)
	}
}

// Known returns what the table holds of an open connection: its start
// (0: before tracing), when its current state began (0: unknown) and
// where that figure comes from (AgeTraced: the transition was seen).
func (t *Tracker) Known(cookie uint64) (start, stateSince event.Mono, src event.AgeSource, ok bool) {
	c := t.conns[cookie]
	if c == nil || len(c.States) == 0 {
		return 0, 0, 0, false
	}
	last := c.Last()
	return c.Start, last.Enter, last.AgeSource, true
}
