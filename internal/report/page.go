package report

import (
	"html/template"
	"io"
	"strconv"
)

// Render writes the page.
func (c *Collector) Render(w io.Writer, title string) error {
	return pageTemplate.Execute(w, c.view(title))
}

// Where the axes' texts go, below and beside the plot area.
func (a axes) TickEnd() float64  { return a.B + 5 }
func (a axes) TickText() float64 { return a.B + 17 }
func (a axes) TopText() float64  { return a.T - 6 }
func (a axes) XLabelY() float64  { return a.H - 8 }
func (a axes) YLabelX() float64  { return 14 }
func (a axes) GridTo() float64   { return a.R }
func (a axes) YTickX() float64   { return a.L - 6 }
func (a axes) Right() float64    { return a.R + 8 }
func (a axes) PlotW() float64    { return a.R - a.L }
func (a axes) PlotH() float64    { return a.B - a.T }

var funcs = template.FuncMap{
	// f writes a coordinate with one decimal: enough for a screen, and the
	// page stays small.
	"f":   func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"add": func(a, b float64) float64 { return a + b },
}

var pageTemplate = template.Must(template.New("report").Funcs(funcs).Parse(`{{define "axes"}}<g class="axes">
{{range .XTicks}}<line x1="{{f .Pos}}" y1="{{f $.T}}" x2="{{f .Pos}}" y2="{{f $.TickEnd}}" stroke="#eee"/><text x="{{f .Pos}}" y="{{f $.TickText}}" text-anchor="middle">{{.Label}}</text>{{if $.XTicksTop}}<text x="{{f .Pos}}" y="{{f $.TopText}}" text-anchor="middle">{{.Label}}</text>{{end}}
{{end}}{{range .YTicks}}<line x1="{{f $.YTickX}}" y1="{{f .Pos}}" x2="{{f $.GridTo}}" y2="{{f .Pos}}" stroke="#eee"/><text x="{{f (add $.YTickX -2)}}" y="{{f (add .Pos 3)}}" text-anchor="end">{{.Label}}</text>
{{end}}<line x1="{{f .L}}" y1="{{f .B}}" x2="{{f .R}}" y2="{{f .B}}" stroke="#888"/><line x1="{{f .L}}" y1="{{f .T}}" x2="{{f .L}}" y2="{{f .B}}" stroke="#888"/>
<text class="axis-label x" x="{{f .MidX}}" y="{{f .XLabelY}}" text-anchor="middle">{{.XLabel}}</text>
<text class="axis-label y" transform="translate({{f .YLabelX}},{{f .MidY}}) rotate(-90)" text-anchor="middle">{{.YLabel}}</text>
</g>{{end}}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:30px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(450px,1fr));gap:14px}
figure{margin:0;border:1px solid #ddd;padding:8px;border-radius:4px}
figcaption{font-weight:600}
.q,.note{font:12px monospace;color:#555}
.note{margin:4px 0 8px}
svg text{font:10px monospace;fill:#333}
svg text.axis-label{font:11px system-ui,sans-serif;fill:#555}
svg text.count{fill:#222}
svg text.stuck{fill:#c62828;font-weight:bold}
.band{fill:transparent}.band:hover{fill:rgba(0,0,0,.08)}
.conn:hover{background:#f4f4f4}.conn:hover text{fill:#000}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 10px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{border-bottom:1px solid #ccc}
.owners{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
.owners figure div{display:flex;gap:16px;flex-wrap:wrap}
.stuckcell{color:#c62828;font-weight:600}
ul.stuck li{color:#c62828}.open-stays{color:#8d6e63}
</style></head><body>
<h1>{{.Title}}</h1>
<p id="summary">This recording holds {{.Holds}}{{if .Since}}, {{.Since}} to {{.Until}}{{end}}. Hover any bar, step or row for its details.</p>

<h2>Verdict</h2>
<section id="verdict">
{{with .Verdict}}{{if .Stuck}}<p><b>Stuck</b> (held past the --stuck limit, grouped by holder):</p>
<ul class="stuck">{{range .Stuck}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>Nothing was reported stuck.</p>{{end}}
{{if .Open}}<p><b>Still open when the recording ended</b> (by state and holder; the histograms below leave these stays out):</p>
<ul class="open">{{range .Open}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p class="lost">{{.Lost}}</p>{{end}}
</section>

<h2>Who holds the troubled states</h2>
<section id="owners">
{{if .Owners}}<p class="note">Per state, the processes and remote hosts with the most stays in it: stays from connection records, and stuck reports of sockets not closed yet (a SYN_RECV row for a listener's half-open pile counts each handshake). Stuck: reported held past the --stuck limit. Longest: the longest stay seen.</p>
<div class="owners">{{range .Owners}}<figure class="owner-table" data-state="{{.State}}">
<figcaption style="color:{{.Color}}">{{.State}}: {{.Stays}} stays</figcaption>
<div><table><tr><th>process (pid/comm)</th><th>stays</th><th>stuck</th><th>longest</th></tr>
{{range .Owners}}<tr><td>{{.Name}}</td><td class="n">{{.Stays}}</td><td class="n{{if .Stuck}} stuckcell{{end}}">{{.Stuck}}</td><td class="n">{{if .LongestAtLeast}}≥{{end}}{{.Longest}}</td></tr>
{{end}}{{if .More}}<tr><td colspan="4">and {{.More}} more</td></tr>{{end}}</table>
<table><tr><th>remote host</th><th>stays</th><th>stuck</th><th>longest</th></tr>
{{range .Remotes}}<tr><td>{{.Name}}</td><td class="n">{{.Stays}}</td><td class="n{{if .Stuck}} stuckcell{{end}}">{{.Stuck}}</td><td class="n">{{if .LongestAtLeast}}≥{{end}}{{.Longest}}</td></tr>
{{end}}</table></div></figure>
{{end}}</div>{{else}}<p>No stays in CLOSE_WAIT, SYN_SENT, SYN_RECV, FIN_WAIT2 or TIME_WAIT in this recording.</p>{{end}}
</section>

<h2>When the longest and the stuck connections lived</h2>
<section id="waterfall">
{{with .Waterfall}}{{if .Rows}}<p class="note">Drawn one by one: the {{.Longest}} longest of {{.All}} connections, longest first, and the stuck ones ({{.StuckShown}} of {{.StuckAll}} shown{{if .StuckHidden}}; the {{.StuckHidden}} others are counted in the owners table{{end}}); the other {{.Rest}} connections are not drawn one by one: the strip at the top counts every connection alive in each slice of time{{if .P50}}, and their durations have p50 {{.P50}}, p99 {{.P99}}{{end}}. Red outline: the stay reported stuck.</p>
<div class="legend">{{range .Legend}}<span><i style="background:{{.Color}}"></i>{{.State}}</span>{{end}} (lighter: inferred, e.g. TIME_WAIT)</div>
<svg class="chart waterfall" width="{{f .W}}" height="{{f .H}}" viewBox="0 0 {{f .W}} {{f .H}}" role="img" aria-label="waterfall of the longest and stuck connections">
{{template "axes" .}}
<text x="24" y="{{f (add .T 30)}}">{{.StripLabel}}</text>
{{range .Strip}}<rect class="strip" x="{{f .X}}" y="{{f .Y}}" width="{{f .W}}" height="{{f .H}}" fill="#90a4ae"><title>{{.Title}}</title></rect>{{end}}
{{$a := .}}{{range .Rows}}<g class="conn{{if .Stuck}} stuck{{end}}">
<text x="24" y="{{f (add .Y 14)}}"><title>{{.Title}}</title>{{.Label}}</text>
{{$y := .Y}}{{range .Segments}}<rect class="seg" data-state="{{.State}}" x="{{f .X}}" y="{{f (add $y 4)}}" width="{{f .W}}" height="14" fill="{{.Color}}"{{if .Inferred}} fill-opacity="0.4"{{end}}><title>{{.Title}}</title></rect>{{end}}
{{with .Mark}}<rect class="stuck-mark" x="{{f (add .X -1)}}" y="{{f (add $y 2)}}" width="{{f (add .W 2)}}" height="18" fill="none" stroke="#c62828" stroke-width="2"><title>{{.Title}}</title></rect>{{end}}
<text x="{{f $a.Right}}" y="{{f (add .Y 14)}}">{{.Duration}}</text>{{if .Stuck}}<text class="stuck" x="{{f (add $a.Right 90)}}" y="{{f (add .Y 14)}}">⚠ {{.Stuck}}</text>{{end}}
</g>
{{end}}</svg>
{{range .HalfOpen}}<p class="note">Half-open pile: {{.}}</p>{{end}}
{{else}}<p>No complete connections in this recording.</p>{{end}}{{end}}
</section>

<h2>Dwell time per state</h2>
<p class="note">How long sockets stayed in each state before leaving it. Bars are powers of two on a log time axis; the dashed lines are the median (p50) and p99.</p>
<section id="histograms" class="grid">
{{range .Hists}}<figure>
<figcaption style="color:{{.Color}}">{{.State}}</figcaption>
<div class="q">count {{.Count}} · min {{.Min}} · p50 {{.P50}} · p90 {{.P90}} · p99 {{.P99}} · max {{.Max}}</div>
{{if .Open}}<div class="q open-stays">+ {{.Open}} stays still open at the end, not counted here (the longest so far {{.OpenLongest}})</div>{{end}}
<svg class="chart histogram" data-state="{{.State}}" width="{{f .W}}" height="{{f .H}}" viewBox="0 0 {{f .W}} {{f .H}}" role="img" aria-label="{{.State}} dwell histogram">
{{template "axes" .}}
{{$c := .Color}}{{$a := .}}{{range .Bars}}<rect class="bar" x="{{f .X}}" y="{{f .Y}}" width="{{f .W}}" height="{{f .H}}" fill="{{$c}}"><title>{{.Title}}</title></rect>{{if .ShowCount}}<text class="count" x="{{f (add .X (add .W 0))}}" y="{{f (add .Y -3)}}" text-anchor="end">{{.Count}}</text>{{end}}
{{end}}{{range .Markers}}<line class="marker" x1="{{f .X}}" y1="{{f $a.T}}" x2="{{f .X}}" y2="{{f $a.B}}" stroke="#222" stroke-dasharray="3 3"/><text x="{{f .X}}" y="{{f (add $a.T -4)}}" text-anchor="middle">{{.Label}}</text>
{{end}}</svg></figure>
{{else}}<p>No completed dwell times in this recording.</p>
{{end}}</section>
{{range .OpenOnly}}<p class="note open-stays">{{.}}</p>{{end}}

<h2>Sockets per state over time</h2>
<section id="states">
{{if .Series}}<p class="note">{{.SeriesSamples}} samples of the live count (one per --interval). Each sample is held until the next one (a step); nothing is drawn between samples that was not measured. Each state has its own count axis.</p>
<div class="grid">{{range .Series}}<figure>
<figcaption style="color:{{.Color}}">{{.State}}</figcaption>
<div class="q">peak {{.Peak}} · last {{.Last}}</div>
<svg class="chart states-series" data-state="{{.State}}" width="{{f .W}}" height="{{f .H}}" viewBox="0 0 {{f .W}} {{f .H}}" role="img" aria-label="{{.State}} sockets over time">
{{template "axes" .}}
<path class="series" data-state="{{.State}}" d="{{.Path}}" fill="none" stroke="{{.Color}}" stroke-width="1.5"/>
{{$c := .Color}}{{range .Points}}<circle class="sample" cx="{{f .X}}" cy="{{f .Y}}" r="2.2" fill="{{$c}}"><title>{{.Title}}</title></circle>{{end}}
{{$a := .}}{{range .Bands}}<rect class="band" x="{{f .X}}" y="{{f $a.T}}" width="{{f .W}}" height="{{f $a.PlotH}}"><title>{{.Title}}</title></rect>{{end}}
</svg></figure>
{{end}}</div>{{else}}<p>No state counts in this recording (record with --interval).</p>{{end}}
</section>

<h2>Listener queues over time</h2>
<section id="listeners">
{{if .Listeners}}<p class="note">Each listener's accept queue (connections waiting for accept()), its limit (dashed), and its half-open handshakes, as sampled with each states record; {{.ListenersShown}} of {{.ListenersAll}} listeners, the busiest first.</p>
<div class="legend"><span><i style="background:#1565c0"></i>accept queue</span><span><i style="background:#ef6c00"></i>half-open</span><span><i style="background:#999"></i>accept queue limit</span></div>
<div class="grid">{{range .Listeners}}<figure>
<figcaption>{{.Name}} {{.Owner}}</figcaption>
<div class="q">peak accept queue {{.PeakQueue}} of {{.QueueMax}}{{if .Full}} (full: SYNs dropped or delayed){{end}} · peak half-open {{.PeakHalfOpen}} · SYN-ACK retransmits {{.SynAckRetrans}}</div>
<svg class="chart listener" width="{{f .W}}" height="{{f .H}}" viewBox="0 0 {{f .W}} {{f .H}}" role="img" aria-label="listener {{.Name}} queues">
{{template "axes" .}}
<path d="{{.MaxPath}}" fill="none" stroke="#999" stroke-dasharray="4 3"/>
<path class="series accept-queue" d="{{.Queue}}" fill="none" stroke="#1565c0" stroke-width="1.5"/>
<path class="series half-open" d="{{.HalfOpenPath}}" fill="none" stroke="#ef6c00" stroke-width="1.5"/>
{{$a := .}}{{range .Bands}}<rect class="band" x="{{f .X}}" y="{{f $a.T}}" width="{{f .W}}" height="{{f $a.PlotH}}"><title>{{.Title}}</title></rect>{{end}}
</svg></figure>
{{end}}</div>{{else}}<p>No listener records in this recording (they come with --interval).</p>{{end}}
</section>
<script>addEventListener("load",function(){document.body.offsetHeight;document.body.setAttribute("data-load-ms",Math.round(performance.now()))})</script>
</body></html>
`))
