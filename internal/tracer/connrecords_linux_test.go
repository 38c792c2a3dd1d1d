//go:build linux

package tracer

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// The default output's connections come from records the kernel sends
// once per connection (config.ConnRecords: the transitions held in the
// socket's entry); they are the connections a tracer that reads every
// transition writes, field for field, beside it on the same traffic:
// graceful closes both ways (TIME_WAIT on the client), abortive closes
// (the reset after the CLOSE), connections still open at stop (written
// open, their held transitions flushed by the closing walk) and a
// CLOSE_WAIT leak past a 1 s stuck limit (seen by the periodic walk,
// which flushes what the stuck watch needs: one stuck record each).
// The histograms (the kernel's, in the first) count the same stays.
func TestConnRecordsMatchPerTransitionRecords(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	const graceful, aborted, open, leaked = 200, 20, 30, 3

	conn := nsConfig(ns)
	conn.Emit = config.Defaults().Emit
	conn.Stuck = [event.NumStates]time.Duration{}
	conn.Stuck[event.CloseWait] = time.Second
	if !conn.ConnRecords() {
		t.Fatal("the default output does not use connection records")
	}
	every := conn
	every.Emit = config.EmitAll
	a, b := startTracer(t, conn), startTracer(t, every)

	server := ns.Start(t, "server", "127.0.0.1:7461", fmt.Sprint(graceful), "0s")
	client := ns.Start(t, "client", "127.0.0.1:7461", fmt.Sprint(graceful))
	if l := client.Line(); l != "done" {
		t.Fatalf("client: %q", l)
	}
	server.Wait()
	sink := ns.Start(t, "sink", "127.0.0.1:7463", fmt.Sprint(aborted))
	for range aborted {
		p := ns.Start(t, "abort", "127.0.0.1:7463")
		if l := p.Line(); l != "done" {
			t.Fatalf("abort: %q", l)
		}
		p.Wait()
	}
	sink.Wait()
	holdSrv := ns.Start(t, "leak", "127.0.0.1:7462", fmt.Sprint(open))
	hold := ns.Start(t, "hold", "127.0.0.1:7462", fmt.Sprint(open), "10m")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	if l := holdSrv.Line(); l != "accepted" {
		t.Fatalf("leak: %q", l)
	}
	leak := ns.LeakCloseWait(t, leaked)
	time.Sleep(3 * time.Second) // past the 1 s limit, and a walk or two
	_ = leak

	a.stop(t)
	b.stop(t)
	conns := func(out string) (map[uint64]map[string]any, []string) {
		got := map[uint64]map[string]any{}
		var stuck []string
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, `{"type":"connection"`) && !strings.HasPrefix(line, `{"type":"stuck"`) {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "run")
			delete(m, "seq")
			if m["type"] == "stuck" {
				stuck = append(stuck, fmt.Sprint(m["state"], m["cookie"]))
				continue
			}
			if m["open"] == true { // written at each tracer's own stop
				delete(m, "end")
				delete(m, "duration_ns")
				sts := m["states"].([]any)
				delete(sts[len(sts)-1].(map[string]any), "dwell_ns")
			}
			got[uint64(m["cookie"].(float64))] = m
		}
		return got, stuck
	}
	got, gotStuck := conns(a.out.String())
	want, wantStuck := conns(b.out.String())
	if len(got) < graceful*2+aborted*2+open*2 {
		t.Errorf("%d connections from the connection records, want at least %d", len(got), graceful*2+aborted*2+open*2)
	}
	var missing, differ int
	for ck, w := range want {
		g, ok := got[ck]
		switch {
		case !ok:
			if missing++; missing <= 3 {
				t.Errorf("connection %d only in the per-transition tracer's output: %v", ck, w)
			}
		case !sameConnection(g, w):
			if differ++; differ <= 3 {
				gt, wt := timesOf(g), timesOf(w)
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(w)
				t.Errorf("connection %d differs:\nconnection records: %s %.0f\nper transition:     %s %.0f", ck, gj, gt, wj, wt)
			}
		}
	}
	for ck := range got {
		if _, ok := want[ck]; !ok {
			t.Errorf("connection %d only in the connection records' output", ck)
		}
	}
	if missing+differ > 0 {
		t.Errorf("%d of %d connections missing, %d differ", missing, len(want), differ)
	}
	if len(gotStuck) != leaked || !reflect.DeepEqual(gotStuck, wantStuck) {
		t.Errorf("stuck records: connection records %v, per transition %v; want %d CLOSE_WAIT", gotStuck, wantStuck, leaked)
	}
	hists := func(recs []record) map[string]uint64 {
		n := map[string]uint64{}
		for _, r := range ofType(recs, "histogram") {
			n[r.State] += r.Count
		}
		return n
	}
	if hg, hw := hists(parseRecords(t, a.out.String())), hists(parseRecords(t, b.out.String())); !reflect.DeepEqual(hg, hw) {
		t.Errorf("stays per state: kernel's histograms %v, per transition %v", hg, hw)
	}
}

