//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// TestDemo runs the built binary's demo and checks that its default
// output shows the four cases, with owners, and that it removes its
// namespace and processes.
func TestDemo(t *testing.T) {
	nettest.RequirePrivileges(t)
	cmd := exec.Command(binary(t), "demo", "--duration", "15s")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo: %v; stderr:\n%s", err, stderr.String())
	}
	countTypes(t, out) // every line a record of the schema
	var synSent, synRecv, closeWait, timeWait bool
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			Type     string
			State    string
			Comm     string
			PID      *int
			HalfOpen int `json:"half_open"`
			Counts   map[string]int
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Type == "stuck" && r.State == "SYN_SENT" && r.Comm == "demo-client":
			synSent = true
		case r.Type == "stuck" && r.State == "SYN_RECV" && r.HalfOpen > 0 && r.Comm == "demo-server":
			synRecv = true
		case r.Type == "stuck" && r.State == "CLOSE_WAIT" && r.Comm == "demo-leaky" && r.PID != nil:
			closeWait = true
		case r.Type == "states" && r.Counts["TIME_WAIT"] > 0:
			timeWait = true
		}
	}
	for what, ok := range map[string]bool{"a stuck SYN_SENT of demo-client": synSent,
		"a stuck half-open SYN_RECV on demo-server's listener": synRecv,
		"a stuck CLOSE_WAIT owned by demo-leaky":               closeWait, "TIME_WAIT in a states record": timeWait} {
		if !ok {
			t.Errorf("no %s in the output:\n%s", what, out)
		}
	}
	if l, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(l), "tcptrace-demo-") {
		t.Errorf("a demo namespace is left: %s", l)
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "__demo-role") {
			t.Errorf("a demo process is left: %s: %q", f, b)
		}
	}
}

// Without root the demo says so in one line, not with ip's own error
// about mounting /run/netns.
func TestDemoNotPrivileged(t *testing.T) {
	nettest.RequirePrivileges(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	cmd := exec.Command(setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", binary(t), "demo", "--duration", "2s")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	msg := string(out)
	if !ok || ee.ExitCode() != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "needs root") || strings.Contains(msg, "ip netns") {
		t.Fatalf("unprivileged demo: %v, output %q: want exit 1 and one line saying it needs root", err, msg)
	}
}

// A demo whose terminal closes (SIGHUP) removes its namespace, with its
// nftables table, and its processes, as SIGTERM and Ctrl-C do.
func TestDemoHangupCleansUp(t *testing.T) {
	nettest.RequirePrivileges(t)
	cmd := exec.Command(binary(t), "demo", "--duration", "60s", "--emit", "stuck,states")
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	name := fmt.Sprintf("tcptrace-demo-%d", cmd.Process.Pid)
	r := bufio.NewReader(errPipe)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("demo ended before it started its cases: %v", err)
		}
		if strings.Contains(l, "namespace "+name) {
			break
		}
	}
	go io.Copy(io.Discard, r)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("demo still running 20 s after SIGHUP")
	}
	if l, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(l), name) {
		t.Errorf("SIGHUP left the namespace %s: %s", name, l)
		exec.Command("ip", "netns", "delete", name).Run()
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "__demo-role") {
			t.Errorf("a demo process is left: %s: %q", f, b)
		}
	}
}

// demo --format text prints its histograms once, at the end, without
// runs of empty rows (it printed them every 5 s, six times in a default
// run, each state with up to 16 empty rows).
func TestDemoText(t *testing.T) {
	nettest.RequirePrivileges(t)
	cmd := exec.Command(binary(t), "demo", "--format", "text", "--duration", "11s")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo: %v; stderr:\n%s", err, stderr.String())
	}
	s := string(out)
	if n := strings.Count(s, "Dwell time per state"); n != 1 {
		t.Errorf("histograms printed %d times, want once:\n%s", n, s)
	}
	prevZero := false
	for _, l := range strings.Split(s, "\n") {
		zero := strings.Contains(l, " -> ") && strings.Contains(l, ": 0 ")
		if zero && prevZero {
			t.Errorf("two empty histogram rows in a row:\n%s", s)
			break
		}
		prevZero = zero
	}
	if !strings.Contains(s, "STUCK") || !strings.Contains(s, "TIME_WAIT=") {
		t.Errorf("the text lacks the stuck lines or the TIME_WAIT count:\n%s", s)
	}
}
