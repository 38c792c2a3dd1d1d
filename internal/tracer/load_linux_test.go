//go:build linux

package tracer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// A burst far above a tiny ring buffer: the tracer keeps running, counts
// and reports what the full ring dropped (lost records and stderr), and
// loses nothing once the burst is over.
func TestRingOverflowIsReportedAndRecovers(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.RingSize = 4096 // 34 records
	cfg.Flush = time.Second
	cfg.Emit = config.EmitTransitions
	tr := startTracer(t, cfg)

	sink := ns.Start(t, "sink", "127.0.0.1:7400", "3000")
	hold := ns.Start(t, "hold", "127.0.0.1:7400", "3000", "0s")
	hold.Line()
	hold.Wait()
	sink.Wait()
	waitClosed(t, ns)
	time.Sleep(1500 * time.Millisecond) // the lost check runs every second
	lostDuringBurst := tr.out.String()

	// After the burst: a few connections at a slow pace.
	server := ns.Start(t, "server", "127.0.0.1:7401", "3", "0s")
	for i := 0; i < 3; i++ {
		c := ns.Start(t, "client", "127.0.0.1:7401", "1")
		c.Line()
		c.Wait()
		time.Sleep(200 * time.Millisecond)
	}
	server.Wait()
	waitClosed(t, ns)
	recs := tr.stop(t)

	before := parseRecords(t, lostDuringBurst)
	lost := ofType(before, "lost")
	if len(lost) == 0 {
		t.Fatal("a 4 KiB ring under a burst of 3000 connections reported no loss")
	}
	var full uint64
	for _, l := range lost {
		full += l.Count
	}
	if !strings.Contains(tr.errOut.String(), "transitions lost (ring buffer full") {
		t.Errorf("no loss warning on stderr: %q", tr.errOut.String())
	}
	// After the burst only the whole host's recursion skips may be lost
	// (other tests' sockets: the run is filtered, and they are labelled).
	for _, l := range ofType(recs, "lost")[len(lost):] {
		if !hostWideOnly(l) {
			t.Errorf("lost record after the burst ended: %+v: the tracer did not recover", l)
		}
		full += l.Count
	}
	var after int
	for _, r := range ofType(recs, "transition") {
		if r.Sport == 7401 || r.Dport == 7401 {
			after++
		}
	}
	if after != 3*10+2 {
		t.Errorf("%d transitions of the slow connections after the burst, want all %d", after, 3*10+2)
	}
	st := ofType(recs, "stats")
	if len(st) != 1 || st[0].Lost != full {
		t.Errorf("stats %+v: lost should total the %d reported", st, full)
	}
	t.Logf("burst of 3000 connections into a 4 KiB ring: %d transitions delivered, %d lost and reported", st[0].Events, full)
}

// A SYN flood's half-open connections (final ACKs dropped) show on the
// listener record; the tracer runs on and its memory stays small.
func TestHalfOpenFlood(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	nft(t, ns,
		"add table inet tcptrace_flood",
		"add chain inet tcptrace_flood in { type filter hook input priority 0 ; }",
		"add rule inet tcptrace_flood in tcp dport 7500 tcp flags & (syn | ack) == ack drop")
	cfg := nsConfig(ns)
	cfg.Interval = 300 * time.Millisecond
	tr := startTracer(t, cfg)
	server := ns.Start(t, "noaccept", "127.0.0.1:7500", "1024", "3s")
	const n = 200
	flood := ns.Start(t, "hold", "127.0.0.1:7500", fmt.Sprint(n), "2s")
	flood.Line()
	time.Sleep(800 * time.Millisecond)
	flood.Wait()
	server.Wait()
	recs := tr.stop(t)
	var most uint64
	for _, l := range ofType(recs, "listener") {
		if l.Sport == 7500 {
			most = max(most, l.HalfOpen)
		}
	}
	if most < n*9/10 {
		t.Errorf("listener records showed at most %d half-open connections, want about %d", most, n)
	}
	if st := ofType(recs, "stats"); len(st) != 1 || st[0].Lost != st[0].LostHostWide {
		t.Errorf("stats %+v: lost beyond the whole host's recursion skips", st)
	}
}
