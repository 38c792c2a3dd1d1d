package tracer

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// --emit histograms past --max-conns: held connections lose their slots
// in the kernel's table to the churn, so their long stays end untimed
// while the short ones are counted. The histograms must say so: every
// ESTABLISHED and CLOSE_WAIT stay that ended is either in a histogram
// or counted untimed (with its reason), the evictions are counted, and
// the exit line tells. The oracle is the traffic itself: each
// connection's two sockets leave ESTABLISHED once, its server side
// leaves CLOSE_WAIT once.
func TestHistogramModeCountsWhatItCouldNotTime(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Emit = config.EmitHistograms
	cfg.Stuck = [event.NumStates]time.Duration{}
	cfg.MaxConns = 16 // 32 slots
	tr := startTracer(t, cfg)
	const long, short = 40, 300
	sink := ns.Start(t, "sink", "127.0.0.1:7211", strconv.Itoa(long))
	hold := ns.Start(t, "hold", "127.0.0.1:7211", strconv.Itoa(long), "2s")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	server := ns.Start(t, "server", "127.0.0.1:0", strconv.Itoa(short), "0s")
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), strconv.Itoa(short))
	client.Line()
	client.Wait()
	server.Wait()
	hold.Wait()
	sink.Wait()
	waitClosed(t, ns)
	recs := tr.stop(t)
	st := ofType(recs, "stats")
	if len(st) != 1 {
		t.Fatalf("%d stats records", len(st))
	}
	hists := map[string]record{}
	var evictions uint64
	for _, h := range ofType(recs, "histogram") {
		hists[h.State] = h
		evictions += h.Evictions
	}
	lost := st[0].Lost
	for state, want := range map[string]uint64{"ESTABLISHED": 2 * (long + short), "CLOSE_WAIT": long + short} {
		h, ok := hists[state]
		if !ok {
			t.Errorf("no %s histogram", state)
			continue
		}
		// A transition the kernel skipped (counted lost) may take one
		// stay with it, or make two untimed (a gap).
		if got := h.Count + h.Untimed; got > want+lost || got+lost < want {
			t.Errorf("%s: %d timed + %d untimed stays, want %d (lost %d)", state, h.Count, h.Untimed, want, lost)
		}
		if h.Untimed != 0 && (h.UntimedReasons == nil || h.UntimedReasons.NoStart+h.UntimedReasons.Gap != h.Untimed) {
			t.Errorf("%s: untimed %d, reasons %+v", state, h.Untimed, h.UntimedReasons)
		}
	}
	est := hists["ESTABLISHED"]
	if est.Untimed < long/2 || evictions == 0 || st[0].Untimed == 0 {
		t.Errorf("ESTABLISHED untimed %d, evictions %d, stats untimed %d: want the held connections' stays among the untimed, and evictions",
			est.Untimed, evictions, st[0].Untimed)
	}
	if !strings.Contains(tr.errOut.String(), "stays untimed") {
		t.Errorf("exit line does not tell of the untimed stays:\n%s", tr.errOut)
	}
	t.Logf("ESTABLISHED: %d timed, %d untimed %+v (max %v); evictions %d; lost %d",
		est.Count, est.Untimed, est.UntimedReasons, time.Duration(est.MaxNs), evictions, lost)
}
