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
	reclaimed   prometheus.Counter
	ringFill    prometheus.Gauge
	walk        walkGauges
	bpfRuns     prometheus.Counter
	bpfRunTime  prometheus.Counter
	lastRuns    uint64
	lastRunNs   uint64
	untimed     *prometheus.CounterVec
	listenDrops prometheus.Gauge
	cookieLsn   prometheus.Gauge
	cookieConns prometheus.Counter

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
		Help: "Transitions that never reached the tracer, by reason; scope \"host\": counted for the whole host's TCP transitions on a filtered run (kernel recursion skips), so they may concern sockets the run does not trace.",
	}, []string{"reason", "scope"})
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcptrace_evictions_total",
		Help: "Connections written early because the connection table was full.",
	})
	m.reclaimed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcptrace_reclaimed_sockets_total",
		Help: "Live sockets whose kernel entry the full table (--max-conns) reclaimed: their timelines miss what the entry held.",
	})
	// The transitions read are sum(tcptrace_transitions_total): no
	// second counter of the same idea (stats records call it events).
	m.bpfRuns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcptrace_bpf_runs_total",
		Help: "Runs of the tracer's main BPF program (every TCP transition on the host), counted by the kernel only while kernel.bpf_stats_enabled=1.",
	})
	m.bpfRunTime = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcptrace_bpf_run_seconds_total",
		Help: "Time the kernel spent in all of the tracer's BPF programs, counted only while kernel.bpf_stats_enabled=1: the tracer's kernel-side cost.",
	})
	m.walk = newWalkGauges()
	m.ringFill = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcptrace_ringbuf_fill_ratio",
		Help: "Fraction of the BPF ring buffer waiting to be read, at the last poll.",
	})
	m.untimed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcptrace_untimed_stays_total",
		Help: "Stays that ended without a known time, so not in tcptrace_state_dwell_seconds, by state and reason (no_start, gap, syncookie).",
	}, []string{"state", "reason"})
	m.listenDrops = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcptrace_listen_drops",
		Help: "The kernel's drops on the listening sockets (sk_drops: SYNs and final ACKs dropped at a full queue), summed over the listeners, each since its listen(), from the last socket walk.",
	})
	m.cookieLsn = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcptrace_listeners_sending_syncookies",
		Help: "Listeners that answered SYNs with SYN cookies between the last two socket walks.",
	})
	m.cookieConns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcptrace_syncookie_handshakes_total",
		Help: "Connections accepted through a SYN cookie (their handshake time is unknown).",
	})
	m.Registry.MustRegister(m.dwell, m.transitions, m.closed, m.sockets, m.stuck, m.lost,
		m.evictions, m.reclaimed, m.ringFill, m.bpfRuns, m.bpfRunTime, buildInfo(),
		m.untimed, m.listenDrops, m.cookieLsn, m.cookieConns,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.walk.register(m.Registry)
	// Present at 0 from the start, so that every dashboard query has a
	// series (rate() of a series that appears later misses its first
	// increase, and a panel without a series shows "No data"); but only
	// series that can change: a state nobody stays in has no dwell, a
	// pair the kernel never makes no transitions (those appear when
	// first counted, should a kernel make them).
	for st := event.Established; st <= event.NewSynRecv; st++ {
		if st.Dwells() { // the states --stuck may watch, and left with a stay
			m.dwellBy[st] = m.dwell.WithLabelValues(st.String())
			m.closed.WithLabelValues(st.String(), "none", "none", "false")
			m.stuck.WithLabelValues(st.String())
		}
	}
	for _, p := range LifeCycle {
		m.trans[p[0]][p[1]] = m.transitions.WithLabelValues(p[0].String(), p[1].String())
	}
	for _, r := range LostReasons {
		m.lost.WithLabelValues(r, "run")
	}
	m.lost.WithLabelValues("recursion", "host")
	return m
}

// LostReasons are the reason labels of tcptrace_lost_events_total: the
// field names of the NDJSON lost record (docs/ndjson.md), one name per
// idea.
var LostReasons = []string{"ringbuf_full", "recursion", "decode_errors", "unread", "unsent", "inferred"}

