// Package event holds the domain form of one TCP state transition and the
// decoder that turns a raw ring-buffer record into it.
package event

import (
	"fmt"
	"strings"
)

// State is a kernel TCP state number (include/net/tcp_states.h).
type State uint8

// The kernel's TCP states, named without the TCP_ prefix.
const (
	Established State = 1 + iota
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
)

// NumStates bounds State values: arrays indexed by State have this length.
const NumStates = 13

var stateNames = [NumStates]string{
	"UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
}

// String returns the kernel's name for s without the TCP_ prefix.
func (s State) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE_%d", uint8(s))
}

// Valid reports whether s is one of the kernel's TCP states.
func (s State) Valid() bool { return s >= Established && s <= NewSynRecv }

// ParseState accepts a state name in any case, with or without "TCP_",
// with '-' or '_', and SYN_RCVD (netstat's spelling) for SYN_RECV.
func ParseState(name string) (State, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	n = strings.TrimPrefix(n, "TCP_")
	n = strings.ReplaceAll(n, "-", "_")
	switch n {
	case "SYN_RCVD":
		return SynRecv, nil
	case "FIN_WAIT_1":
		return FinWait1, nil
	case "FIN_WAIT_2":
		return FinWait2, nil
	}
	for i := Established; i <= NewSynRecv; i++ {
		if stateNames[i] == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown TCP state %q (valid: %s)", name, strings.Join(stateNames[1:], " "))
}

// Troubled are the states a leak or an unreachable peer piles sockets up
// in, the ones netstat shows and someone has to explain: the live view
// (top) ranks their holders and the report names their owners. A request
// socket (NEW_SYN_RECV) counts as SYN_RECV.
var Troubled = []State{CloseWait, SynSent, SynRecv, FinWait2, TimeWait}
