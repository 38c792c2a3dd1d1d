package event

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Flags say which fields of an Event are known and where they came from.
// The bits are those of EV_* in bpf/tcptrace.h.
type Flags uint8

const (
	DwellKnown Flags = 0x01 // Dwell is the time spent in Old
	OwnerKnown Flags = 0x02 // PID and Comm are the socket's owner
	Birth      Flags = 0x04 // first transition of a socket born while tracing
	Inherited  Flags = 0x08 // owner came from the listener (accepted child)
	// Gap: the transition into Old was not seen (lost): Dwell runs from
	// the last transition seen, across the unseen state(s), so it is no
	// stay of Old's.
	Gap         Flags = 0x10
	CookieSynth Flags = 0x20 // tracepoint fallback: cookie assigned by the tracer
	CloseInfo   Flags = 0x40 // the close fields (bytes, SRTT, Err, TW) are filled
	// Handshake: SYN_RECV->ESTABLISHED of an accepted socket, whose
	// SYN_RECV stay is the server-side handshake (HandshakeMicros; 0 =
	// unknown), not the full socket's dwell.
	Handshake    Flags = 0x80
	knownFlagSet       = DwellKnown | OwnerKnown | Birth | Inherited | Gap | CookieSynth | CloseInfo | Handshake
)

// Kind says what a record reports (struct event.kind).
type Kind uint8

const (
	// KindTransition is a state transition.
	KindTransition Kind = 0
	// KindResetAfterClose: the socket sent a reset right after its
	// transition into CLOSE (an abortive close); only Mono, Cookie,
	// Netns, Family and Reset are filled.
	KindResetAfterClose Kind = 1
	// KindConn: a connection's transitions, held in the kernel and sent
	// together (DecodeConn).
	KindConn Kind = 2
)

// Reset bits (Event.Reset).
const (
	ResetSent     = 0x01
	ResetReceived = 0x02
)

// TW says what the kernel left behind when the socket reached CLOSE.
type TW uint8

const (
	TWNone     TW = 0 // nothing: the connection is gone
	TWTimeWait TW = 1 // a timewait socket in TIME_WAIT (inferred)
	TWFinWait2 TW = 2 // a timewait socket in its FIN_WAIT2 substate (inferred)
)

// Family is the address family as reported: v4-mapped IPv6 counts as IPv4.
type Family uint8

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "inet" or "inet6".
func (f Family) String() string {
	if f == IPv6 {
		return "inet6"
	}
	return "inet"
}

// Event is one TCP state transition as the kernel reported it.
type Event struct {
	Mono   Mono          // when the kernel made the transition
	Cookie uint64        // socket cookie
	Dwell  time.Duration // time spent in Old; valid with DwellKnown
	Src    netip.AddrPort
	Dst    netip.AddrPort
	Netns  uint32
	PID    uint32 // owner tgid; valid with OwnerKnown
	Family Family
	Old    State
	New    State
	Flags  Flags
	Kind   Kind
	Comm   [16]byte // owner command, NUL-padded; valid with OwnerKnown

	// Why and how it ended: Retrans, SynRetrans and Reset accumulate over
	// the socket's life; the rest is read at ->CLOSE (CloseInfo), SRTT and
	// TotalRetrans also at SYN_RECV->ESTABLISHED.
	Retrans       uint16 // retransmits seen (on a listener: SYN-ACK retransmits)
	SynRetrans    uint8  // SYN retransmits seen in SYN_SENT
	Reset         uint8  // ResetSent | ResetReceived
	Err           uint16 // sk_err at ->CLOSE (errno)
	TW            TW
	BytesAcked    uint64
	BytesReceived uint64
	SRTTMicros    uint32
	TotalRetrans  uint32
	// HandshakeMicros, at an accepted socket's SYN_RECV->ESTABLISHED: the
	// server-side handshake, first SYN-ACK sent to final ACK; 0: unknown.
	HandshakeMicros uint32
	// SynCookie, at that transition: the handshake was completed by a
	// SYN cookie, and its time is unknown (HandshakeMicros 0).
	SynCookie bool

	// NetnsCookie is the namespace's identity for the host's uptime (the
	// kernel's net_cookie; 0: unknown), where Netns, its inode, is reused:
	// what groups by namespace.
	NetnsCookie uint64
	// IfIndex is the interface the socket is bound to, in its namespace
	// (the scope of an IPv6 link-local address; 0: none).
	IfIndex uint32
}

