package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/buildinfo"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
)

// walkGauges are what each socket walk found beyond the per-state tally:
// the listeners' queues, half-open handshakes, the sockets stuck now and
// the namespaces the tally spans. No label names a listener (no address
// or port in a label): the worst listener and the sums.
type walkGauges struct {
	namespaces, listeners, acceptQueue, fillMax, full, halfOpen prometheus.Gauge
	stuckNow                                                    *prometheus.GaugeVec
}

func newWalkGauges() walkGauges {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	w := walkGauges{
		namespaces:  g("tcptrace_socket_namespaces", "Network namespaces the socket tally (tcptrace_sockets) spans: those with a traced socket at the last walk."),
		listeners:   g("tcptrace_listeners", "Listening sockets at the last walk."),
		acceptQueue: g("tcptrace_accept_queue_sockets", "Connections waiting in listeners' accept queues (accepted by the kernel, not yet by the application), summed over listeners."),
		fillMax:     g("tcptrace_accept_queue_fill_ratio_max", "The fullest listener's accept queue over its limit (1: full, new connections' SYNs are dropped)."),
		full:        g("tcptrace_listeners_accept_queue_full", "Listeners whose accept queue is at its limit."),
		halfOpen:    g("tcptrace_half_open_sockets", "Half-open handshakes (request sockets, SYN-RECV in ss) at the last walk."),
		stuckNow: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcptrace_stuck_sockets",
			Help: "Sockets past their --stuck limit now, by state, at the last walk (SYN_RECV: half-open handshakes older than its limit).",
		}, []string{"state"}),
	}
	for st := event.Established; st <= event.NewSynRecv; st++ {
		if st.Dwells() {
			w.stuckNow.WithLabelValues(st.String())
		}
	}
	return w
}

func (w *walkGauges) register(r *prometheus.Registry) {
	r.MustRegister(w.namespaces, w.listeners, w.acceptQueue, w.fillMax, w.full, w.halfOpen, w.stuckNow)
}

// Walked sets the gauges from one walk (pipeline.WalkObserver).
func (m *Metrics) Walked(wk *pipeline.Walk) {
	w := &m.walk
	w.namespaces.Set(float64(wk.Namespaces))
	w.listeners.Set(float64(len(wk.Listeners)))
	var queued, full uint64
	fill := 0.0
	for i := range wk.Listeners {
		l := &wk.Listeners[i]
		queued += uint64(l.AcceptQueue)
		if l.AcceptQueueMax > 0 {
			fill = max(fill, float64(l.AcceptQueue)/float64(l.AcceptQueueMax))
			if l.AcceptQueue >= l.AcceptQueueMax {
				full++
			}
		}
	}
	w.acceptQueue.Set(float64(queued))
	w.fillMax.Set(fill)
	w.full.Set(float64(full))
	w.halfOpen.Set(float64(wk.HalfOpen))
	for st := event.Established; st <= event.NewSynRecv; st++ {
		if st.Dwells() || wk.StuckNow[st] != 0 {
			w.stuckNow.WithLabelValues(st.String()).Set(float64(wk.StuckNow[st]))
		}
	}
}

// buildInfo is tcptrace_build_info: always 1, the build in its labels.
func buildInfo() prometheus.Collector {
	in := buildinfo.Read()
	rev := in.Revision
	if in.Modified {
		rev += "+dirty"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tcptrace_build_info",
		Help:        "The tracer's build: version, VCS revision (empty when not stamped) and Go version. Always 1.",
		ConstLabels: prometheus.Labels{"version": in.Version, "revision": rev, "goversion": in.GoVersion},
	})
	g.Set(1)
	return g
}
