//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// TestIncident reproduces the four classic piles (the demo's namespace
// and roles) while healthy traffic runs in another namespace, and runs
// the built binary's incident command on the whole host, unfiltered, as
// an operator would after netstat -nat: each pile is one group line (in
// NDJSON here, the text is the same lines), naming its holder, and the
// lines about the test's namespaces are a few dozen at most, none about
// the healthy one. Other namespaces of the host may add their own.
func TestIncident(t *testing.T) {
	nettest.RequirePrivileges(t)
	busy := nettest.NewNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// 200 established connections held open
	sink := busy.Start(t, "sink", "127.0.0.1:0", "200")
	hold := busy.Start(t, "hold", fmt.Sprintf("127.0.0.1:%d", sink.Port), "200", "90s")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}

	var out lockedBuffer
	inc := start(t, &out, "incident", "--stuck", "SYN_SENT=2s,SYN_RECV=2s,CLOSE_WAIT=2s", "--pile", "TIME_WAIT=10", "--every", "5s")
	wg.Add(1)
	go func() { // and healthy churn, below the TIME_WAIT pile: 8 connections, one every 2 s
		defer wg.Done()
		for i := 0; i < 8 && ctx.Err() == nil; i++ {
			traffic(t, busy, 1)
			time.Sleep(2 * time.Second)
		}
	}()
	// The four piles: the demo's namespace and roles (its own tracer,
	// filtered to that namespace, writes elsewhere).
	d := exec.Command(binary(t), "demo", "--duration", "16s", "--emit", "stuck")
	var demoErr lockedBuffer
	d.Stderr = &demoErr
	if err := d.Run(); err != nil {
		t.Fatalf("demo: %v: %s", err, demoErr.String())
	}
	m := regexp.MustCompile(`\(netns (\d+)\)`).FindStringSubmatch(demoErr.String())
	if m == nil {
		t.Fatalf("demo named no namespace: %s", demoErr.String())
	}
	n, _ := strconv.ParseUint(m[1], 10, 32)
	demoNetns := uint32(n)
	time.Sleep(1500 * time.Millisecond) // a walk finds the piles gone
	// Unfiltered, it walks every socket of the host at the end: on a
	// shared host holding 100,000s of other sockets that takes seconds.
	inc.cmd.Process.Signal(syscall.SIGINT)
	exited := make(chan error, 1)
	go func() { exited <- inc.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("incident: %v: %s", err, inc.log.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("incident still running 60 s after SIGINT: %s", inc.log.String())
	}
	cancel()

	found := map[string]bool{}
	mine := 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line == "" {
			continue
		}
		v, err := record.DecodeStrict([]byte(line))
		if err != nil {
			t.Fatalf("not an incident record: %v: %s", err, line)
		}
		r, ok := v.(*record.Incident)
		if !ok {
			t.Fatalf("not an incident record: %s", line)
		}
		switch r.Netns {
		case busy.Inode:
			t.Errorf("a line about the healthy namespace: %s", line)
		case demoNetns:
			mine++
		default:
			continue // another namespace of this host
		}
		comm := ""
		if r.Owner != nil {
			comm = r.Comm
		}
		switch {
		case r.State == "CLOSE_WAIT" && comm == "demo-leaky" && r.Local == "127.0.0.1:9003" && r.Count == 3 && !r.Cleared:
			found["CLOSE_WAIT"] = true
		case r.State == "SYN_SENT" && comm == "demo-client" && r.Remote == "127.0.0.1:9001" && !r.Cleared:
			found["SYN_SENT"] = true
		case r.State == "SYN_RECV" && comm == "demo-server" && r.Local == "127.0.0.1:9002" && r.RemotePrefix == "127.0.0.0/24" && r.Count == 2 && !r.Cleared:
			found["SYN_RECV"] = true
		case r.State == "SYN_RECV" && r.Cleared:
			found["SYN_RECV cleared"] = true // the ACKs pass again after 5 s
		case r.State == "TIME_WAIT" && r.RemotePrefix == "127.0.0.1/32" && r.Count >= 10 && r.Owner == nil:
			found["TIME_WAIT"] = true
		}
		if !r.Cleared && r.State != "TIME_WAIT" && (r.OldestNs == nil || *r.OldestNs < 2e9) {
			t.Errorf("a stuck group younger than its limit: %s", line)
		}
	}
	var missing []string
	for _, want := range []string{"CLOSE_WAIT", "SYN_SENT", "SYN_RECV", "SYN_RECV cleared", "TIME_WAIT"} {
		if !found[want] {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		t.Errorf("no %v group line; incident's stderr:\n%s\nits lines:\n%s", missing, inc.log.String(), out.String())
	}
	if mine > 36 {
		t.Errorf("%d lines for four piles, want a few dozen at most:\n%s", mine, out.String())
	}
	t.Logf("%d lines about the demo's namespace:\n%s", mine, out.String())
}
