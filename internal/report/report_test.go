package report

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
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

func render(t testing.TB) string {
	c := NewCollector(recording.Clock)
	if _, err := recording.Replay(bytes.NewReader(sampleRecording(t)), recording.Filter{}, c, &bytes.Buffer{}); err != nil {
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
		`<svg class="histogram" data-state="CLOSE_WAIT"`, `<svg class="waterfall"`, `class="seg" data-state="TIME_WAIT"`,
		`fill-opacity="0.4"`, `<polyline class="series" data-state="TIME_WAIT"`, "stuck CLOSE_WAIT",
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
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv(nettest.RequireEnv) == "1" {
			t.Fatal("needs chromium (Debian package chromium)")
		}
		t.Skip("needs chromium")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(render(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	chrome := func(extra ...string) []byte {
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1200,1800"}, extra...)
		out, err := exec.Command(bin, append(args, "file://"+page)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", extra, err)
		}
		return out
	}
	dom := string(chrome("--dump-dom"))
	for sel, min := range map[string]int{`class="histogram"`: 3, `class="seg"`: 5, `class="series"`: 3} {
		if n := strings.Count(dom, sel); n < min {
			t.Errorf("the browser's DOM has %d %s, want at least %d", n, sel, min)
		}
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
