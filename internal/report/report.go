// Package report turns a recording into one self-contained HTML page:
// per-state dwell histograms, a waterfall of the slowest and the stuck
// connections, and the state-count time series. Charts are inline SVG; the
// page fetches nothing.
package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// Slowest is how many of the longest connections the waterfall shows.
const Slowest = 25

// Collector is an output.Sink that keeps what the page shows.
type Collector struct {
	clock event.Clock
	hists output.Histograms
	since time.Time
	until time.Time
	conns []conn // the Slowest longest, and every stuck one
	stuck map[uint64]stuckInfo
	// stuckOrder keeps the stuck connections in the order reported.
	stuckOrder []uint64
	series     []sample
	stats      struct{ transitions, connections uint64 }
}

type conn struct {
	timeline.Conn
	States []timeline.Span // copied: the sink's Conn is reused
}

type stuckInfo struct {
	State   event.State
	Age     uint64
	AtLeast bool
	Conn    timeline.Conn
}

type sample struct {
	TS     time.Time
	Counts [event.NumStates]uint64
}

// NewCollector returns a collector for records replayed with clock.
func NewCollector(clock event.Clock) *Collector {
	return &Collector{clock: clock, stuck: map[uint64]stuckInfo{}}
}

func (c *Collector) Transition(*event.Event) { c.stats.transitions++ }

func (c *Collector) Connection(tc *timeline.Conn) {
	c.stats.connections++
	if tc.Start == 0 || tc.End < tc.Start {
		return
	}
	cp := conn{Conn: *tc, States: slices.Clone(tc.States)}
	c.conns = append(c.conns, cp)
	if len(c.conns) > 4*Slowest { // keep memory bounded: trim to the longest
		c.trim()
	}
}

func (c *Collector) trim() {
	slices.SortFunc(c.conns, func(a, b conn) int { return int64cmp(dur(b), dur(a)) })
	keep := c.conns[:0]
	for i, x := range c.conns {
		if _, stuck := c.stuck[x.Cookie]; i < Slowest || stuck {
			keep = append(keep, x)
		}
	}
	c.conns = keep
}

func dur(x conn) int64 { return int64(x.End - x.Start) }

func int64cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *Collector) Histograms(ts, since time.Time, h *output.Histograms) {
	c.hists, c.since, c.until = *h, since, ts
}

func (c *Collector) States(ts time.Time, counts *[event.NumStates]uint64) {
	c.series = append(c.series, sample{TS: ts, Counts: *counts})
}

func (c *Collector) Stuck(s *output.Stuck) {
	tc := s.Conn
	if _, seen := c.stuck[tc.Cookie]; !seen {
		c.stuckOrder = append(c.stuckOrder, tc.Cookie)
	}
	c.stuck[tc.Cookie] = stuckInfo{State: s.State, Age: s.Age, AtLeast: s.AtLeast, Conn: *tc}
}

func (c *Collector) Lost(*output.Lost)                    {}
func (c *Collector) Stats(*output.Stats)                  {}
func (c *Collector) Listener(time.Time, *output.Listener) {}
func (c *Collector) Flush() error                         { return nil }
func (c *Collector) Redirect(io.Writer) error             { return nil }

// stateColors gives each state the same colour everywhere on the page.
var stateColors = [event.NumStates]string{
	"#999", "#2e7d32", "#1565c0", "#6a1b9a", "#ef6c00", "#f9a825",
	"#8d6e63", "#616161", "#c62828", "#ad1457", "#00838f", "#5d4037", "#283593",
}

// Color returns a state's colour.
func Color(s event.State) string {
	if int(s) < len(stateColors) {
		return stateColors[s]
	}
	return "#000"
}

type bar struct {
	X, Y, W, H float64
	Label      string
	Count      uint64
}

type histView struct {
	State                   string
	Color                   string
	Count                   uint64
	P50, P90, P99, Min, Max string
	Bars                    []bar
	Last                    *bar // labelled at the right end too
}

type segment struct {
	X, W     float64
	State    string
	Color    string
	Title    string
	Inferred bool
}

type rowView struct {
	Y        float64
	Label    string
	Duration string
	Stuck    string
	Segments []segment
}

type lineView struct {
	State  string
	Color  string
	Points string
	Last   uint64
}

type page struct {
	Title        string
	Since, Until string
	Transitions  uint64
	Connections  uint64
	Hists        []histView
	Rows         []rowView
	WaterfallH   float64
	Lines        []lineView
	SeriesMax    uint64
	SeriesFrom   string
	SeriesTo     string
	Stuck        int
	Legend       []lineView // the states the waterfall shows
}

const chartW, chartH = 420.0, 160.0

