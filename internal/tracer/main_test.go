package tracer

import (
	"os"
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

func TestMain(m *testing.M) {
	if nettest.IsPeer() {
		nettest.PeerMain()
	}
	os.Exit(m.Run())
}
