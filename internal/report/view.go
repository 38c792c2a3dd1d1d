package report

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
)

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

// axes are a chart's frame: the plot area, ticks and axis labels. Every
// chart has both labels (the tests check).
type axes struct {
	W, H           float64 // the SVG
	L, T, R, B     float64 // the plot area's edges
	XTicks, YTicks []tick
	XLabel, YLabel string
	XTicksTop      bool // also label the x ticks above the plot
}

func (a axes) MidX() float64 { return (a.L + a.R) / 2 }
func (a axes) MidY() float64 { return (a.T + a.B) / 2 }

// countAxis sets linear count ticks up to top; it returns the scale's
// maximum.
func (a *axes) countAxis(top uint64) float64 {
	ts := countTicks(top, 4)
	peak := float64(ts[len(ts)-1])
	for _, v := range ts {
		a.YTicks = append(a.YTicks, tick{Pos: a.y(float64(v), peak), Label: fmt.Sprint(v)})
	}
	return peak
}

func (a axes) y(v, peak float64) float64 { return a.B - (a.B-a.T)*v/math.Max(peak, 1) }

type bar struct {
	X, Y, W, H float64
	Count      uint64
	ShowCount  bool
	Title      string
}

type marker struct {
	X     float64
	Label string
}

type histView struct {
	axes
	State                   string
	Color                   string
	Count                   uint64
	P50, P90, P99, Min, Max string
	Bars                    []bar
	Markers                 []marker
	// Open: stays the recording ended in, which the histogram leaves
	// out; OpenLongest: the longest of them so far.
	Open        uint64
	OpenLongest string
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
	Title    string
	Duration string
	Stuck    string
	Segments []segment
	Mark     *segment // the stuck stay, outlined
}

type point struct {
	X, Y  float64
	Title string
}

type band struct {
	X, W  float64
	Title string
}

type seriesView struct {
	axes
	State  string
	Color  string
	Path   string
	Points []point // drawn when few
	Bands  []band  // hover targets, one per sample (or per few)
	Last   uint64
	Peak   uint64
}

type stripBin struct {
	X, W, Y, H float64
	Title      string
}

type waterfallView struct {
	axes
	Rows        []rowView
	Strip       []stripBin
	StripLabel  string
	Longest     int
	All         uint64
	StuckShown  int
	StuckAll    int
	Rest        uint64
	P50, P99    string
	Legend      []legendItem
	HalfOpen    []string
	StuckHidden int
}

type legendItem struct{ State, Color string }

type ownerRow struct {
	Name           string
	Stays, Stuck   uint64
	Longest        string
	LongestAtLeast bool
}

type ownerTable struct {
	State   string
	Color   string
	Stays   uint64
	Owners  []ownerRow
	Remotes []ownerRow
	More    int // owners not shown
}

type listenerView struct {
	axes
	Name                              string
	Owner                             string
	PeakQueue, QueueMax, PeakHalfOpen uint32
	SynAckRetrans                     uint32
	Queue, HalfOpenPath, MaxPath      string
	Bands                             []band
	Full                              bool
}

type page struct {
	Title          string
	Holds          string
	Verdict        verdictView
	OpenOnly       []string // states with open stays and no completed one
	Since, Until   string
	Transitions    uint64
	Connections    uint64
	Stuck          int
	Hists          []histView
	Series         []seriesView
	SeriesSamples  int
	Owners         []ownerTable
	Waterfall      waterfallView
	Listeners      []listenerView
	ListenersAll   int
	ListenersShown int
}

// MaxListeners bounds the listener charts: the busiest first.
const MaxListeners = 12