func (c *Collector) view(title string) page {
	p := page{Title: title, Transitions: c.stats.transitions, Connections: c.stats.connections, Stuck: len(c.stuck)}
	if !c.since.IsZero() {
		p.Since, p.Until = c.since.UTC().Format(time.RFC3339), c.until.UTC().Format(time.RFC3339)
	}
	for st := range c.hists {
		h := &c.hists[st]
		if h.Count() == 0 {
			continue
		}
		p.Hists = append(p.Hists, histogramView(event.State(st), h))
	}
	p.Rows, p.WaterfallH = c.waterfall()
	seen := map[string]bool{}
	for _, r := range p.Rows {
		for _, sg := range r.Segments {
			if !seen[sg.State] {
				seen[sg.State] = true
				p.Legend = append(p.Legend, lineView{State: sg.State, Color: sg.Color})
			}
		}
	}
	p.Lines, p.SeriesMax, p.SeriesFrom, p.SeriesTo = c.lines()
	return p
}

// histogramView folds the log-linear buckets into powers of two, as the
// text summary does, and draws them as bars.
func histogramView(st event.State, h *histogram.Histogram) histView {
	var pow [65]uint64
	lo, hi := 64, 0
	for _, b := range h.AppendBuckets(nil) {
		k := bits.Len64(b.Lo)
		pow[k] += b.Count
		lo, hi = min(lo, k), max(hi, k)
	}
	var peak uint64
	for k := lo; k <= hi; k++ {
		peak = max(peak, pow[k])
	}
	v := histView{State: st.String(), Color: Color(st), Count: h.Count(),
		P50: output.FormatDuration(h.Quantile(.5)), P90: output.FormatDuration(h.Quantile(.9)),
		P99: output.FormatDuration(h.Quantile(.99)), Min: output.FormatDuration(h.Min()), Max: output.FormatDuration(h.Max())}
	n := hi - lo + 1
	w := (chartW - 20) / float64(n)
	for k := lo; k <= hi; k++ {
		bh := (chartH - 30) * float64(pow[k]) / float64(peak)
		from := uint64(0)
		if k > 0 {
			from = 1 << (k - 1)
		}
		v.Bars = append(v.Bars, bar{X: 10 + float64(k-lo)*w, Y: chartH - 20 - bh, W: math.Max(w-2, 1), H: bh,
			Label: "≥" + output.FormatDuration(from), Count: pow[k]})
	}
	if len(v.Bars) > 2 {
		v.Last = &v.Bars[len(v.Bars)-1]
	}
	return v
}

func (c *Collector) waterfall() ([]rowView, float64) {
	c.trim()
	var longest uint64
	for _, x := range c.conns {
		longest = max(longest, x.End-x.Start)
	}
	const rowH, labelW, barW = 22.0, 330.0, 560.0
	var rows []rowView
	drawn := map[uint64]bool{} // stuck connections not drawn yet
	for ck := range c.stuck {
		drawn[ck] = true
	}
	for i, x := range c.conns {
		r := rowView{Y: float64(i) * rowH,
			Label:    fmt.Sprintf("%s > %s %s", x.Src, x.Dst, owner(&x.Conn)),
			Duration: output.FormatDuration(x.End - x.Start)}
		if s, ok := c.stuck[x.Cookie]; ok {
			r.Stuck = fmt.Sprintf("stuck %s", s.State)
		}
		for j, sp := range x.States {
			if sp.Enter == 0 || sp.State == event.Close {
				continue
			}
			end := x.End
			if j+1 < len(x.States) && x.States[j+1].Enter != 0 {
				end = x.States[j+1].Enter
			}
			if end < sp.Enter {
				continue
			}
			seg := segment{
				X:     labelW + barW*float64(sp.Enter-x.Start)/float64(max(longest, 1)),
				W:     math.Max(barW*float64(end-sp.Enter)/float64(max(longest, 1)), 1),
				State: sp.State.String(), Color: Color(sp.State), Inferred: sp.Inferred,
				Title: fmt.Sprintf("%s %s", sp.State, output.FormatDuration(end-sp.Enter)),
			}
			r.Segments = append(r.Segments, seg)
		}
		rows = append(rows, r)
		delete(drawn, x.Cookie)
	}
	// Stuck connections with no complete timeline in the recording (still
	// open, or older than it): a bar of their age in the stuck state.
	for _, s := range c.stuckOrder {
		if !drawn[s] {
			continue
		}
		si := c.stuck[s]
		longest = max(longest, si.Age)
		more := ""
		if si.AtLeast {
			more = " (at least)"
		}
		rows = append(rows, rowView{Y: float64(len(rows)) * rowH,
			Label:    fmt.Sprintf("%s > %s %s", si.Conn.Src, si.Conn.Dst, owner(&si.Conn)),
			Duration: output.FormatDuration(si.Age) + more, Stuck: "stuck " + si.State.String(),
			Segments: []segment{{X: labelW, W: math.Max(barW*math.Min(float64(si.Age)/float64(max(longest, 1)), 1), 1),
				State: si.State.String(), Color: Color(si.State),
				Title: fmt.Sprintf("%s for %s%s", si.State, output.FormatDuration(si.Age), more)}}})
	}
	return rows, float64(len(rows))*rowH + 10
}