// UntimedReason says why a stay that ended has no time. The values are
// bpf/tcptrace.h's enum untimed_reason (pinned by internal/probe's
// layout test).
type UntimedReason uint8

const (
	// UntimedNoStart: the socket's entry was missing when it left the
	// state (older than the tracer, or evicted from a full table), or an
	// accepted socket's first SYN-ACK time is unknown.
	UntimedNoStart UntimedReason = 0
	// UntimedGap: the stay's start or end was not seen (a transition the
	// kernel skipped, or one filtered out): its time would span two
	// states.
	UntimedGap UntimedReason = 1
	// UntimedSynCookie: a handshake completed by a SYN cookie.
	UntimedSynCookie UntimedReason = 2
	// NumUntimedReasons is the number of reasons.
	NumUntimedReasons = 3
)

var untimedNames = [NumUntimedReasons]string{"no_start", "gap", "syncookie"}

// String returns the reason's name as the records and metrics write it.
func (r UntimedReason) String() string {
	if int(r) < len(untimedNames) {
		return untimedNames[r]
	}
	return "unknown"
}

// Stay is what a transition adds to the histogram of the state it leaves,
// and whether it ends a stay at all. This is the one rule (the kernel's
// aggregate mode applies the same, pinned by a privileged test):
//   - an accepted socket's SYN_RECV stay is the server-side handshake
//     (Handshake flag; the full socket exists only for its last
//     microseconds), unknown when HandshakeMicros is 0;
//   - CLOSE is where sockets start and end, not a state they dwell in;
//   - a repeated set (FIN_WAIT1 -> FIN_WAIT1) ends no stay;
//   - an accepted socket's birth (LISTEN -> SYN_RECV) ends no stay: the
//     child never was in LISTEN;
//   - a stay whose start was not seen (Gap) is not counted: its dwell
//     spans the unseen state(s) before it;
//   - otherwise the kernel's dwell, when known.
func (e *Event) Stay() (time.Duration, bool) {
	if e.Has(Handshake) {
		return time.Duration(e.HandshakeMicros) * time.Microsecond, e.HandshakeMicros != 0
	}
	if e.Old == Close || e.Old == e.New || (e.Old == Listen && e.New == SynRecv) || e.Has(Gap) {
		return 0, false
	}
	return e.Dwell, e.Has(DwellKnown)
}

// UntimedStays is one state's stays that ended untimed.
type UntimedStays struct {
	// ByReason: stays that ended untimed, by UntimedReason (the rule is
	// Event.Untimed, and its kernel twin in bpf/hist.h).
	ByReason [NumUntimedReasons]uint64
	// Evicted (histogram-only mode): sockets evicted from the kernel's
	// full slot table while in the state; each such stay ends untimed
	// (no_start) when the socket leaves the state.
	Evicted uint64
}

// Total is the number of stays that ended untimed.
func (u *UntimedStays) Total() uint64 {
	var n uint64
	for _, c := range u.ByReason {
		n += c
	}
	return n
}

// Untimed reports whether the transition ends a stay (by Stay's rule)
// whose time is unknown, and why. The kernel's aggregation counts the
// same (bpf/hist.h, aggregate_why).
func (e *Event) Untimed() (UntimedReason, bool) {
	if e.Has(Handshake) {
		switch {
		case e.HandshakeMicros != 0:
			return 0, false
		case e.SynCookie:
			return UntimedSynCookie, true
		}
		return UntimedNoStart, true
	}
	if e.Old == Close || e.Old == e.New || (e.Old == Listen && e.New == SynRecv) || e.Has(DwellKnown) {
		return 0, false
	}
	return UntimedNoStart, true
}