func (c *Collector) view(title string) page {
	p := page{Title: title, Transitions: c.stats.transitions, Connections: c.stats.connections, Stuck: len(c.stuck) + len(c.halfOpen)}
	if !c.since.IsZero() {
		p.Since, p.Until = c.since.UTC().Format(time.RFC3339), c.until.UTC().Format(time.RFC3339)
	}
	p.Holds, p.Verdict = c.holds(), c.verdict()
	for st := range c.hists {
		h := &c.hists[st]
		o := c.openStays[st]
		if h.Count() == 0 {
			if o.n > 0 {
				p.OpenOnly = append(p.OpenOnly, fmt.Sprintf("%s: %d stays, all still open at the end (the longest so far %s)",
					event.State(st), o.n, output.FormatDuration(o.longest)))
			}
			continue
		}
		hv := histogramView(event.State(st), h)
		if o.n > 0 {
			hv.Open, hv.OpenLongest = o.n, output.FormatDuration(o.longest)
		}
		p.Hists = append(p.Hists, hv)
	}
	p.Series, p.SeriesSamples = c.seriesViews()
	p.Owners = c.ownerTables()
	p.Waterfall = c.waterfall()
	p.Listeners, p.ListenersAll = c.listenerViews()
	p.ListenersShown = len(p.Listeners)
	return p
}

// histogramView folds the log-linear buckets into powers of two (bar k
// holds [2^(k-1), 2^k) ns) on a log time axis.
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
	v.axes = axes{W: 440, H: 210, L: 52, T: 22, R: 428, B: 160,
		XLabel: "time in " + st.String() + " (log scale)", YLabel: "stays"}
	// Widen narrow ranges so the axis shows a few powers of two.
	for hi-lo < 5 && (lo > 1 || hi < 64) {
		if lo > 1 {
			lo--
		}
		if hi < 64 { // bar 64 holds [2^63, 2^64): the last
			hi++
		}
	}
	from := float64(lo - 1) // log2 of the axis's left edge
	n := float64(hi - lo + 1)
	xOf := func(log2 float64) float64 { return v.L + (v.R-v.L)*(log2-from)/n }
	top := v.countAxis(max(peak, peak+peak/6+1)) // room for the counts above the bars (unless that wraps)
	w := (v.R - v.L) / n
	total := float64(h.Count())
	for k := lo; k <= hi; k++ {
		if pow[k] == 0 {
			continue
		}
		bh := (v.B - v.T) * float64(pow[k]) / top
		var a, b uint64 = 0, 1
		if k > 0 {
			a, b = 1<<(k-1), 1<<k
		}
		if k == 64 { // 1<<64 is 0
			b = math.MaxUint64
		}
		v.Bars = append(v.Bars, bar{X: xOf(float64(k-1)) + 0.5, Y: v.B - bh, W: math.Max(w-1, 1), H: bh,
			Count: pow[k], ShowCount: w >= 14 || pow[k] == peak,
			Title: fmt.Sprintf("%s to %s: %d stays (%.1f%%)", output.FormatDuration(a), output.FormatDuration(b),
				pow[k], 100*float64(pow[k])/total)})
	}
	edge := math.Exp2(from)
	for _, d := range durationTicks(edge, math.Exp2(float64(hi))) {
		v.XTicks = append(v.XTicks, tick{Pos: xOf(math.Log2(float64(d))), Label: durationLabel(d)})
	}
	for _, q := range []struct {
		name string
		at   float64
	}{{"p50", .5}, {"p99", .99}} {
		if d := h.Quantile(q.at); d > 0 {
			v.Markers = append(v.Markers, marker{X: xOf(math.Log2(float64(d))), Label: q.name})
		}
	}
	return v
}