func owner(c *timeline.Conn) string {
	if !c.OwnerKnown {
		return ""
	}
	return fmt.Sprintf("%d/%s", c.PID, event.CommBytes(&c.Comm))
}

func (c *Collector) lines() ([]lineView, uint64, string, string) {
	if len(c.series) == 0 {
		return nil, 0, "", ""
	}
	var top uint64
	for _, s := range c.series {
		for _, n := range s.Counts {
			top = max(top, n)
		}
	}
	first, last := c.series[0].TS, c.series[len(c.series)-1].TS
	span := max(last.Sub(first), time.Second)
	var out []lineView
	for st := range event.NumStates {
		var pts []byte
		var any bool
		for _, s := range c.series {
			n := s.Counts[st]
			any = any || n > 0
			x := 40 + (chartW*2-60)*float64(s.TS.Sub(first))/float64(span)
			y := chartH - 20 - (chartH-40)*float64(n)/float64(max(top, 1))
			pts = fmt.Appendf(pts, "%.1f,%.1f ", x, y)
		}
		if any {
			out = append(out, lineView{State: event.State(st).String(), Color: Color(event.State(st)),
				Points: string(pts), Last: c.series[len(c.series)-1].Counts[st]})
		}
	}
	return out, top, first.UTC().Format("15:04:05"), last.UTC().Format("15:04:05")
}

// Render writes the page.
func (c *Collector) Render(w io.Writer, title string) error {
	return pageTemplate.Execute(w, c.view(title))
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
.hists{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:16px}
figure{margin:0;border:1px solid #ddd;padding:8px;border-radius:4px}
figcaption{font-weight:600}
.q{font:12px monospace;color:#555}
svg text{font:10px monospace;fill:#333}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}
</style></head><body>
<h1>{{.Title}}</h1>
<p id="summary">{{.Transitions}} transitions, {{.Connections}} connections, {{.Stuck}} stuck{{if .Since}}; {{.Since}} to {{.Until}}{{end}}.</p>

<h2>Dwell time per state</h2>
<section id="histograms" class="hists">
{{range .Hists}}<figure>
<figcaption>{{.State}}</figcaption>
<div class="q">count {{.Count}} · min {{.Min}} · p50 {{.P50}} · p90 {{.P90}} · p99 {{.P99}} · max {{.Max}}</div>
<svg class="histogram" data-state="{{.State}}" width="420" height="160" viewBox="0 0 420 160" role="img" aria-label="{{.State}} dwell histogram">
{{$c := .Color}}{{range .Bars}}<rect class="bar" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="{{$c}}"><title>{{.Label}}: {{.Count}}</title></rect>
{{end}}<line x1="10" y1="140" x2="410" y2="140" stroke="#888"/>
{{with index .Bars 0}}<text x="10" y="154">{{.Label}}</text>{{end}}{{with .Last}}<text x="{{.X}}" y="154">{{.Label}}</text>{{end}}
</svg></figure>
{{else}}<p>No completed dwell times in this recording.</p>
{{end}}</section>

<h2>Slowest and stuck connections</h2>
<section id="waterfall">
<div class="legend">{{range .Legend}}<span><i style="background:{{.Color}}"></i>{{.State}}</span>{{end}} (lighter: inferred, e.g. TIME_WAIT)</div>
{{if .Rows}}<svg class="waterfall" width="1100" height="{{.WaterfallH}}" viewBox="0 0 1100 {{.WaterfallH}}">
{{range .Rows}}<g class="conn" transform="translate(0,{{.Y}})">
<text x="0" y="14">{{.Label}}</text>
{{range .Segments}}<rect class="seg" data-state="{{.State}}" x="{{.X}}" y="3" width="{{.W}}" height="14" fill="{{.Color}}"{{if .Inferred}} fill-opacity="0.4"{{end}}><title>{{.Title}}{{if .Inferred}} (inferred){{end}}</title></rect>
{{end}}<text x="895" y="14">{{.Duration}}{{if .Stuck}} · {{.Stuck}}{{end}}</text>
</g>
{{end}}</svg>{{else}}<p>No complete connections in this recording.</p>{{end}}
</section>

<h2>Sockets per state over time</h2>
<section id="states">
{{if .Lines}}<div class="legend">{{range .Lines}}<span><i style="background:{{.Color}}"></i>{{.State}} ({{.Last}})</span>{{end}}</div>
<svg class="states-series" width="840" height="160" viewBox="0 0 840 160">
<text x="0" y="24">{{.SeriesMax}}</text><text x="0" y="140">0</text>
<text x="40" y="156">{{.SeriesFrom}}</text><text x="760" y="156">{{.SeriesTo}}</text>
{{range .Lines}}<polyline class="series" data-state="{{.State}}" fill="none" stroke="{{.Color}}" stroke-width="2" points="{{.Points}}"/>
{{end}}</svg>{{else}}<p>No state counts in this recording (record with --interval).</p>{{end}}
</section>
</body></html>
`))