// LifeCycle are the transitions every TCP connection's life is made of on
// Linux (docs: KERNEL-NOTES, one loopback connection and a refused
// connect; a listener's start and end), which exist at 0 from the start.
var LifeCycle = [][2]event.State{
	{event.Close, event.Listen}, {event.Listen, event.Close},
	{event.Close, event.SynSent}, {event.SynSent, event.Established}, {event.SynSent, event.Close},
	{event.Listen, event.SynRecv}, {event.SynRecv, event.Established},
	{event.Established, event.FinWait1}, {event.FinWait1, event.FinWait2}, {event.FinWait2, event.Close},
	{event.Established, event.CloseWait}, {event.CloseWait, event.LastAck}, {event.LastAck, event.Close},
	{event.Established, event.Close},
}

// Transition counts one transition and, when it ends a stay (stayEnded),
// observes stay, the state's dwell (for SYN_RECV, the handshake).
func (m *Metrics) Transition(e *event.Event, stay time.Duration, stayEnded bool) {
	if e.Old.Valid() && e.New.Valid() {
		c := m.trans[e.Old][e.New]
		if c == nil { // a pair outside the life cycle: its series from now on
			c = m.transitions.WithLabelValues(e.Old.String(), e.New.String())
			m.trans[e.Old][e.New] = c
		}
		c.Inc()
	}
	if stayEnded {
		o := m.dwellBy[e.Old]
		if o == nil {
			o = m.dwell.WithLabelValues(e.Old.String())
			m.dwellBy[e.Old] = o
		}
		o.Observe(stay.Seconds())
	} else if why, untimed := e.Untimed(); untimed && e.Old.Valid() {
		m.untimed.WithLabelValues(e.Old.String(), why.String()).Inc()
	}
	if e.SynCookie {
		m.cookieConns.Inc()
	}
}

// Listeners sets the listener gauges from one walk.
func (m *Metrics) Listeners(drops, cookieSenders uint64) {
	m.listenDrops.Set(float64(drops))
	m.cookieLsn.Set(float64(cookieSenders))
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
		if st != event.Close || counts[st] != 0 { // the walk lists no CLOSE socket
			m.sockets.WithLabelValues(st.String()).Set(float64(counts[st]))
		}
	}
}

// Stuck counts one stuck report.
func (m *Metrics) Stuck(s event.State) { m.stuck.WithLabelValues(s.String()).Inc() }

// Lost adds losses by reason.
// parts are pipeline.LostParts, in LostReasons' order; recursionHostWide:
// the run is filtered, and the recursion skips are the host's
// (pipeline.Lost.RecursionHostWide): scope "host".
func (m *Metrics) Lost(parts [6]uint64, recursionHostWide bool) {
	for i, n := range parts {
		scope := "run"
		if i == 1 && recursionHostWide {
			scope = "host"
		}
		m.lost.WithLabelValues(LostReasons[i], scope).Add(float64(n))
	}
}

// BPFStats takes the kernel's cumulative run count and run time of the
// programs (0 while kernel.bpf_stats_enabled=0).
func (m *Metrics) BPFStats(runs, runTimeNs uint64) {
	if runs >= m.lastRuns && runTimeNs >= m.lastRunNs {
		m.bpfRuns.Add(float64(runs - m.lastRuns))
		m.bpfRunTime.Add(float64(runTimeNs-m.lastRunNs) / 1e9)
	}
	m.lastRuns, m.lastRunNs = runs, runTimeNs
}

// Evicted adds evictions.
func (m *Metrics) Evicted(n uint64) { m.evictions.Add(float64(n)) }

// Reclaimed adds sockets whose kernel entry the full table reclaimed.
func (m *Metrics) Reclaimed(n uint64) { m.reclaimed.Add(float64(n)) }

// RingFill records how full the ring buffer was.
func (m *Metrics) RingFill(ratio float64) { m.ringFill.Set(ratio) }