// seriesViews draws the state counts as what they are, samples: a step
// per sample held until the next one, a dot on each when they are few, and
// a hover band per sample. One small chart per state, each with its own
// count axis, on a shared time axis.
func (c *Collector) seriesViews() ([]seriesView, int) {
	if len(c.series) == 0 {
		return nil, 0
	}
	first, last := c.series[0].TS, c.series[len(c.series)-1].TS
	if !last.After(first) {
		last = first.Add(time.Second)
	}
	stride := max(1, len(c.series)/400) // hover bands: at most ~400 per chart
	var out []seriesView
	for st := range event.NumStates {
		var peak uint64
		for _, s := range c.series {
			peak = max(peak, s.Counts[st])
		}
		if peak == 0 {
			continue
		}
		v := seriesView{State: event.State(st).String(), Color: Color(event.State(st)), Peak: peak,
			Last: c.series[len(c.series)-1].Counts[st]}
		v.axes = axes{W: 440, H: 190, L: 52, T: 14, R: 428, B: 140, XLabel: "time (UTC)", YLabel: "sockets"}
		ts := timeScale{from: first, to: last, x0: v.L, w: v.R - v.L}
		v.XTicks = ts.ticks(5)
		top := v.countAxis(peak)
		var path strings.Builder
		for i, s := range c.series {
			x, y := ts.x(s.TS), v.y(float64(s.Counts[st]), top)
			if i == 0 {
				fmt.Fprintf(&path, "M%.1f %.1f", x, y)
			} else {
				fmt.Fprintf(&path, "H%.1fV%.1f", x, y)
			}
			title := fmt.Sprintf("%s: %d %s", clock(s.TS), s.Counts[st], v.State)
			if len(c.series) <= 120 {
				v.Points = append(v.Points, point{X: x, Y: y, Title: title})
			}
			if i%stride == 0 {
				next := last
				if i+stride < len(c.series) {
					next = c.series[i+stride].TS
				}
				v.Bands = append(v.Bands, band{X: x, W: math.Max(ts.x(next)-x, 1), Title: title})
			}
		}
		v.Path = path.String()
		out = append(out, v)
	}
	return out, len(c.series)
}

// ownerTables: per troubled state, the processes and remote hosts with the
// most stays in it. A stuck record counts as a stay unless its connection's
// record already did.
func (c *Collector) ownerTables() []ownerTable {
	for _, ck := range c.stuckOrder {
		si := c.stuck[ck]
		if !troubled(si.State) {
			continue
		}
		rows, seen := c.stays[stayKey{ck, si.State}]
		if !seen {
			rows = stayRows{owner: c.row(c.byOwner[si.State], si.Owner), remote: c.remoteRow(si.State, si.Conn.Dst)}
			rows.owner.Stays++
			rows.remote.Stays++
			c.stays[stayKey{ck, si.State}] = rows
		}
		for _, t := range []*tally{rows.owner, rows.remote} {
			t.Stuck++
			if si.Age > t.Longest {
				t.Longest, t.LongestAtLeast = si.Age, si.AtLeast
			}
		}
	}
	for _, si := range c.halfOpen {
		t := c.row(c.byOwner[event.SynRecv], si.Owner)
		t.Stays += uint64(si.HalfOpen)
		t.Stuck += uint64(si.HalfOpen)
		t.Longest = max(t.Longest, si.Age)
	}
	var out []ownerTable
	for _, st := range event.Troubled {
		if len(c.byOwner[st]) == 0 && len(c.byRemote[st]) == 0 {
			continue
		}
		tb := ownerTable{State: st.String(), Color: Color(st)}
		var owners, remotes []*tally
		for _, t := range c.byOwner[st] {
			tb.Stays += t.Stays
			owners = append(owners, t)
		}
		for _, t := range c.byRemote[st] {
			remotes = append(remotes, t)
		}
		const top = 5
		tb.Owners, tb.More = topRows(owners, top, nil)
		tb.Remotes, _ = topRows(remotes, top, func(t *tally) string {
			if len(t.ports) == 1 {
				for p := range t.ports {
					return fmt.Sprintf("%s port %d", t.Name, p)
				}
			}
			if len(t.ports) > 3 {
				return t.Name + " (many ports)"
			}
			return fmt.Sprintf("%s (%d ports)", t.Name, len(t.ports))
		})
		out = append(out, tb)
	}
	return out
}

func topRows(ts []*tally, n int, name func(*tally) string) ([]ownerRow, int) {
	slices.SortFunc(ts, func(a, b *tally) int {
		return cmp.Or(cmp.Compare(b.Stuck, a.Stuck), cmp.Compare(b.Stays, a.Stays),
			cmp.Compare(b.Longest, a.Longest), strings.Compare(a.Name, b.Name))
	})
	var out []ownerRow
	for _, t := range ts[:min(n, len(ts))] {
		r := ownerRow{Name: t.Name, Stays: t.Stays, Stuck: t.Stuck, Longest: "n/a",
			LongestAtLeast: t.LongestAtLeast}
		if t.Longest > 0 { // 0: no stay's length known (TIME_WAIT is inferred)
			r.Longest = output.FormatDuration(t.Longest)
		}
		if name != nil {
			r.Name = name(t)
		}
		out = append(out, r)
	}
	return out, max(0, len(ts)-n)
}

