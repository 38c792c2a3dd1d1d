// Package metrics exposes what the tracer sees as Prometheus metrics,
// with the official client: dwell-time histograms per state (classic
// buckets and native histograms), transitions, how connections ended,
// sockets per state, stuck connections, losses and the tracer's health.
// Labels are bounded: states, reset kinds and error names, never
// addresses, ports or connections.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// Metrics holds the collectors. Its methods are called from the tracer's
// one loop goroutine; the client library makes scrapes safe.
type Metrics struct {
	Registry *prometheus.Registry

	dwell       *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	closed      *prometheus.CounterVec
	sockets     *prometheus.GaugeVec
	stuck       *prometheus.CounterVec
	lost        *prometheus.CounterVec
	evictions   prometheus.Counter
	events      prometheus.Counter
	ringFill    prometheus.Gauge

	// Children resolved once, so the per-event path does no label lookup.
	dwellBy [event.NumStates]prometheus.Observer
	trans   [event.NumStates][event.NumStates]prometheus.Counter
}

// DwellBuckets are the classic buckets of the dwell histograms, in
// seconds: 1-2.5-5 steps from 10 µs to 10 minutes.
var DwellBuckets = []float64{
	1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600,
}

// New registers the metrics, with the Go and process collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.dwell = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tcptrace_state_dwell_seconds",
		Help:    "Time TCP connections spent in a state, observed when they leave it (known dwell only).",
		Buckets: DwellBuckets,
		// Native histogram: buckets at most 5% wide.
		NativeHistogramBucketFactor:     1.05,
		NativeHistogramMaxBucketNumber:  200,
		NativeHistogramMinResetDuration: 0,
	}, []string{"state"})
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcptrace_transitions_total",
		Help: "TCP state transitions, by old and new state.",
	}, []string{"old", "new"})
	m.closed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcptrace_connections_closed_total",
		Help: "Connections that reached CLOSE, by the state they left, whether an RST was seen, the error that ended them, and whether a TIME_WAIT socket lives on.",
	}, []string{"from", "reset", "error", "time_wait"})
	m.sockets = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcptrace_sockets",
		Help: "TCP sockets per state now (the netstat -nat tally), from the last socket walk.",
	}, []string{"state"})
	m.stuck = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcptrace_stuck_total",
		Help: "Connections reported stuck: held in a state past its --stuck limit.",
	}, []string{"state"})
	m.lost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcptrace_lost_events_total",
		Help: "Transitions that never reached the tracer, by reason (inferred: seen missing from sockets' states, which the kernel did not count; at least this many).",
	}, []string{"reason"})
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcptrace_evictions_total",
		Help: "Connections written early because the connection table was full.",
	})
	m.events = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcptrace_events_total",
		Help: "Transitions read from the kernel.",
	})
	m.ringFill = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcptrace_ringbuf_fill_ratio",
		Help: "Fraction of the BPF ring buffer waiting to be read, at the last poll.",
	})
	m.Registry.MustRegister(m.dwell, m.transitions, m.closed, m.sockets, m.stuck, m.lost,
		m.evictions, m.events, m.ringFill,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for st := event.Established; st <= event.NewSynRecv; st++ {
		m.dwellBy[st] = m.dwell.WithLabelValues(st.String())
		for to := event.Established; to <= event.NewSynRecv; to++ {
			m.trans[st][to] = m.transitions.WithLabelValues(st.String(), to.String())
		}
	}
	// Present at 0 from the start, so that every dashboard query has a
	// series (rate() of a series that appears later misses its first
	// increase, and a panel without a series shows "No data").
	for _, r := range []string{"ringbuf_full", "recursion", "decode", "unread"} {
		m.lost.WithLabelValues(r)
	}
	for st := event.Established; st <= event.NewSynRecv; st++ {
		m.stuck.WithLabelValues(st.String())
		m.closed.WithLabelValues(st.String(), "none", "none", "false")
	}
	return m
}

// Transition counts one transition and, when it ends a stay (stayEnded),
// observes stay, the state's dwell (for SYN_RECV, the handshake).
func (m *Metrics) Transition(e *event.Event, stay time.Duration, stayEnded bool) {
	m.events.Inc()
	if e.Old.Valid() && e.New.Valid() {
		m.trans[e.Old][e.New].Inc()
	}
	if stayEnded {
		m.dwellBy[e.Old].Observe(stay.Seconds())
	}
}

// Closed counts a connection that reached CLOSE from the state from, with
// its reset bits, errno and what the kernel left behind.
func (m *Metrics) Closed(from event.State, resetBits uint8, errno uint16, tw event.TW) {
	reset := "none"
	if resetBits != 0 {
		reset = event.ResetName(resetBits)
	}
	errName := "none"
	if errno != 0 {
		errName = event.ErrnoName(errno)
	}
	m.closed.WithLabelValues(from.String(), reset, errName, strconv.FormatBool(tw.TimeWait())).Inc()
}

// Sockets sets the per-state gauges from one walk.
func (m *Metrics) Sockets(counts *[event.NumStates]uint64) {
	for st := event.Established; st <= event.NewSynRecv; st++ {
		m.sockets.WithLabelValues(st.String()).Set(float64(counts[st]))
	}
}

// Stuck counts one stuck report.
func (m *Metrics) Stuck(s event.State) { m.stuck.WithLabelValues(s.String()).Inc() }

// Lost adds losses by reason.
func (m *Metrics) Lost(ringbufFull, recursion, decode, unread, gap uint64) {
	m.lost.WithLabelValues("inferred").Add(float64(gap))
	m.lost.WithLabelValues("ringbuf_full").Add(float64(ringbufFull))
	m.lost.WithLabelValues("recursion").Add(float64(recursion))
	m.lost.WithLabelValues("decode").Add(float64(decode))
	m.lost.WithLabelValues("unread").Add(float64(unread))
}

// Evicted adds evictions.
func (m *Metrics) Evicted(n uint64) { m.evictions.Add(float64(n)) }

// RingFill records how full the ring buffer was.
func (m *Metrics) RingFill(ratio float64) { m.ringFill.Set(ratio) }
