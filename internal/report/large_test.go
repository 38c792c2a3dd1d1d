package report

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// largeRecording writes a synthetic recording of n connections over
// n/100 seconds: 50 processes talking to 200 hosts, one in a hundred a
// server's connection left in CLOSE_WAIT and reported stuck, a states
// record and three listener records every second.
func largeRecording(t testing.TB, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	put := func(v any) {
		line, err := record.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
	}
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ns := func(d time.Duration) *uint64 { v := uint64(d); return &v }
	secs := n / 100
	for s := range secs {
		ts := t0.Add(time.Duration(s) * time.Second)
		var counts record.StateCounts
		counts[1], counts[6], counts[8] = uint64(100+s%37), uint64(2000+s%500), uint64(s/10)
		put(&record.States{Type: record.TypeStates, TS: ts, Counts: counts})
		for l := range 3 {
			put(&record.Listener{Type: record.TypeListener, TS: ts, Netns: 1, Family: "inet", Saddr: "0.0.0.0",
				Sport: uint16(8080 + l), Owner: &record.Owner{PID: uint32(100 + l), Comm: "server"},
				AcceptQueue: uint64((s * (l + 1)) % 129), AcceptQueueMax: 128, HalfOpen: uint64(s % 7)})
		}
		for i := range 100 {
			k := s*100 + i
			start := ts.Add(time.Duration(i) * 10 * time.Millisecond)
			life := time.Duration(1+k%997) * time.Millisecond
			c := record.Connection{Type: record.TypeConnection, Cookie: uint64(k + 1), Netns: 1,
				Endpoints: record.Endpoints{Family: "inet", Saddr: "10.0.0.1", Sport: uint16(20000 + k%40000),
					Daddr: fmt.Sprintf("10.1.%d.%d", k%200/100, k%100), Dport: 443},
				Owner: &record.Owner{PID: uint32(1000 + k%50), Comm: fmt.Sprintf("client%d", k%50)},
				Start: start, End: start.Add(life), DurationNs: ns(life)}
			est := life * 8 / 10
			c.States = []record.Span{
				{State: "SYN_SENT", TS: start, DwellNs: ns(life / 10)},
				{State: "ESTABLISHED", TS: start.Add(life / 10), DwellNs: ns(est - life/10)},
				{State: "FIN_WAIT1", TS: start.Add(est), DwellNs: ns(life / 20)},
				{State: "FIN_WAIT2", TS: start.Add(est + life/20), DwellNs: ns(life - est - life/20)},
				{State: "TIME_WAIT", Inferred: true},
				{State: "CLOSE", TS: start.Add(life)},
			}
			if k%100 == 7 { // a server connection that is never closed
				c.Sport, c.Dport = 8080, uint16(30000+k%30000)
				c.Owner = &record.Owner{PID: 100, Comm: "server"}
				c.Start, c.End, c.Open, c.DurationNs = start, t0.Add(time.Duration(secs)*time.Second), true, nil
				c.States = []record.Span{{State: "ESTABLISHED", TS: start, DwellNs: ns(life)},
					{State: "CLOSE_WAIT", TS: start.Add(life)}}
				held := true
				put(&record.Stuck{Type: record.TypeStuck, TS: start.Add(life + 30*time.Second), State: "CLOSE_WAIT",
					AgeNs: uint64(30 * time.Second), Cookie: c.Cookie, Netns: 1, Endpoints: c.Endpoints,
					Owner: c.Owner, Held: &held})
			}
			put(&c)
		}
	}
	return b.Bytes()
}

// The page of a recording of 100,000 connections stays small and loads
// fast in Chromium; the load time goes in docs/report.md.
func TestLargeRecordingLoadsFast(t *testing.T) {
	if testing.Short() {
		t.Skip("renders 100,000 connections")
	}
	bin := chromium(t)
	const n = 100_000
	t0 := time.Now()
	rec := largeRecording(t, n)
	t1 := time.Now()
	page := renderRecording(t, rec)
	t2 := time.Now()
	t.Logf("recording: %d connections, %.1f MB, written in %v; page rendered in %v, %.0f kB",
		n, float64(len(rec))/1e6, t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), float64(len(page))/1e3)
	if !strings.Contains(page, fmt.Sprintf("%d connections", n)) {
		t.Errorf("the page does not count %d connections", n)
	}
	if rows := strings.Count(page, `<g class="conn`); rows > Slowest+MaxStuckRows {
		t.Errorf("the waterfall draws %d rows, want at most %d", rows, Slowest+MaxStuckRows)
	}
	if !strings.Contains(page, "counted in the owners table") {
		t.Error("the page does not say the stuck ones not drawn are counted elsewhere")
	}
	if len(page) > 3<<20 {
		t.Errorf("the page is %d bytes; it should not grow with the recording", len(page))
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	dom := string(runChromium(t, bin, dir, file, "--dump-dom"))
	wall := time.Since(start)
	ms := loadMs(t, dom)
	if ms < 0 {
		t.Fatal("the page's load script did not run")
	}
	checkAxisLabels(t, dom)
	t.Logf("Chromium: load event (parse, style and layout) after %d ms; headless chromium --dump-dom took %v in all", ms, wall.Round(time.Millisecond))
	if ms > 5000 {
		t.Errorf("the page took %d ms to load, want under 5 s", ms)
	}
}

// chromium returns the browser's path, or skips (fails when required).
func chromium(t *testing.T) string {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv(nettest.RequireEnv) == "1" {
			t.Fatal("needs chromium (Debian package chromium)")
		}
		t.Skip("needs chromium")
	}
	return bin
}

// runChromium loads file in headless Chromium with a profile in dir.
func runChromium(t *testing.T, bin, dir, file string, extra ...string) []byte {
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1250,1800"}, extra...)
	out, err := exec.Command(bin, append(args, "file://"+file)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", extra, err)
	}
	return out
}
