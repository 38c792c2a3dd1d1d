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
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// A real Prometheus server scrapes the tracer; its query API must give the
// CLOSE_WAIT dwell the test controls, from the native histogram.
func TestPrometheusScrapesDwell(t *testing.T) {
	nettest.RequirePrivileges(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv(nettest.RequireEnv) == "1" {
			t.Fatal("needs prometheus (Debian package prometheus)")
		}
		t.Skip("needs prometheus (Debian package prometheus)")
	}
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

	dir := t.TempDir()
	promAddr := freeAddr(t)
	conf := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tcptrace\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr,
		"--enable-feature=native-histograms")
	promLog, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })

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
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Fatalf("%s = %v, %v; want %v within 10%%\nprometheus log:\n%s", q, v, err, want, log)
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
	tr.stop(t)
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