// Has reports whether all of f are set on e.
func (e *Event) Has(f Flags) bool { return e.Flags&f == f }

// CommString returns the owner's command as a string (allocates).
func (e *Event) CommString() string { return string(CommBytes(&e.Comm)) }

// CommBytes returns c up to its first NUL.
func CommBytes(c *[16]byte) []byte {
	for i, b := range c {
		if b == 0 {
			return c[:i]
		}
	}
	return c[:]
}

// Size is the size of struct event in bpf/tcptrace.h.
const Size = 144

// Offsets of struct event's fields.
const (
	offTS     = 0
	offCookie = 8
	offDwell  = 16
	offSaddr  = 24
	offDaddr  = 40
	offNetns  = 56
	offPID    = 60
	offSport  = 64
	offDport  = 66
	offFamily = 68
	offOld    = 69
	offNew    = 70
	offFlags  = 71
	offComm   = 72
	offBytesA = 88
	offBytesR = 96
	offSRTT   = 104
	offTotRtx = 108
	offRetx   = 112
	offErr    = 114
	offSynRtx = 116
	offRst    = 117
	offTW     = 118
	offKind   = 119
	offHS     = 120
	offIf     = 124
	offNsCk   = 128
	offSynCk  = 136
)

const (
	afInet  = 2
	afInet6 = 10
)

// Decode fills e from one raw record. It checks the length, the address
// family and the states, and never panics on bad input.
func Decode(b []byte, e *Event) error {
	if len(b) != Size {
		return fmt.Errorf("record of %d bytes, want %d", len(b), Size)
	}
	ne := binary.NativeEndian
	e.Mono = Mono(ne.Uint64(b[offTS:]))
	e.Cookie = ne.Uint64(b[offCookie:])
	e.Dwell = time.Duration(ne.Uint64(b[offDwell:]))
	e.Netns = ne.Uint32(b[offNetns:])
	e.PID = ne.Uint32(b[offPID:])
	sport := ne.Uint16(b[offSport:])
	dport := ne.Uint16(b[offDport:])
	e.Old = State(b[offOld])
	e.New = State(b[offNew])
	e.Flags = Flags(b[offFlags])
	copy(e.Comm[:], b[offComm:offComm+16])
	e.BytesAcked = ne.Uint64(b[offBytesA:])
	e.BytesReceived = ne.Uint64(b[offBytesR:])
	e.SRTTMicros = ne.Uint32(b[offSRTT:])
	e.TotalRetrans = ne.Uint32(b[offTotRtx:])
	e.Retrans = ne.Uint16(b[offRetx:])
	e.Err = ne.Uint16(b[offErr:])
	e.SynRetrans = b[offSynRtx]
	e.Reset = b[offRst]
	e.TW = TW(b[offTW])
	e.Kind = Kind(b[offKind])
	e.HandshakeMicros = ne.Uint32(b[offHS:])
	e.IfIndex = ne.Uint32(b[offIf:])
	e.NetnsCookie = ne.Uint64(b[offNsCk:])
	e.SynCookie = b[offSynCk] != 0

	src, dst, fam, err := addrs(b[offFamily], b[offSaddr:offSaddr+16], b[offDaddr:offDaddr+16])
	if err != nil {
		return err
	}
	e.Family = fam
	e.Src = netip.AddrPortFrom(src, sport)
	e.Dst = netip.AddrPortFrom(dst, dport)
	if !e.Old.Valid() || !e.New.Valid() {
		return fmt.Errorf("unknown TCP state %d -> %d", b[offOld], b[offNew])
	}
	if e.Flags&^knownFlagSet != 0 {
		return fmt.Errorf("unknown flags %#x", uint8(e.Flags))
	}
	if e.TW > TWFinWait2 || e.Reset > ResetSent|ResetReceived {
		return fmt.Errorf("unknown close values tw=%d rst=%d", e.TW, e.Reset)
	}
	if e.Kind > KindConn {
		return fmt.Errorf("unknown record kind %d", e.Kind)
	}
	return nil
}

