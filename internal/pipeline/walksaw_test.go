package pipeline

import (
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// A walk that did not reach a socket's namespace (its /proc path's
// process exited) is no proof the socket left its state: only a walk of
// that namespace is, or MissedWalks walks in a row without it.
func TestWalkSawLeft(t *testing.T) {
	stuck := event.Socket{Cookie: 9, Netns: 7, State: event.CloseWait}
	other := event.Socket{Cookie: 1, Netns: 8, State: event.Established}
	missed := 0
	if NewWalkSaw([]event.Socket{stuck, other}).Left(9, 7, event.CloseWait, &missed) {
		t.Error("left while there")
	}
	for i := 1; i < MissedWalks; i++ {
		if NewWalkSaw([]event.Socket{other}).Left(9, 7, event.CloseWait, &missed) {
			t.Errorf("left after %d walks that did not reach its namespace", i)
		}
	}
	if !NewWalkSaw([]event.Socket{other}).Left(9, 7, event.CloseWait, &missed) {
		t.Errorf("still there after %d walks without its namespace", MissedWalks)
	}
	missed = 0
	if !NewWalkSaw([]event.Socket{other, {Cookie: 2, Netns: 7, State: event.Listen}}).Left(9, 7, event.CloseWait, &missed) {
		t.Error("its namespace was walked without it, yet not left")
	}
	if !NewWalkSaw([]event.Socket{{Cookie: 9, Netns: 7, State: event.LastAck}}).Left(9, 7, event.CloseWait, &missed) {
		t.Error("moved on to LAST_ACK, yet not left")
	}
}
