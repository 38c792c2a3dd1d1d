package pipeline

import "github.com/tcptrace-bpf/tcptrace-bpf/internal/event"

// A walk of every namespace can miss one: the process whose
// /proc/PID/ns/net named it may exit between the listing and the walk.
// So a socket known to be in a state (reported stuck) is taken to have
// left it only when a walk reached its namespace and did not find it
// there in that state, or when MissedWalks walks in a row did not reach
// its namespace at all (a namespace whose last socket closed shows no
// socket either).

// MissedWalks is how many walks in a row that do not reach a socket's
// namespace count as its end.
const MissedWalks = 3

// WalkSaw is what one walk saw: each full socket's state by cookie, and
// the namespaces it found a socket in.
type WalkSaw struct {
	state map[uint64]event.State
	netns map[uint32]bool
}

// NewWalkSaw reads socks, one walk's sockets.
func NewWalkSaw(socks []event.Socket) *WalkSaw {
	w := &WalkSaw{state: make(map[uint64]event.State, len(socks)), netns: map[uint32]bool{}}
	for i := range socks {
		w.add(&socks[i])
	}
	return w
}

func (w *WalkSaw) add(s *event.Socket) {
	if s.Cookie != 0 {
		w.state[s.Cookie] = s.State
	}
	w.netns[s.Netns] = true
}

// Left tells whether the socket cookie, last known in state st in
// namespace ns, has left st by this walk; *missed counts the walks in a
// row that did not reach ns (reset when one does).
func (w *WalkSaw) Left(cookie uint64, ns uint32, st event.State, missed *int) bool {
	if got, ok := w.state[cookie]; ok {
		*missed = 0
		return got != st
	}
	if w.netns[ns] {
		return true // its namespace was walked: the socket is gone
	}
	*missed++
	return *missed >= MissedWalks
}