// waterfall draws the longest connections and the stuck ones where they
// lived on the recording's wall-clock axis, and every connection in an
// aggregate strip above them (how many lived in each slice of time).
func (c *Collector) waterfall() waterfallView {
	c.trim()
	v := waterfallView{All: c.stats.connections, StuckAll: len(c.stuck)}
	v.axes = axes{W: 1160, L: 330, R: 930, XLabel: "time (UTC): when each connection lived",
		YLabel: "connections", XTicksTop: true}
	// The stuck ones without a connection record, the most aged first.
	inConns := map[uint64]bool{}
	for _, x := range c.conns {
		inConns[x.Cookie] = true
	}
	var loose []stuckInfo
	for _, ck := range c.stuckOrder {
		if !inConns[ck] {
			loose = append(loose, c.stuck[ck])
		}
	}
	slices.SortFunc(loose, func(a, b stuckInfo) int { return cmp.Compare(b.Age, a.Age) })
	// The connections: the Slowest longest, and the stuck ones up to the cap.
	var rows []conn
	stuckRows := 0
	for i, x := range c.conns {
		_, stuck := c.stuck[x.Cookie]
		if i < Slowest || (stuck && stuckRows < MaxStuckRows) {
			rows = append(rows, x)
			if stuck {
				stuckRows++
			}
		}
	}
	looseShown := loose[:min(len(loose), max(0, MaxStuckRows-stuckRows))]
	v.StuckShown = stuckRows + len(looseShown)
	v.StuckHidden = len(c.stuck) - v.StuckShown
	// The time axis: every connection, and every stuck stay.
	var lo, hi event.Mono = math.MaxUint64, 0
	for _, l := range c.lived {
		lo, hi = min(lo, l[0]), max(hi, l[1])
	}
	for _, si := range c.stuck {
		end := c.clock.Mono(si.TS)
		lo, hi = min(lo, end-event.Mono(min(si.Age, uint64(end)))), max(hi, end)
	}
	if hi == 0 {
		return v
	}
	if hi <= lo {
		hi = lo + 1e9
	}
	ts := timeScale{from: c.clock.Wall(lo), to: c.clock.Wall(hi), x0: v.L, w: v.R - v.L}
	x := func(ns event.Mono) float64 { return ts.x(c.clock.Wall(ns)) }
	const stripH, rowH = 46.0, 22.0
	v.T = 40
	// The aggregate strip: connections alive in each of 150 slices.
	const bins = 150
	var alive [bins]uint64
	span := float64(hi - lo)
	for _, l := range c.lived {
		a := int(float64(l[0]-lo) / span * bins)
		b := int(float64(l[1]-lo) / span * bins)
		for k := max(a, 0); k <= min(b, bins-1); k++ {
			alive[k]++
		}
	}
	var peak uint64
	for _, n := range alive {
		peak = max(peak, n)
	}
	bw := (v.R - v.L) / bins
	for k, n := range alive {
		if n == 0 {
			continue
		}
		h := (stripH - 6) * float64(n) / float64(max(peak, 1))
		from := c.clock.Wall(lo + event.Mono(float64(k)*span/bins))
		v.Strip = append(v.Strip, stripBin{X: v.L + float64(k)*bw, W: math.Max(bw-0.3, 0.5), Y: v.T + stripH - h, H: h,
			Title: fmt.Sprintf("%s: %d connections alive (of all %d)", clock(from), n, len(c.lived))})
	}
	v.StripLabel = fmt.Sprintf("all %d alive, peak %d", len(c.lived), peak)
	seen := map[event.State]bool{}
	y := v.T + stripH + 8
	for _, x0 := range rows {
		r := c.connRow(&x0, x, &ts)
		r.Y = y
		y += rowH
		v.Rows = append(v.Rows, r)
		for _, sp := range x0.States {
			seen[sp.State] = true
		}
	}
	for _, si := range looseShown {
		end := c.clock.Mono(si.TS)
		start := end - event.Mono(min(si.Age, uint64(end)))
		more := ""
		if si.AtLeast {
			more = " at least"
		}
		seg := segment{X: x(start), W: math.Max(x(end)-x(start), 1), State: si.State.String(), Color: Color(si.State),
			Title: fmt.Sprintf("%s from %s to %s (%s%s, still held when reported)", si.State, clock(c.clock.Wall(start)),
				clock(si.TS), output.FormatDuration(si.Age), more)}
		seen[si.State] = true
		r := rowView{Y: y, Label: fmt.Sprintf("%s > %s %s", si.Conn.Src, si.Conn.Dst, si.Owner),
			Title:    stuckTitle(&si),
			Duration: output.FormatDuration(si.Age) + more, Stuck: "stuck " + si.State.String(),
			Segments: []segment{seg}}
		r.Mark = &seg
		y += rowH
		v.Rows = append(v.Rows, r)
	}
	v.B = y + 4
	v.H = v.B + 46
	v.XTicks = ts.ticks(8)
	for st := range event.NumStates {
		if seen[event.State(st)] && event.State(st) != event.Close {
			v.Legend = append(v.Legend, legendItem{event.State(st).String(), Color(event.State(st))})
		}
	}
	v.Longest = min(len(c.conns), Slowest)
	v.Rest = v.All - min(v.All, uint64(len(rows)))
	if c.durations.Count() > 0 {
		v.P50, v.P99 = output.FormatDuration(c.durations.Quantile(.5)), output.FormatDuration(c.durations.Quantile(.99))
	}
	for _, si := range c.halfOpen {
		v.HalfOpen = append(v.HalfOpen, fmt.Sprintf("%s: %d half-open handshakes older than the limit at %s (oldest %s), listener %s",
			si.Conn.Src, si.HalfOpen, clock(si.TS), output.FormatDuration(si.Age), si.Owner))
	}
	return v
}

