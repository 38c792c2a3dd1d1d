//go:build linux

package tracer

import (
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// The walk's gauges against the kernel: a leak of three CLOSE_WAIT
// sockets past a 1 s limit is tcptrace_stuck_sockets{state="CLOSE_WAIT"}
// 3 as long as ss shows them; a listener that never accepts, with
// listen(2) and four clients, has its accept queue full.
func TestWalkGaugesMatchTheKernel(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Metrics = "127.0.0.1:0"
	cfg.Interval = 200 * time.Millisecond
	cfg.Stuck = [len(cfg.Stuck)]time.Duration{}
	cfg.Stuck[event.CloseWait] = time.Second
	tr := startTracer(t, cfg)
	m := regexp.MustCompile(`metrics at http://([0-9.:]+)/metrics`).FindStringSubmatch(tr.errOut.String())
	if m == nil {
		t.Fatalf("no metrics address in %q", tr.errOut.String())
	}
	scrape := func(series string) float64 {
		resp, err := http.Get("http://" + m[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, series+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	waitFor := func(series string, want float64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for scrape(series) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v, want %v", series, scrape(series), want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	leak := ns.LeakCloseWait(t, 3)
	waitFor(`tcptrace_stuck_sockets{state="CLOSE_WAIT"}`, 3)
	out, _ := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-tanH", "state", "close-wait").Output()
	if n := strings.Count(string(out), "\n"); n != 3 {
		t.Errorf("ss shows %d CLOSE_WAIT sockets, the gauge 3:\n%s", n, out)
	}
	waitFor("tcptrace_socket_namespaces", 1)
	leak.Cmd.Process.Kill() // the leaking process exits: its sockets close
	leak.Cmd.Wait()
	waitFor(`tcptrace_stuck_sockets{state="CLOSE_WAIT"}`, 0)
	tr.stop(t)
}