// sameConnection compares two tracers' records of one connection: every
// field equal but the times, which each tracer's program reads from the
// clock itself (the two run one after the other on each transition): those
// within 2 ms (the two programs are preemptible between them in a system
// call).
func sameConnection(a, b map[string]any) bool {
	ta, tb := timesOf(a), timesOf(b)
	if !reflect.DeepEqual(a, b) || len(ta) != len(tb) {
		return false
	}
	for i := range ta {
		if d := ta[i] - tb[i]; d > 2e6 || d < -2e6 {
			return false
		}
	}
	return true
}

// timesOf takes a connection record's times out of it (start, end,
// duration, each state's entry and dwell), in order, as ns.
func timesOf(m map[string]any) []float64 {
	var out []float64
	take := func(m map[string]any, k string) {
		switch v := m[k].(type) {
		case float64:
			out = append(out, v)
		case string:
			if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
				out = append(out, float64(ts.UnixNano()))
			}
		}
		delete(m, k)
	}
	for _, k := range []string{"start", "end", "duration_ns", "handshake_ns"} {
		take(m, k)
	}
	sts, _ := m["states"].([]any)
	for _, st := range sts {
		take(st.(map[string]any), "ts")
		take(st.(map[string]any), "dwell_ns")
	}
	return out
}

// Progress records of connections born while tracing, with connection
// records (the default output): their transitions are held in the kernel,
// so the first progress walk flushes them; from then on each record gives
// the connection's start and state's start as seen, not a lower bound.
func TestProgressWithConnectionRecords(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Emit = config.Defaults().Emit
	cfg.Progress = time.Second
	if !cfg.ConnRecords() {
		t.Fatal("the default output does not use connection records")
	}
	tr := startTracer(t, cfg)
	ns.Start(t, "sink", "127.0.0.1:7405", "2")
	hold := ns.Start(t, "hold", "127.0.0.1:7405", "2", "30s")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	born := time.Now()
	time.Sleep(5 * time.Second)
	exact := map[uint64]bool{}
	for _, r := range answers(t, tr, "progress") {
		if r.State != "ESTABLISHED" || time.Duration(r.AgeNs) > r.TS.Sub(born)+time.Second {
			t.Errorf("progress record %+v (connections %v old)", r, r.TS.Sub(born))
		}
		if !r.AgeAtLeast {
			exact[r.Cookie] = true
		}
	}
	if len(exact) != 4 {
		t.Errorf("%d of the 4 sockets had a progress record with their exact age, want all", len(exact))
	}
}

// With connection records a walk sends what a socket in a watched state
// holds; its next transitions must then reach the connection table as
// they come, or the table keeps it in the state it was sent in: a connect
// that waited in SYN_SENT past a walk (its first SYN dropped) and then
// succeeded was reported stuck in SYN_SENT while ESTABLISHED. Walks every
// 200 ms, a 2.5 s limit, SYN_SENT about 1 s (the SYN's retransmit),
// ESTABLISHED 4 s: no stuck record, and the connection's timeline whole.
func TestNoStaleStuckAfterAWalkSentTheConnection(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Emit = config.Defaults().Emit
	cfg.WalkInterval = 200 * time.Millisecond
	cfg.Stuck = [event.NumStates]time.Duration{}
	cfg.Stuck[event.SynSent] = 2500 * time.Millisecond
	if !cfg.ConnRecords() {
		t.Fatal("the default output does not use connection records")
	}
	tr := startTracer(t, cfg)
	srv := ns.Start(t, "sink", "127.0.0.1:7471", "1")
	dropIn(t, ns, "tcp dport 7471 tcp flags syn drop")
	hold := ns.Start(t, "hold", "127.0.0.1:7471", "1", "4s")
	time.Sleep(500 * time.Millisecond) // the first SYN dropped; its retransmit, after 1 s, passes
	nft(t, ns, "delete table inet tcptrace_test")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	hold.Wait()
	srv.Wait()
	recs := tr.stop(t)
	for _, r := range ofType(recs, "stuck") {
		t.Errorf("stuck record %+v: the connection left SYN_SENT after about 1 s", r)
	}
	var paths []string
	for _, c := range ofType(recs, "connection") {
		if c.Dport == 7471 {
			var sts []string
			for _, s := range c.States {
				sts = append(sts, s.State)
			}
			paths = append(paths, strings.Join(sts, ">"))
		}
	}
	if len(paths) != 1 || !strings.HasPrefix(paths[0], "SYN_SENT>ESTABLISHED>") {
		t.Errorf("client connections %v, want one SYN_SENT>ESTABLISHED>...", paths)
	}
}
