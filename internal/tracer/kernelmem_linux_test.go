//go:build linux

package tracer

import (
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/probe"
)

// The kernel memory --help states for the defaults is what the maps hold:
// the sum of their memlock, at most the figure and not more than 2 MiB
// under it (a figure left behind by a change to a map's size fails).
func TestKernelMemoryAtDefaults(t *testing.T) {
	nettest.RequirePrivileges(t)
	for _, c := range []struct {
		name  string
		emit  config.Emit
		state uint64 // MiB
	}{{"default output", config.Defaults().Emit, config.KernelMiBRecords}, {"--emit histograms", config.EmitHistograms, config.KernelMiBHistograms}} {
		cfg := config.Defaults()
		cfg.Emit = c.emit
		p, err := probe.Load(probe.Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.KernelMemory()
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		mib := float64(got) / (1 << 20)
		t.Logf("%s: %.1f MiB in the maps (--help says %d)", c.name, mib, c.state)
		if mib > float64(c.state) || mib < float64(c.state)-2 {
			t.Errorf("%s: the maps hold %.1f MiB, --help says %d MiB", c.name, mib, c.state)
		}
	}
}
