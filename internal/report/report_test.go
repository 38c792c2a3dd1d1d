package report

import (
	"bytes"
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
