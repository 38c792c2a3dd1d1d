package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/recording"
)

// A recording with connections, stuck reports and state counts.
func sampleRecording(t testing.TB) []byte {
	b, err := os.ReadFile("../output/testdata/records.ndjson.golden")
	if err != nil {
		t.Fatal(err)
	}
	extra := `{"type":"states","ts":"2026-11-30T12:00:20Z","counts":{"ESTABLISHED":100,"TIME_WAIT":2500,"CLOSE_WAIT":9}}` + "\n" +
		`{"type":"states","ts":"2026-11-30T12:00:30Z","counts":{"ESTABLISHED":90,"TIME_WAIT":2800,"CLOSE_WAIT":12}}` + "\n"
	return append(b, extra...)
}

func render(t testing.TB) string { return renderRecording(t, sampleRecording(t)) }

func renderRecording(t testing.TB, rec []byte) string {
	c := NewCollector(recording.Clock)
	if _, err := recording.Replay(bytes.NewReader(rec), recording.Filter{}, c, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Render(&out, "test report"); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestRenderIsSelfContained(t *testing.T) {
	page := render(t)
	for _, want := range []string{
		`<svg class="chart histogram" data-state="CLOSE_WAIT"`, `<svg class="chart waterfall"`, `class="seg" data-state="TIME_WAIT"`,
		`fill-opacity="0.4"`, `<path class="series" data-state="TIME_WAIT"`, "stuck CLOSE_WAIT",
		`class="stuck-mark"`, `class="owner-table" data-state="CLOSE_WAIT"`, `class="chart listener"`,
		`class="series accept-queue"`, "0.0.0.0:8080 (netns 1) 812/nginx", "peak accept queue 129 of 128 (full",
		// The stuck CLOSE_WAIT of cookie 9: its last report found no
		// process holding it.
		"held by no process (orphan", "Half-open pile: 0.0.0.0:8080: 250 half-open",
		// Hover details.
		"<title>CLOSE_WAIT from 12:00:01.500 for 500ms (still in it)</title>",
		"<title>12:00:20.000: 2500 TIME_WAIT</title>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// No fetches: no src or href, no URL at all.
	if m := regexp.MustCompile(`(?i)(src=|href=|url\(|https?://)`).FindString(page); m != "" {
		t.Errorf("page refers to something outside itself: %q", m)
	}
}

// The page in a real browser: headless Chromium loads it, and the DOM it
// builds has the charts; a screenshot is kept as an artifact.
func TestRenderInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(render(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	chrome := func(extra ...string) []byte { return runChromium(t, bin, dir, page, extra...) }
	dom := string(chrome("--dump-dom"))
	for sel, min := range map[string]int{`class="chart histogram"`: 3, `class="seg"`: 5, `class="series"`: 3,
		`class="chart listener"`: 1, `class="owner-table"`: 2} {
		if n := strings.Count(dom, sel); n < min {
			t.Errorf("the browser's DOM has %d %s, want at least %d", n, sel, min)
		}
	}
	checkAxisLabels(t, dom)
	if loadMs(t, dom) < 0 {
		t.Error("the page's load script did not run")
	}
	shotDir := os.Getenv("TCPTRACE_ARTIFACTS")
	if shotDir == "" {
		shotDir = dir
	}
	shot := filepath.Join(shotDir, "report-screenshot.png")
	chrome("--screenshot=" + shot)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}

var (
	chartRE = regexp.MustCompile(`(?s)<svg class="chart ([^"]*)".*?</svg>`)
	xLabel  = regexp.MustCompile(`<text class="axis-label x"[^>]*>[^<]+</text>`)
	yLabel  = regexp.MustCompile(`<text class="axis-label y"[^>]*>[^<]+</text>`)
	tickRE  = regexp.MustCompile(`text-anchor="middle">[^<]+</text>`)
)

// checkAxisLabels: every chart has a labelled x and y axis, and x ticks.
func checkAxisLabels(t *testing.T, dom string) {
	t.Helper()
	charts := chartRE.FindAllStringSubmatch(dom, -1)
	if len(charts) == 0 {
		t.Fatal("no charts in the DOM")
	}
	for _, m := range charts {
		if !xLabel.MatchString(m[0]) || !yLabel.MatchString(m[0]) {
			t.Errorf("chart %q lacks an axis label", m[1])
		}
		if n := len(tickRE.FindAllString(m[0], -1)); n < 3 {
			t.Errorf("chart %q has %d labelled ticks", m[1], n)
		}
	}
	t.Logf("%d charts, each with both axis labels", len(charts))
}

var loadRE = regexp.MustCompile(`data-load-ms="(\d+)"`)

// loadMs reads the time from navigation to the load event that the page's
// script writes into the DOM; -1 when absent.
func loadMs(t *testing.T, dom string) int {
	m := loadRE.FindStringSubmatch(dom)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// The page leads with a verdict: what is stuck and by whom, what was
// still open at the end, what was lost; then who holds what, the
// waterfall, the histograms. A histogram of a state with open stays says
// so and counts them, and the header counts what the recording holds (a
// connections-only recording is not "0 transitions").
func TestVerdictFirst(t *testing.T) {
	var rec strings.Builder
	for i := range 3 {
		// A leak: three server sockets in CLOSE_WAIT, reported stuck, still
		// open when the recording ends.
		fmt.Fprintf(&rec, `{"type":"stuck","ts":"2026-12-01T10:00:40Z","state":"CLOSE_WAIT","age_ns":%d,"age_at_least":false,"cookie":%d,"netns":1,"family":"inet","saddr":"127.0.0.1","sport":9301,"daddr":"127.0.0.1","dport":%d,"pid":15120,"comm":"leakysrv","held":true}`+"\n",
			30_000_000_000+i, 100+i, 40000+i)
		fmt.Fprintf(&rec, `{"type":"connection","cookie":%d,"netns":1,"family":"inet","saddr":"127.0.0.1","sport":9301,"daddr":"127.0.0.1","dport":%d,"pid":15120,"comm":"leakysrv","start":"2026-12-01T10:00:00Z","end":"2026-12-01T10:05:00Z","open":true,"partial":false,"retransmits":0,"syn_retransmits":0,"states":[{"state":"SYN_RECV","ts":"2026-12-01T10:00:00Z","dwell_ns":20000,"inferred":true},{"state":"ESTABLISHED","ts":"2026-12-01T10:00:00.00002Z","dwell_ns":9999980000},{"state":"CLOSE_WAIT","ts":"2026-12-01T10:00:10Z","dwell_ns":290000000000}]}`+"\n",
			100+i, 40000+i)
	}
	// A short CLOSE_WAIT that ended, and lost records.
	rec.WriteString(`{"type":"connection","cookie":7,"netns":1,"family":"inet","saddr":"127.0.0.1","sport":9301,"daddr":"127.0.0.1","dport":41000,"pid":15120,"comm":"leakysrv","start":"2026-12-01T10:00:00Z","end":"2026-12-01T10:00:01Z","duration_ns":1000000000,"open":false,"partial":false,"retransmits":0,"syn_retransmits":0,"states":[{"state":"ESTABLISHED","ts":"2026-12-01T10:00:00Z","dwell_ns":500000000},{"state":"CLOSE_WAIT","ts":"2026-12-01T10:00:00.5Z","dwell_ns":8500000},{"state":"LAST_ACK","ts":"2026-12-01T10:00:00.5085Z","dwell_ns":40000},{"state":"CLOSE","ts":"2026-12-01T10:00:00.50854Z"}]}` + "\n")
	rec.WriteString(`{"type":"lost","ts":"2026-12-01T10:01:00Z","count":31,"ringbuf_full":0,"recursion":31,"decode_errors":0,"unread":0,"total":31}` + "\n")
	c := NewCollector(recording.Clock)
	s, err := recording.Replay(strings.NewReader(rec.String()), recording.Filter{}, c, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c.Recorded(s)
	var out bytes.Buffer
	if err := c.Render(&out, "verdict"); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	order := []string{`id="verdict"`, `id="owners"`, `id="waterfall"`, `id="histograms"`}
	for i := 1; i < len(order); i++ {
		if a, b := strings.Index(page, order[i-1]), strings.Index(page, order[i]); a < 0 || b < 0 || a > b {
			t.Errorf("%s does not come before %s", order[i-1], order[i])
		}
	}
	verdict := page[strings.Index(page, `id="verdict"`):strings.Index(page, `id="owners"`)]
	for _, want := range []string{"15120/leakysrv: 3 in CLOSE_WAIT on 127.0.0.1:9301, all still there at the end, oldest 4m50s",
		"3 in CLOSE_WAIT held by 15120/leakysrv", "lost 31 transitions"} {
		if !strings.Contains(verdict, want) {
			t.Errorf("the verdict lacks %q:\n%s", want, verdict)
		}
	}
	if !strings.Contains(page, "+ 3 stays still open at the end, not counted here (the longest so far 4m50s)") {
		t.Errorf("the CLOSE_WAIT histogram does not count its open stays")
	}
	if m := regexp.MustCompile(`This recording holds [^.<]*`).FindString(page); m == "" || strings.Contains(m, "0 transitions") ||
		!strings.Contains(m, "4 connections") || !strings.Contains(m, "3 stuck reports") || !strings.Contains(m, "31 lost transitions") {
		t.Errorf("header %q", m)
	}
}

// A run whose kernel table was full lost parts of timelines that no lost
// record counts (how many transitions is not known): the stats record's
// reclaimed sockets. The verdict says so and is not clean.
func TestVerdictNamesReclaimedSockets(t *testing.T) {
	rec := `{"type":"connection","cookie":7,"netns":1,"family":"inet","saddr":"127.0.0.1","sport":9301,"daddr":"127.0.0.1","dport":41000,"start":"2026-12-01T10:00:00Z","end":"2026-12-01T10:00:01Z","duration_ns":1000000000,"open":false,"partial":true,"retransmits":0,"syn_retransmits":0,"states":[{"state":"ESTABLISHED","ts":"2026-12-01T10:00:00Z","dwell_ns":1000000000},{"state":"CLOSE","ts":"2026-12-01T10:00:01Z"}]}` + "\n" +
		`{"type":"stats","ts":"2026-12-01T10:00:02Z","attach":"tp_btf","events":1,"connections":1,"open_connections":0,"evictions":0,"gaps":0,"reordered":0,"stuck_dropped":0,"stuck":0,"rescued":0,"storage_fail":1,"lost":0,"untimed":0,"lost_inferred":0,"reclaimed":5,"walks":0,"walk_ns":0}` + "\n"
	c := NewCollector(recording.Clock)
	s, err := recording.Replay(strings.NewReader(rec), recording.Filter{}, c, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Reclaimed != 5 {
		t.Fatalf("summary: %d reclaimed sockets, want 5", s.Reclaimed)
	}
	c.Recorded(s)
	var out bytes.Buffer
	if err := c.Render(&out, "verdict"); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	if strings.Contains(page, "Nothing was lost") || !strings.Contains(page, "5 sockets lost part of their timelines") {
		t.Errorf("the verdict does not name the reclaimed sockets:\n%s", page[strings.Index(page, `id="verdict"`):])
	}
	if c.verdict().Clean {
		t.Error("a verdict with reclaimed sockets is clean")
	}
}
