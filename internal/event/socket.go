package event

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Socket is one socket as the kernel's TCP iterator saw it: what exists
// now, as netstat would list it.
type Socket struct {
	Cookie     uint64 // 0 for request (NEW_SYN_RECV) and timewait sockets
	Src, Dst   netip.AddrPort
	Netns      uint32
	PID        uint32
	Family     Family
	State      State
	OwnerKnown bool
	Comm       [16]byte
	// Listeners only: accept queue length and limit, SYN-ACK retransmits.
	AcceptQueue, AcceptQueueMax uint32
	SynAckRetrans               uint32
	// Request (NEW_SYN_RECV) sockets: kernel monotonic ns when the first
	// SYN-ACK left; 0 otherwise.
	SynAck Mono
	// Full sockets: the inode of the socket's file (0: none), to find the
	// processes that hold it.
	Inode uint64
	// Listeners only: the kernel's drops on the socket (sk_drops: SYNs
	// and final ACKs dropped at a full queue, since listen()), the
	// connections it accepted through a SYN cookie since tracing began,
	// and the kernel's stamp of its latest SYN cookie (jiffies, 0: none),
	// which moves while it sends them.
	Drops, SynCookies, SynCookieStamp uint32

	NetnsCookie uint64 // as Event.NetnsCookie
	IfIndex     uint32 // as Event.IfIndex
	// StateAge: the kernel's lower bound of the time the socket has been
	// in State (ns), from AgeSource (AgeFirstSeen: none, 0).
	StateAge  uint64
	AgeSource AgeSource
	// Full sockets: the kernel's figures now (tcp_sock).
	BytesAcked, BytesReceived uint64
	SRTTMicros, TotalRetrans  uint32
	// Count: how many sockets this record stands for, 1 for a socket the
	// walk wrote itself. More for a group the walk counted in the kernel
	// (a state WalkDetail left out): its sockets share the namespace, the
	// state and family, and for TIME_WAIT Dst and IfIndex, for request
	// sockets Src's port; StateAge/AgeSource are the oldest's. A group
	// has no Cookie, owner, Inode or figures.
	Count uint32
}

// WalkDetail says which sockets a walk writes one by one; it counts the
// others in groups (Socket.Count), so that a host's idle connections and
// its TIME_WAIT sockets cost the periodic walk a count each, not a
// record. The zero value groups every state.
type WalkDetail struct {
	States uint32 // bit 1<<s: every socket in state s is written
	// Flush: bit 1<<s sends the transitions the kernel holds for each
	// socket written in state s (config.ConnRecords: what the stuck watch
	// must see now).
	Flush uint32
	// HalfOpenPast: request sockets at least this old (since their first
	// SYN-ACK, ns) are grouped apart from their listener's younger ones
	// (the half-open watch's limit; 0: not split).
	HalfOpenPast uint64
}

// WalkAll writes every socket: the first walk (it seeds the connection
// table), and any walk whose user reads every socket.
var WalkAll = WalkDetail{States: ^uint32(0)}

// With returns d that also writes the sockets in st.
func (d WalkDetail) With(st ...State) WalkDetail {
	for _, s := range st {
		d.States |= 1 << s
	}
	return d
}

// Writes tells whether d writes each socket in st.
func (d WalkDetail) Writes(st State) bool { return d.States&(1<<st) != 0 }

// SocketSize is the size of struct sock_snap in bpf/tcptrace.h.
const SocketSize = 168

// DecodeSocket fills s from one struct sock_snap record.
func DecodeSocket(b []byte, s *Socket) error {
	if len(b) != SocketSize {
		return fmt.Errorf("socket record of %d bytes, want %d", len(b), SocketSize)
	}
	ne := binary.NativeEndian
	s.Cookie = ne.Uint64(b[0:])
	s.Netns = ne.Uint32(b[40:])
	s.PID = ne.Uint32(b[44:])
	sport, dport := ne.Uint16(b[48:]), ne.Uint16(b[50:])
	s.State = State(b[53])
	s.OwnerKnown = b[54] != 0
	copy(s.Comm[:], b[56:72])
	s.AcceptQueue = ne.Uint32(b[72:])
	s.AcceptQueueMax = ne.Uint32(b[76:])
	s.SynAckRetrans = ne.Uint32(b[80:])
	s.SynAck = Mono(ne.Uint64(b[88:]))
	s.Inode = ne.Uint64(b[96:])
	s.Drops = ne.Uint32(b[104:])
	s.SynCookies = ne.Uint32(b[108:])
	s.SynCookieStamp = ne.Uint32(b[112:])
	s.IfIndex = ne.Uint32(b[84:])
	s.NetnsCookie = ne.Uint64(b[120:])
	s.BytesAcked = ne.Uint64(b[128:])
	s.BytesReceived = ne.Uint64(b[136:])
	s.StateAge = ne.Uint64(b[144:])
	s.SRTTMicros = ne.Uint32(b[152:])
	s.TotalRetrans = ne.Uint32(b[156:])
	s.AgeSource = AgeSource(b[160])
	s.Count = max(1, ne.Uint32(b[116:]))
	src, dst, fam, err := addrs(b[52], b[8:24], b[24:40])
	if err != nil {
		return err
	}
	s.Family = fam
	s.Src, s.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	if !s.State.Valid() {
		return fmt.Errorf("unknown TCP state %d", b[53])
	}
	return nil
}

// SplitSockets calls fn for each record of a socket walk.
func SplitSockets(b []byte, fn func(*Socket)) error {
	if len(b)%SocketSize != 0 {
		return fmt.Errorf("socket walk of %d bytes is not whole records of %d", len(b), SocketSize)
	}
	var s Socket
	for off := 0; off < len(b); off += SocketSize {
		if err := DecodeSocket(b[off:off+SocketSize], &s); err != nil {
			return err
		}
		fn(&s)
	}
	return nil
}
