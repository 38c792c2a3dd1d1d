package metrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
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
	m.Lost(1, 2, 0, 0, 3)

	if got := testutil.ToFloat64(m.trans[event.CloseWait][event.LastAck]); got != 1 {
		t.Errorf("transitions CLOSE_WAIT->LAST_ACK = %v", got)
	}
	if got := testutil.ToFloat64(m.closed.WithLabelValues("SYN_SENT", "received", "ECONNREFUSED", "false")); got != 1 {
		t.Errorf("refused connection counted %v times", got)
	}
	if got := testutil.ToFloat64(m.sockets.WithLabelValues("TIME_WAIT")); got != 7 {
		t.Errorf("TIME_WAIT gauge %v", got)
	}
	if got := testutil.ToFloat64(m.lost.WithLabelValues("recursion")); got != 2 {
		t.Errorf("lost recursion %v", got)
	}
	if got := testutil.ToFloat64(m.lost.WithLabelValues("inferred")); got != 3 {
		t.Errorf("lost gap %v", got)
	}
	// Every state has a stuck series from the start, at 0 until counted.
	expo := `
# HELP tcptrace_stuck_total Connections reported stuck: held in a state past its --stuck limit.
# TYPE tcptrace_stuck_total counter
`
	var names []string
	for st := event.Established; st <= event.NewSynRecv; st++ {
		names = append(names, st.String())
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
	if n, err := testutil.GatherAndCount(m.Registry, "tcptrace_state_dwell_seconds"); err != nil || n != 12 {
		t.Errorf("dwell histograms: %d series, %v; want one per state (12)", n, err)
	}
}
