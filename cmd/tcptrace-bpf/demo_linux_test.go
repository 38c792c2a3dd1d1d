//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