func (c *Collector) connRow(x0 *conn, x func(event.Mono) float64, ts *timeScale) rowView {
	tc := &x0.Conn
	r := rowView{Label: fmt.Sprintf("%s > %s %s", tc.Src, tc.Dst, ownerName(tc.OwnerKnown, tc.PID, &tc.Comm)),
		Duration: output.FormatDuration(tc.End.Since(tc.Start))}
	if tc.Open {
		r.Duration += " open"
	}
	var why []string
	if tc.Partial {
		why = append(why, "partial")
	}
	if tc.Evicted {
		why = append(why, "evicted")
	}
	if tc.Ending.Retrans > 0 {
		why = append(why, fmt.Sprintf("%d retransmits", tc.Ending.Retrans))
	}
	if tc.Ending.Reset != 0 {
		why = append(why, "reset "+event.ResetName(tc.Ending.Reset))
	}
	r.Title = fmt.Sprintf("cookie %d, %s to %s (%s) %s", tc.Cookie, clock(c.clock.Wall(tc.Start)), clock(c.clock.Wall(tc.End)),
		r.Duration, strings.Join(why, ", "))
	si, stuck := c.stuck[tc.Cookie]
	if stuck {
		r.Stuck = "stuck " + si.State.String()
		r.Title += "; " + stuckTitle(&si)
	}
	for j, sp := range x0.States {
		if sp.Enter == 0 || sp.State == event.Close {
			continue
		}
		end := spanEnd(tc, x0.States, j)
		if end < sp.Enter {
			continue
		}
		more := ""
		if sp.Inferred {
			more = " (inferred)"
		}
		if j == len(x0.States)-1 && tc.Open {
			more += " (still in it)"
		}
		seg := segment{X: x(sp.Enter), W: math.Max(x(end)-x(sp.Enter), 1), State: sp.State.String(),
			Color: Color(sp.State), Inferred: sp.Inferred,
			Title: fmt.Sprintf("%s from %s for %s%s", sp.State, clock(c.clock.Wall(sp.Enter)), output.FormatDuration(end.Since(sp.Enter)), more)}
		r.Segments = append(r.Segments, seg)
		if stuck && sp.State == si.State {
			m := seg
			r.Mark = &m
		}
	}
	return r
}

