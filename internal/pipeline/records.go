package pipeline

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// What a run produces besides transitions and connections, and the Sink
// that receives it all: the encoders of internal/output, the replay's
// report collector, the live view.

// Histograms holds one dwell-time histogram per state, indexed by State.
type Histograms [event.NumStates]histogram.Histogram

// Untimed counts, per state (indexed by State), the stays that ended
// without a time, so that a reader of the histograms knows how much of
// each distribution is missing and why.
type Untimed [event.NumStates]event.UntimedStays

// Sum adds up every state's untimed stays.
func (u *Untimed) Sum() event.UntimedStays {
	var t event.UntimedStays
	for st := range u {
		for r, c := range u[st].ByReason {
			t.ByReason[r] += c
		}
		t.Evicted += u[st].Evicted
	}
	return t
}

// Lost reports transitions that never reached the tracer, since the
// previous report (the deltas) and since start (the totals).
type Lost struct {
	TS                             time.Time
	RingbufFull, Recursion, Decode uint64
	// Unread: records the kernel submitted that never reached the
	// reader, known at the end of a run (the kernel counts every submit).
	Unread uint64
	// Unsent: transitions the programs saw and held for a connection
	// record that was never sent (probe.Health.Unsent): exact.
	Unsent uint64
	// Gap: transitions seen missing from sockets' states beyond the
	// counted ones, for which the kernel counts nothing: at least this
	// many (probe.Health.Inferred).
	Gap                              uint64
	TotalRingbufFull, TotalRecursion uint64
	TotalDecode, TotalUnread         uint64
	TotalUnsent, TotalGap            uint64
	// RecursionHostWide: the run is filtered (config.Filtered), and the
	// recursion counts are the whole host's: they may concern sockets the
	// filters drop.
	RecursionHostWide bool
}

// HostWideNote is what the text lines add to the recursion figure: on a
// filtered run, that it is the host's.
func (l *Lost) HostWideNote() string {
	if !l.RecursionHostWide || l.Recursion == 0 {
		return ""
	}
	return " (the whole host's: may concern sockets outside the filters)"
}

// LostParts are the counts of the six causes of loss, in the order
// Breakdown names them.
type LostParts [6]uint64

// Parts are the causes of Count, since the previous report.
func (l *Lost) Parts() LostParts {
	return LostParts{l.RingbufFull, l.Recursion, l.Decode, l.Unread, l.Unsent, l.Gap}
}

// TotalParts are the causes of Total, since start.
func (l *Lost) TotalParts() LostParts {
	return LostParts{l.TotalRingbufFull, l.TotalRecursion, l.TotalDecode, l.TotalUnread, l.TotalUnsent, l.TotalGap}
}

// Count is the number lost since the previous report (at least, with Gap).
func (l *Lost) Count() uint64 { return l.Parts().Sum() }

// Total is the number lost since start.
func (l *Lost) Total() uint64 { return l.TotalParts().Sum() }

// Sum is the number lost.
func (p LostParts) Sum() (n uint64) {
	for _, x := range p {
		n += x
	}
	return n
}

// Breakdown names every cause with its count, so that the parts a person
// reads add up to the number lost: "ring buffer full 3, kernel recursion
// 2, bad records 0, submitted but never read 1, held in the kernel and
// never sent 0, at least 4 seen as gaps in sockets' states".
func (p LostParts) Breakdown() string {
	return fmt.Sprintf("ring buffer full %d, kernel recursion %d, bad records %d, submitted but never read %d, held in the kernel and never sent %d, at least %d seen as gaps in sockets' states", p[0], p[1], p[2], p[3], p[4], p[5])
}

