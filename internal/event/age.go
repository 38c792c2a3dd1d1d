package event

import "fmt"

// AgeSource says where the age of a socket in its state comes from when
// the tracer did not see it enter the state: the kernel field the socket
// walk read it from (bpf/walker.h), or the walk that first saw it. Every
// such age is a lower bound (the state began at or before it); the NDJSON
// field "age_source" spells it with AgeSource.String.
type AgeSource uint8

// The sources, pinned to enum age_source in bpf/tcptrace.h.
const (
	// AgeTraced: the tracer saw the transition; the age is exact.
	AgeTraced AgeSource = iota
	// AgeFirstSeen: the kernel holds nothing better; the age counts from
	// the walk that first saw the socket.
	AgeFirstSeen
	// AgeRcvTstamp: tcp_sock.rcv_tstamp, the last ACK received (`ss -ti`
	// lastack). On an idle CLOSE_WAIT socket, the peer's FIN; in
	// FIN_WAIT2, the ACK of our FIN. Later ACKs only make it younger.
	AgeRcvTstamp
	// AgeRetransStamp: a SYN_SENT socket's first SYN (retrans_stamp).
	AgeRetransStamp
	// AgeSynAck: a request socket's first SYN-ACK (snt_synack).
	AgeSynAck
	// AgeTwTimer: a timewait socket's timer (TIME_WAIT lasts
	// TCP_TIMEWAIT_LEN from its start; a rearmed timer only shortens
	// the figure).
	AgeTwTimer
	numAgeSources
)

var ageSourceNames = [numAgeSources]string{
	AgeTraced:       "",
	AgeFirstSeen:    "first_seen",
	AgeRcvTstamp:    "rcv_tstamp",
	AgeRetransStamp: "retrans_stamp",
	AgeSynAck:       "snt_synack",
	AgeTwTimer:      "tw_timer",
}

// String is the NDJSON spelling; "" for AgeTraced (the field is omitted).
func (a AgeSource) String() string {
	if a < numAgeSources {
		return ageSourceNames[a]
	}
	return fmt.Sprintf("age_source_%d", uint8(a))
}

// ParseAgeSource is String's inverse.
func ParseAgeSource(name string) (AgeSource, error) {
	for a, n := range ageSourceNames {
		if n == name {
			return AgeSource(a), nil
		}
	}
	return 0, fmt.Errorf("unknown age_source %q", name)
}
