package metrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
)

func TestMetrics(t *testing.T) {
	m := New()
	e := event.Event{Old: event.CloseWait, New: event.LastAck, Dwell: 2 * time.Second, Flags: event.DwellKnown}
	m.Transition(&e, e.Dwell, true)
	m.Closed(event.SynSent, event.ResetReceived, 111, event.TWNone)
	var counts [event.NumStates]uint64
	counts[event.TimeWait] = 7
	m.Sockets(&counts)
	m.Stuck(event.CloseWait)
	m.Lost([6]uint64{1, 2, 0, 0, 4, 3}, false)
	m.Lost([6]uint64{0, 5, 0, 0, 0, 0}, true)

	if got := testutil.ToFloat64(m.trans[event.CloseWait][event.LastAck]); got != 1 {
		t.Errorf("transitions CLOSE_WAIT->LAST_ACK = %v", got)
	}
	if got := testutil.ToFloat64(m.closed.WithLabelValues("SYN_SENT", "received", "ECONNREFUSED", "false")); got != 1 {
		t.Errorf("refused connection counted %v times", got)
	}
	if got := testutil.ToFloat64(m.sockets.WithLabelValues("TIME_WAIT")); got != 7 {
		t.Errorf("TIME_WAIT gauge %v", got)
	}
	if got := testutil.ToFloat64(m.lost.WithLabelValues("recursion", "run")); got != 2 {
		t.Errorf("lost recursion %v", got)
	}
	if got := testutil.ToFloat64(m.lost.WithLabelValues("recursion", "host")); got != 5 {
		t.Errorf("lost recursion of the host (a filtered run) %v", got)
	}
	if got := testutil.ToFloat64(m.lost.WithLabelValues("inferred", "run")); got != 3 {
		t.Errorf("lost inferred %v", got)
	}
	if got := testutil.ToFloat64(m.lost.WithLabelValues("unsent", "run")); got != 4 {
		t.Errorf("lost unsent %v", got)
	}
	// Every state has a stuck series from the start, at 0 until counted.
	expo := `
# HELP tcptrace_stuck_total Connections reported stuck: held in a state past its --stuck limit.
# TYPE tcptrace_stuck_total counter
`
	var names []string
	for st := event.Established; st <= event.NewSynRecv; st++ {
		if st.Dwells() {
			names = append(names, st.String())
		}
	}
	slices.Sort(names)
	for _, n := range names {
		v := "0"
		if n == "CLOSE_WAIT" {
			v = "1"
		}
		expo += fmt.Sprintf("tcptrace_stuck_total{state=%q} %s\n", n, v)
	}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(expo), "tcptrace_stuck_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry, "tcptrace_state_dwell_seconds"); err != nil || n != 9 {
		t.Errorf("dwell histograms: %d series, %v; want one per state a socket leaves with a stay (9)", n, err)
	}
}

// No series that can never change: no dwell for CLOSE, TIME_WAIT or
// NEW_SYN_RECV (no full socket leaves them with a stay), no stuck count
// for a state --stuck refuses, no transition pair outside the life cycle
// until the kernel makes one; one name per idea (the lost reasons are the
// NDJSON lost record's fields, and no events_total beside
// transitions_total).
func TestNoSeriesThatCannotChange(t *testing.T) {
	m := New()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if name == "tcptrace_events_total" {
			t.Errorf("%s counts what tcptrace_transitions_total counts", name)
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				v := l.GetValue()
				switch {
				case name == "tcptrace_state_dwell_seconds" && (v == "CLOSE" || v == "TIME_WAIT" || v == "NEW_SYN_RECV"):
					t.Errorf("%s{state=%q} can never be observed", name, v)
				case name == "tcptrace_stuck_total" && (v == "CLOSE" || v == "TIME_WAIT" || v == "NEW_SYN_RECV"):
					t.Errorf("%s{state=%q} can never count", name, v)
				case name == "tcptrace_lost_events_total" && v == "decode":
					t.Errorf(`%s{reason="decode"}: the lost record calls it decode_errors`, name)
				case name == "tcptrace_sockets" && v == "CLOSE":
					t.Errorf("%s{state=CLOSE}: the walk lists no CLOSE socket", name)
				}
			}
		}
	}
	if n, _ := testutil.GatherAndCount(m.Registry, "tcptrace_transitions_total"); n != len(LifeCycle) {
		t.Errorf("%d transition series at start, want the %d of the life cycle", n, len(LifeCycle))
	}
	// A pair outside it gets its series when it happens.
	e := event.Event{Old: event.FinWait1, New: event.Closing}
	m.Transition(&e, 0, false)
	if got := testutil.ToFloat64(m.transitions.WithLabelValues("FIN_WAIT1", "CLOSING")); got != 1 {
		t.Errorf("FIN_WAIT1->CLOSING counted %v", got)
	}
	if n, _ := testutil.GatherAndCount(m.Registry, "tcptrace_build_info"); n != 1 {
		t.Errorf("no tcptrace_build_info")
	}
}

// The walk's gauges: listener queues, half-open handshakes, sockets stuck
// now, namespaces; the kernel's BPF run time as counters.
func TestWalkGauges(t *testing.T) {
	m := New()
	w := pipeline.Walk{Namespaces: 3, HalfOpen: 5, Listeners: []pipeline.Listener{
		{AcceptQueue: 4, AcceptQueueMax: 4}, {AcceptQueue: 1, AcceptQueueMax: 10}}}
	w.StuckNow[event.CloseWait] = 8
	w.StuckNow[event.SynRecv] = 2
	m.Walked(&w)
	for name, want := range map[string]float64{
		"tcptrace_socket_namespaces": 3, "tcptrace_listeners": 2, "tcptrace_accept_queue_sockets": 5,
		"tcptrace_accept_queue_fill_ratio_max": 1, "tcptrace_listeners_accept_queue_full": 1, "tcptrace_half_open_sockets": 5,
	} {
		mfs, _ := m.Registry.Gather()
		got := -1.0
		for _, mf := range mfs {
			if mf.GetName() == name {
				got = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := testutil.ToFloat64(m.walk.stuckNow.WithLabelValues("CLOSE_WAIT")); got != 8 {
		t.Errorf("stuck CLOSE_WAIT now %v", got)
	}
	m.BPFStats(1000, 150_000)
	m.BPFStats(3000, 450_000)
	if got := testutil.ToFloat64(m.bpfRuns); got != 3000 {
		t.Errorf("bpf runs %v", got)
	}
	if got := testutil.ToFloat64(m.bpfRunTime); got != 450e-6 {
		t.Errorf("bpf run seconds %v", got)
	}
}
