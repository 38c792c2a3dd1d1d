//go:build linux

package tracer

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/deploy"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// A real Prometheus server scrapes the tracer; its query API must give the
// CLOSE_WAIT dwell the test controls, from the native histogram.
func TestPrometheusScrapesDwell(t *testing.T) {
	nettest.RequirePrivileges(t)
	promBin := needPrometheus(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Metrics = "127.0.0.1:0"
	cfg.Emit = 0 // a pure exporter
	tr := startTracer(t, cfg)
	m := regexp.MustCompile(`metrics at http://([0-9.:]+)/metrics`).FindStringSubmatch(tr.errOut.String())
	if m == nil {
		t.Fatalf("no metrics address in %q", tr.errOut.String())
	}
	target := m[1]

	promAddr := startPrometheus(t, promBin, target, "--enable-feature=native-histograms")
	waitScraped(t, promAddr)

	const hold = time.Second
	server := ns.Start(t, "server", "127.0.0.1:0", "3", hold.String())
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "3")
	client.Line()
	client.Wait()
	server.Wait()

	// The server takes the connections one at a time and holds each
	// CLOSE_WAIT for hold after the previous: dwells of 1, 2 and 3 s, so
	// the median is 2 s.
	want := 2 * hold
	q := `histogram_quantile(0.5, tcptrace_state_dwell_seconds{state="CLOSE_WAIT"})`
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := promQuery(promAddr, q)
		if err == nil && !math.IsNaN(v) && math.Abs(v-want.Seconds()) <= 0.1*want.Seconds() {
			t.Logf("%s = %.4f s (want %v within 10%%)", q, v, want)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, %v; want %v within 10%%", q, v, err, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Counters and gauges arrive too.
	for _, q := range []string{
		`tcptrace_transitions_total{old="CLOSE_WAIT",new="LAST_ACK"}`,
		`tcptrace_connections_closed_total{from="LAST_ACK",reset="none",error="none",time_wait="false"}`,
	} {
		if v, err := promQuery(promAddr, q); err != nil || v != 3 {
			t.Errorf("%s = %v, %v; want 3", q, v, err)
		}
	}
	// The dashboard's native-histogram panels have data on this server.
	_, native, err := deploy.DashboardQueries("../../deploy/grafana/tcptrace-bpf.json", "1m")
	if err != nil {
		t.Fatal(err)
	}
	dashboardHasData(t, promAddr, native)
	tr.stop(t)
}

// The dashboard's default panels have data on a Prometheus started with
// default flags (no native histograms): every query returns a series with
// a number, from a tracer that saw one connection.
func TestDashboardOnDefaultPrometheus(t *testing.T) {
	nettest.RequirePrivileges(t)
	promBin := needPrometheus(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Metrics = "127.0.0.1:0"
	cfg.Emit = 0
	tr := startTracer(t, cfg)
	m := regexp.MustCompile(`metrics at http://([0-9.:]+)/metrics`).FindStringSubmatch(tr.errOut.String())
	if m == nil {
		t.Fatalf("no metrics address in %q", tr.errOut.String())
	}
	promAddr := startPrometheus(t, promBin, m[1])
	waitScraped(t, promAddr)
	server := ns.Start(t, "server", "127.0.0.1:0", "1", "0s")
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "1")
	client.Line()
	client.Wait()
	server.Wait()

	classic, _, err := deploy.DashboardQueries("../../deploy/grafana/tcptrace-bpf.json", "1m")
	if err != nil {
		t.Fatal(err)
	}
	dashboardHasData(t, promAddr, classic)
	tr.stop(t)
}

// dashboardHasData waits until every query returns at least one series
// with a number (not NaN), and fails naming the panels that never do.
func dashboardHasData(t *testing.T, promAddr string, queries map[string][]string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var missing []string
		for title, exprs := range queries {
			for _, q := range exprs {
				if n, err := promNumbers(promAddr, q); err != nil || n == 0 {
					missing = append(missing, fmt.Sprintf("%q: %s (%d numbers, %v)", title, q, n, err))
				}
			}
		}
		if len(missing) == 0 {
			t.Logf("%d panels have data", len(queries))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("panels without data:\n%s", strings.Join(missing, "\n"))
		}
		time.Sleep(time.Second)
	}
}

// waitScraped waits for Prometheus's first scrape of the tracer: it sees
// every series at 0, so rate() counts all that follows.
func waitScraped(t *testing.T, promAddr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v, err := promQuery(promAddr, `up`); err == nil && v == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus never scraped the tracer")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func needPrometheus(t *testing.T) string {
	t.Helper()
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv(nettest.RequireEnv) == "1" {
			t.Fatal("needs prometheus (Debian package prometheus)")
		}
		t.Skip("needs prometheus (Debian package prometheus)")
	}
	return promBin
}

// startPrometheus runs a Prometheus server scraping target every second,
// with the given extra flags, and returns its address. Its log is shown
// if the test fails.
func startPrometheus(t *testing.T, promBin, target string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	promAddr := freeAddr(t)
	conf := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tcptrace\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + promAddr}, flags...)...)
	logPath := filepath.Join(dir, "prometheus.log")
	promLog, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", log)
		}
	})
	return promAddr
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// promQuery runs an instant query and returns the single value.
func promQuery(addr, q string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" || len(body.Data.Result) != 1 || len(body.Data.Result[0].Value) != 2 {
		return 0, fmt.Errorf("query result %+v", body)
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// promNumbers runs an instant query and counts the series whose value is
// a number.
func promNumbers(addr, q string) (int, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("%s", body.Error)
	}
	n := 0
	for _, r := range body.Data.Result {
		if len(r.Value) == 2 {
			if s, _ := r.Value[1].(string); s != "NaN" {
				n++
			}
		}
	}
	return n, nil
}