// Stats is the closing account of a run.
type Stats struct {
	TS          time.Time
	Attach      string
	Events      uint64 // transitions received
	Aggregated  uint64 // transitions counted into kernel histograms (--emit histograms)
	Connections uint64 // connection records written
	Open        uint64 // of which still open at exit
	Evictions   uint64
	// Gaps: transitions into a state that were not seen (lost or
	// filtered), left as unseen spans; Reordered: records that arrived
	// after a later one of the same socket; StuckDropped: sockets taken
	// off the stuck watch because the table was full.
	Gaps, Reordered, StuckDropped uint64
	Stuck                         uint64 // stuck records written
	Rescued                       uint64 // recorded by the backup program
	StorageFail                   uint64
	Lost                          uint64
	// Untimed: stays that ended without a time, summed over the states
	// (the histogram records have them per state).
	Untimed event.UntimedStays
	// HostWide: the run is filtered, and LostHostWide of Lost are the
	// kernel's recursion skips, counted for the whole host's TCP
	// transitions: they may concern sockets outside the filters.
	HostWide     bool
	LostHostWide uint64
	// LostInferred: the part of Lost seen only as gaps in sockets'
	// states (Lost.Gap): Lost is then a lower bound.
	LostInferred uint64
	// Reclaimed: sockets whose kernel entry the full table (--max-conns)
	// reclaimed while they lived (probe.Health.Reclaimed): their
	// timelines miss what the entry held, in a number not known.
	Reclaimed uint64
	// With kernel.bpf_stats_enabled=1: the primary program's runs and
	// run time, and the run time of all attached programs.
	Runs             uint64
	PrimaryRunTimeNs uint64
	RunTimeNs        uint64
	// Walks of the kernel's sockets, and the CPU time (ns) of all the
	// socket walks (the walking threads', the kernel iterator included).
	Walks, WalkNs uint64
	// With --progress (ProgressOn): progress records written, and those
	// the per-interval cap skipped.
	ProgressOn                bool
	Progress, ProgressSkipped uint64
}

// Listener is one listening socket as a socket walk saw it: its accept
// queue (connections completed but not yet accept()ed), its half-open
// connections (request sockets for its port), and its SYN-ACK
// retransmits since tracing began.
type Listener struct {
	Netns          uint32
	NetnsCookie    uint64 // as event.Event's
	IfIndex        uint32 // as event.Event's
	Family         event.Family
	Addr           netip.AddrPort
	PID            uint32
	Comm           [16]byte
	OwnerKnown     bool
	AcceptQueue    uint32
	AcceptQueueMax uint32
	HalfOpen       uint32
	SynAckRetrans  uint32
	Inode          uint64 // the socket file's inode (not written out)
	// Drops: the kernel's drops on the listener since listen() (sk_drops,
	// `ss -m`'s d: SYNs and final ACKs dropped at a full queue);
	// SynCookies: connections it accepted through a SYN cookie since
	// tracing began; SynCookiesSent: it sent SYN cookies since the
	// previous walk (the kernel's stamp of its latest one moved);
	// SynCookiesKnown: there was a previous walk to compare with.
	Drops, SynCookies               uint32
	SynCookiesSent, SynCookiesKnown bool
}

// Stuck is a connection that has stayed in a watched state longer than
// its limit, or a listener whose half-open handshakes have.
type Stuck struct {
	TS      time.Time
	Conn    *timeline.Conn // the socket: addresses, owner as traced
	State   event.State
	Age     uint64 // ns in State (for half-open handshakes: the oldest)
	AtLeast bool   // a lower bound: the state began before tracing
	// AgeSource: where a lower bound comes from (the kernel field, or
	// the walk that first saw the socket).
	AgeSource event.AgeSource
	// Holders are the processes that hold the socket open when the
	// record is written, lowest PID first (HoldersKnown: a lookup was
	// made; none found means no process holds it: an orphan, or a
	// connection not yet accept()ed).
	Holders      []Holder
	HoldersKnown bool
	// HalfOpen > 0: Conn is a listener and this many of its half-open
	// handshakes (request sockets) are older than the limit.
	HalfOpen uint32
	// Identity is the cgroup, container and unit of the process Owner
	// names (with --cgroup-fields); nil when unknown.
	Identity *event.Identity
	// Limits: the namespace's settings that bound this pile; nil when
	// none bears on it or they could not be read.
	Limits *record.Limits
}