func stuckTitle(si *stuckInfo) string {
	s := fmt.Sprintf("stuck in %s: %s", si.State, output.FormatDuration(si.Age))
	if si.AtLeast {
		s += " at least"
	}
	s += " at " + clock(si.TS) + ", held by " + si.Owner
	if si.Holders > 1 {
		s += fmt.Sprintf(" and %d more", si.Holders-1)
	}
	if si.Orphan {
		s = fmt.Sprintf("stuck in %s: %s at %s, held by no process (orphan, or not accepted yet)", si.State,
			output.FormatDuration(si.Age), clock(si.TS))
	}
	if si.Creator != "" {
		s += ", created by " + si.Creator
	}
	return s
}

// listenerViews: each listener's accept queue and half-open handshakes over
// time, the busiest first.
func (c *Collector) listenerViews() ([]listenerView, int) {
	all := make([]*listenerSeries, 0, len(c.listenerOrder))
	for _, k := range c.listenerOrder {
		all = append(all, c.listeners[k])
	}
	peak := func(ls *listenerSeries) (q, h uint32) {
		for _, s := range ls.samples {
			q, h = max(q, s.AcceptQueue), max(h, s.HalfOpen)
		}
		return
	}
	slices.SortStableFunc(all, func(a, b *listenerSeries) int {
		qa, ha := peak(a)
		qb, hb := peak(b)
		return cmp.Compare(qb+hb, qa+ha)
	})
	var first, last time.Time
	for _, ls := range all {
		for _, s := range ls.samples {
			if first.IsZero() || s.TS.Before(first) {
				first = s.TS
			}
			last = maxTime(last, s.TS)
		}
	}
	if !last.After(first) {
		last = first.Add(time.Second)
	}
	var out []listenerView
	for _, ls := range all[:min(len(all), MaxListeners)] {
		v := listenerView{Name: fmt.Sprintf("%s (netns %d)", ls.key.addr, ls.key.netns), Owner: ls.owner}
		v.PeakQueue, v.PeakHalfOpen = peak(ls)
		var top uint32
		for _, s := range ls.samples {
			v.QueueMax = max(v.QueueMax, s.AcceptMax)
			v.SynAckRetrans = max(v.SynAckRetrans, s.SynAckRetrans)
			top = max(top, s.AcceptQueue, s.HalfOpen, s.AcceptMax)
		}
		v.Full = v.QueueMax > 0 && v.PeakQueue >= v.QueueMax
		v.axes = axes{W: 560, H: 200, L: 52, T: 14, R: 548, B: 150, XLabel: "time (UTC)", YLabel: "sockets"}
		ts := timeScale{from: first, to: last, x0: v.L, w: v.R - v.L}
		v.XTicks = ts.ticks(6)
		scale := v.countAxis(uint64(top))
		var q, h, m strings.Builder
		stride := max(1, len(ls.samples)/400)
		for i, s := range ls.samples {
			xv := ts.x(s.TS)
			step := func(b *strings.Builder, val uint32) {
				yv := v.y(float64(val), scale)
				if i == 0 {
					fmt.Fprintf(b, "M%.1f %.1f", xv, yv)
				} else {
					fmt.Fprintf(b, "H%.1fV%.1f", xv, yv)
				}
			}
			step(&q, s.AcceptQueue)
			step(&h, s.HalfOpen)
			step(&m, s.AcceptMax)
			if i%stride == 0 {
				next := last
				if i+stride < len(ls.samples) {
					next = ls.samples[i+stride].TS
				}
				v.Bands = append(v.Bands, band{X: xv, W: math.Max(ts.x(next)-xv, 1),
					Title: fmt.Sprintf("%s: accept queue %d of %d, %d half-open, %d SYN-ACK retransmits so far",
						clock(s.TS), s.AcceptQueue, s.AcceptMax, s.HalfOpen, s.SynAckRetrans)})
			}
		}
		v.Queue, v.HalfOpenPath, v.MaxPath = q.String(), h.String(), m.String()
		out = append(out, v)
	}
	return out, len(all)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