// addrs decodes a pair of 16-byte kernel addresses of an address family.
func addrs(family byte, s, d []byte) (src, dst netip.Addr, fam Family, err error) {
	switch family {
	case afInet:
		return netip.AddrFrom4([4]byte(s[:4])), netip.AddrFrom4([4]byte(d[:4])), IPv4, nil
	case afInet6:
		src, dst = netip.AddrFrom16([16]byte(s)), netip.AddrFrom16([16]byte(d))
		// A dual-stack socket talking IPv4 reports v4-mapped addresses;
		// show them as the IPv4 they are. An unspecified end (a listener,
		// or a connect before binding) follows the other end.
		if (src.Is4In6() || src.IsUnspecified()) && (dst.Is4In6() || dst.IsUnspecified()) &&
			(src.Is4In6() || dst.Is4In6()) {
			return unmapOrZero4(src), unmapOrZero4(dst), IPv4, nil
		}
		return src, dst, IPv6, nil
	}
	return src, dst, 0, fmt.Errorf("unknown address family %d", family)
}

func unmapOrZero4(a netip.Addr) netip.Addr {
	if a.IsUnspecified() {
		return netip.IPv4Unspecified()
	}
	return a.Unmap()
}

// Mono is a time on the kernel's CLOCK_MONOTONIC, in nanoseconds (the
// clock of bpf_ktime_get_ns()): when a transition happened, a state was
// entered, a connection began. 0 means unknown. A Clock turns it into wall
// time.
type Mono uint64

// Since returns the nanoseconds from earlier to m (0 if earlier is later).
func (m Mono) Since(earlier Mono) uint64 {
	if m < earlier {
		return 0
	}
	return uint64(m - earlier)
}

// Clock converts kernel monotonic times to wall time, with an offset
// measured once at start (a live run) or chosen by a replay.
type Clock struct {
	offset int64 // wall ns - mono ns
}

// NewClock returns the Clock under which mono is the time wall.
func NewClock(wall time.Time, mono Mono) Clock {
	return Clock{offset: wall.UnixNano() - int64(mono)}
}

// Wall returns the wall time of a kernel monotonic time.
func (c Clock) Wall(mono Mono) time.Time {
	return time.Unix(0, c.WallNano(mono))
}

// WallNano returns the wall time of a kernel monotonic time in
// nanoseconds since the Unix epoch.
func (c Clock) WallNano(mono Mono) int64 { return int64(mono) + c.offset }

// Mono is Wall's inverse: the monotonic time of a wall time under c (a
// replay reads wall times and keeps monotonic ones, as a live run does).
func (c Clock) Mono(wall time.Time) Mono { return Mono(wall.UnixNano() - c.offset) }

// ErrnoName returns the symbolic name of a Linux errno ("ECONNREFUSED"),
// or "errno N" for one without a name. The kernel's numbers: the same on
// whatever system reads a recording.
func ErrnoName(n uint16) string {
	if name := linuxErrnoNames[n]; name != "" {
		return name
	}
	return fmt.Sprintf("errno %d", n)
}

var errnoByName = sync.OnceValue(func() map[string]uint16 {
	m := map[string]uint16{}
	for n, name := range linuxErrnoNames {
		m[name] = n
	}
	return m
})

// ErrnoByName is ErrnoName's inverse ("ECONNREFUSED" -> 111, "errno 300"
// -> 300); 0 if unknown.
func ErrnoByName(name string) uint16 {
	if n, ok := errnoByName()[name]; ok {
		return n
	}
	var n uint16
	if _, err := fmt.Sscanf(name, "errno %d", &n); err == nil && ErrnoName(n) == name {
		return n
	}
	return 0
}