// Progress is an open connection's state now (--progress), from the
// periodic socket walk.
type Progress struct {
	TS   time.Time
	Sock *event.Socket // addresses, owner, state and the kernel's figures
	// Start: when the connection began (0: before tracing).
	Start event.Mono
	// Age since Start, else the lower bound of StateAge; StateAge in
	// the current state. AtLeast: both are lower bounds, from Source.
	Age, StateAge uint64
	AtLeast       bool
	Source        event.AgeSource
}

// Pile is many sockets in one state toward one destination (Dst; the
// source address unspecified): TIME_WAIT past a share of the local ports.
type Pile struct {
	TS     time.Time
	State  event.State
	Netns  uint32
	Family event.Family
	Dst    netip.AddrPort
	// IfIndex: the interface the first socket found is bound to (0: none).
	IfIndex uint32
	Count   uint64
	// Oldest: the oldest socket's age, a lower bound from Source.
	Oldest uint64
	Source event.AgeSource
	Limits *record.Limits
}

// Cleared ends a pile: a listener's half-open handshakes (a stuck record
// with HalfOpen) or a Pile, with the same state and ends (Conn), written
// at Since.
type Cleared struct {
	TS    time.Time
	State event.State
	Conn  *timeline.Conn
	Since time.Time
}

// Holder is a process holding a socket open.
type Holder struct {
	PID  uint32
	Comm [16]byte
}

// Owner returns who a stuck record names: the first holder when a lookup
// found one, else the socket's owner as traced; creator is the traced
// owner when it differs from that holder.
func (s *Stuck) Owner() (pid uint32, comm *[16]byte, known bool, creator *Holder) {
	c := s.Conn
	if !s.HoldersKnown || len(s.Holders) == 0 {
		return c.PID, &c.Comm, c.OwnerKnown, nil
	}
	h := &s.Holders[0]
	if c.OwnerKnown && c.PID != h.PID {
		creator = &Holder{PID: c.PID, Comm: c.Comm}
	}
	return h.PID, &h.Comm, true, creator
}

// Sink receives everything the tracer emits.
type Sink interface {
	Transition(e *event.Event)
	Connection(c *timeline.Conn)
	// Histograms writes the histograms of the states with a stay that
	// ended (timed or not), cumulative since since; u: the untimed ones.
	Histograms(ts, since time.Time, h *Histograms, u *Untimed)
	Lost(l *Lost)
	Stats(s *Stats)
	// States writes the live count of sockets per state (the netstat -nat
	// tally), indexed by State.
	States(ts time.Time, counts *[event.NumStates]uint64)
	// Stuck writes a connection stuck in a state, or a listener's
	// half-open handshakes.
	Stuck(s *Stuck)
	// Listener writes a listener's queues, after each States.
	Listener(ts time.Time, l *Listener)
	// Progress writes an open connection's state now (--progress).
	Progress(p *Progress)
	// Pile writes many sockets in one state toward one destination.
	Pile(p *Pile)
	// Cleared writes the end of a pile (half-open, or a Pile).
	Cleared(c *Cleared)
	// Flush writes out what is buffered; it returns the first error any
	// write met.
	Flush() error
	// Redirect flushes, then sends everything after to w: records are
	// whole, none split between the old and the new writer.
	Redirect(w io.Writer) error
}

// SpanSink is a Sink whose states records name the network namespaces
// the tally spans: Span is called before each States with those that
// hold a counted socket, in ascending order.
type SpanSink interface {
	Sink
	Span(namespaces []uint32)
}

// SocketSink is a Sink that also takes every socket of each walk (those
// of the states --state keeps), after States: what exists now, with its
// owner, for a live view.
type SocketSink interface {
	Sink
	Sockets(ts time.Time, socks []event.Socket)
}

// HostWideNote is what the closing lines add to the lost figure on a
// filtered run: how much of it is the host's, not the run's.
func (s *Stats) HostWideNote() string {
	if !s.HostWide || s.LostHostWide == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d of them the whole host's kernel recursion skips: may concern sockets outside the filters)", s.LostHostWide)
}
