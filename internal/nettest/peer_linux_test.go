package nettest

import (
	"fmt"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// A peer that holds connections holds them whatever its garbage collector
// does: a net.Conn the collector finds unreachable is closed by its
// finalizer, and the runtime forces a collection every two minutes (the
// bench's 100,000 idle connections closed in the middle of its idle row,
// a ring buffer's worth of transitions at once). Here the peers collect
// every 20 ms.
func TestPeersHoldConnectionsThroughCollections(t *testing.T) {
	RequirePrivileges(t)
	t.Setenv(PeerGCEnv, "20ms")
	ns := NewNetns(t)
	const n = 50
	sink := ns.Start(t, "sink", "127.0.0.1:0", fmt.Sprint(n))
	hold := ns.Start(t, "hold", fmt.Sprintf("127.0.0.1:%d", sink.Port), fmt.Sprint(n), "1h")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	leak := ns.Start(t, "leak", "127.0.0.1:0", fmt.Sprint(n))
	shut := ns.Start(t, "idleclose", fmt.Sprintf("127.0.0.1:%d", leak.Port), fmt.Sprint(n), "0s", "shutdown")
	if l := shut.Line(); l != "connected" {
		t.Fatalf("idleclose: %q", l)
	}
	if l := leak.Line(); l != "accepted" {
		t.Fatalf("leak: %q", l)
	}
	time.Sleep(time.Second) // fifty collections in each peer
	states := ns.SSStates(t)
	// hold: n connections, both ends established; idleclose shutdown
	// against leak: n half-closed (FIN_WAIT2 and CLOSE_WAIT), held.
	// The leak peer's listener stays too.
	want := map[string]uint64{"ESTAB": 2 * n, "FIN-WAIT-2": n, "CLOSE-WAIT": n, "LISTEN": 1}
	for st, w := range want {
		if states[st] != w {
			t.Errorf("%s: %d sockets, want %d (all: %v)", st, states[st], w, states)
		}
	}
}
