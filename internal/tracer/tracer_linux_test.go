//go:build linux

package tracer

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/cgroup"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

const (
	clientPath = "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE"
	childPath  = "LISTEN>SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE"
	listenPath = "CLOSE>LISTEN>CLOSE"
)

// peerComm is what the kernel shows as the peers' command.
func peerComm(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := filepath.Base(exe)
	return c[:min(len(c), 15)]
}

func nsConfig(ns *nettest.Netns) config.Config {
	cfg := config.Defaults()
	cfg.Emit = config.EmitAll // the tests compare transitions with the kernel's
	cfg.Netns = ns.Inode
	cfg.Flush = 20 * time.Millisecond
	cfg.KeepPrivileges = true // the test process loads many tracers
	return cfg
}

// oneConnection runs a server that holds CLOSE_WAIT for closeDelay and a
// client that connects once and closes first; it returns both peers.
func oneConnection(t *testing.T, ns *nettest.Netns, listen, connectHost string, closeDelay time.Duration) (server, client *nettest.Peer) {
	t.Helper()
	server = ns.Start(t, "server", listen, "1", closeDelay.String())
	client = ns.Start(t, "client", fmt.Sprintf("%s:%d", connectHost, server.Port), "1")
	if l := client.Line(); l != "done" {
		t.Fatalf("client: %q", l)
	}
	client.Wait()
	server.Wait()
	return server, client
}

// checkSockets asserts the exact transition sequence and owner of each
// socket of one client/server exchange, and returns the child's records.
func checkSockets(t *testing.T, recs []record, server, client *nettest.Peer, family string) (child []record) {
	t.Helper()
	socks := byCookie(recs)
	if len(socks) != 3 {
		for c, ts := range socks {
			t.Logf("cookie %d: %s", c, path(ts))
		}
		t.Fatalf("saw %d sockets, want 3 (listener, client, accepted child)", len(socks))
	}
	comm := peerComm(t)
	found := map[string]bool{}
	for cookie, ts := range socks {
		p := path(ts)
		var wantPID int
		switch p {
		case clientPath:
			wantPID = client.PID
		case childPath:
			wantPID = server.PID
			child = ts
		case listenPath:
			wantPID = server.PID
		default:
			t.Fatalf("socket %d: unexpected sequence %s", cookie, p)
		}
		found[p] = true
		for _, r := range ts {
			if r.PID == nil || *r.PID != wantPID || r.Comm != comm {
				t.Errorf("%s %s->%s: owner %v %q, want %d %q", p, r.Old, r.New, r.PID, r.Comm, wantPID, comm)
			}
			if r.Family != family {
				t.Errorf("%s %s->%s: family %q, want %q", p, r.Old, r.New, r.Family, family)
			}
			// Dwell is known for every transition but a socket's birth.
			birth := r.Old == "CLOSE" || (r.Old == "LISTEN" && r.New == "SYN_RECV")
			if birth != (r.DwellNs == nil) {
				t.Errorf("%s %s->%s: dwell_ns %v", p, r.Old, r.New, r.DwellNs)
			}
		}
	}
	if len(found) != 3 {
		t.Fatalf("sequences seen: %v", found)
	}
	return child
}

func checkCloseWait(t *testing.T, child []record, want time.Duration) {
	t.Helper()
	for _, r := range child {
		if r.Old == "CLOSE_WAIT" {
			got := time.Duration(*r.DwellNs)
			if math.Abs(float64(got-want)) > 0.1*float64(want) {
				t.Errorf("CLOSE_WAIT dwell %v, want %v within 10%%", got, want)
			}
			return
		}
	}
	t.Error("no CLOSE_WAIT->LAST_ACK transition")
}

// checkNothingLost: nothing of the run's own was lost. On a filtered run
// (these tests filter on their namespace) kernel recursion skips are the
// whole host's, labelled so: other tests' bursts cause them, and the
// caller has checked its own transitions one by one.
// hostWideOnly reports whether a lost record holds only the kernel's
// recursion skips of the whole host on a filtered run (other tests'
// sockets, labelled so), none of this run's.
func hostWideOnly(l record) bool { return l.RecursionHostWide && l.Count == l.Recursion }

func checkNothingLost(t *testing.T, recs []record) {
	t.Helper()
	for _, l := range ofType(recs, "lost") {
		if !hostWideOnly(l) {
			t.Errorf("lost record: %+v", l)
		}
	}
	st := ofType(recs, "stats")
	if len(st) != 1 || st[0].Lost != st[0].LostHostWide {
		t.Errorf("stats records: %+v", st)
	} else if st[0].Lost > 0 {
		t.Logf("%d recursion skips of the whole host (other tests' sockets)", st[0].Lost)
	}
}

func TestClientClosesFirst(t *testing.T) {
	nettest.RequirePrivileges(t)
	for _, attach := range []config.Attach{config.AttachBTF, config.AttachTracepoint} {
		t.Run(string(attach), func(t *testing.T) {
			ns := nettest.NewNetns(t)
			cfg := nsConfig(ns)
			cfg.Attach = attach
			mountsBefore := tracefsMounted(t)
			tr := startTracer(t, cfg)
			if got := tracefsMounted(t); got != mountsBefore {
				t.Errorf("tracefs mounted = %v after attach, %v before: the host's mounts changed", got, mountsBefore)
			}
			const hold = time.Second
			// While the server holds CLOSE_WAIT, the kernel shows the
			// client's side as FIN-WAIT-2.
			ssDuring := make(chan string, 1)
			go func() {
				time.Sleep(hold / 2)
				out, _ := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Htan", "state", "fin-wait-2").CombinedOutput()
				ssDuring <- strings.TrimSpace(string(out))
			}()
			server, client := oneConnection(t, ns, "127.0.0.1:0", "127.0.0.1", hold)
			recs := tr.stop(t)
			if got := <-ssDuring; got == "" || strings.Contains(got, "\n") {
				t.Errorf("ss during the hold: %q, want exactly one FIN-WAIT-2 socket", got)
			}
			// The kernel's own view: the client's port now has a socket in
			// TIME-WAIT, which no tracepoint reported.
			out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Htan", "state", "time-wait").CombinedOutput()
			if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || len(strings.TrimSpace(string(out))) == 0 {
				t.Errorf("ss in the test namespace: %v: %q; want exactly one TIME-WAIT socket", err, out)
			}

			child := checkSockets(t, recs, server, client, "inet")
			checkCloseWait(t, child, hold)
			checkNothingLost(t, recs)

			conns := ofType(recs, "connection")
			if len(conns) != 3 {
				t.Fatalf("%d connection records, want 3", len(conns))
			}
			for _, c := range conns {
				var states []string
				for _, s := range c.States {
					states = append(states, s.State)
				}
				got := strings.Join(states, ">")
				if c.Open || c.Partial || c.Start == "" {
					t.Errorf("connection %s: open=%v partial=%v start=%q", got, c.Open, c.Partial, c.Start)
				}
				switch got {
				case "SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE":
					// The active closer closed before the server's FIN: the
					// kernel left a timewait socket in its FIN_WAIT2
					// substate (ss: FIN-WAIT-2 for the second the server
					// holds), not TIME_WAIT. close() sets RCV_SHUTDOWN, so
					// only SOCK_DONE tells the peer's FIN apart.
					if c.TimeWait == nil || *c.TimeWait || !c.FinWait2TimeWait {
						t.Errorf("client: time_wait %v fin_wait2_timewait %v, want false, true", c.TimeWait, c.FinWait2TimeWait)
					}
					// Sequence space, as the kernel counts it: SYN + 1 byte + FIN.
					if c.BytesAcked != 3 {
						t.Errorf("client bytes_acked %d, want 3", c.BytesAcked)
					}
				case "SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE":
					if c.TimeWait == nil || *c.TimeWait || c.BytesReceived != 2 { // 1 byte + FIN
						t.Errorf("server child: time_wait %v, bytes_received %d (want false, 2)", c.TimeWait, c.BytesReceived)
					}
					if c.HandshakeRTT == nil || *c.HandshakeRTT == 0 || *c.HandshakeRTT > uint64(time.Second) {
						t.Errorf("server child: handshake_ns %v", c.HandshakeRTT)
					}
				case "LISTEN>CLOSE":
				default:
					t.Errorf("connection timeline %s", got)
				}
				if c.Reset != "" || c.Error != "" || c.Retransmits != 0 || c.SynRetransmits != 0 {
					t.Errorf("clean close %s reports reset %q error %q retransmits %d/%d", got, c.Reset, c.Error, c.Retransmits, c.SynRetransmits)
				}
			}
			var cw *record
			for _, h := range ofType(recs, "histogram") {
				if h.State == "CLOSE_WAIT" {
					cw = &h
				}
			}
			if cw == nil || cw.Count != 1 || math.Abs(float64(cw.P50)-float64(hold)) > 0.1*float64(hold) {
				t.Errorf("CLOSE_WAIT histogram %+v, want one value near %v", cw, hold)
			}
			if st := ofType(recs, "stats"); len(st) == 1 && st[0].Attach != string(attach) {
				t.Errorf("stats attach %q, want %q", st[0].Attach, attach)
			}
		})
	}
}

// tracefsMounted looks at the host's mounts: PID 1's mount namespace.
// (/proc/self is the thread group leader's view, which is the tracer's
// private mount namespace while a tracepoint attach runs on that thread.)
func tracefsMounted(t *testing.T) bool {
	b, err := os.ReadFile("/proc/1/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), " /sys/kernel/tracing ")
}

func TestIPv6AndMapped(t *testing.T) {
	nettest.RequirePrivileges(t)
	t.Run("ipv6", func(t *testing.T) {
		ns := nettest.NewNetns(t)
		tr := startTracer(t, nsConfig(ns))
		server, client := oneConnection(t, ns, "[::1]:0", "[::1]", 50*time.Millisecond)
		recs := tr.stop(t)
		child := checkSockets(t, recs, server, client, "inet6")
		if child[0].Saddr != "::1" || child[0].Daddr != "::1" {
			t.Errorf("child addresses %s -> %s", child[0].Saddr, child[0].Daddr)
		}
	})
	t.Run("v4-mapped reads as IPv4", func(t *testing.T) {
		ns := nettest.NewNetns(t)
		tr := startTracer(t, nsConfig(ns))
		server := ns.Start(t, "server", "[::]:0", "1", "10ms")
		client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "1")
		client.Line()
		client.Wait()
		server.Wait()
		recs := tr.stop(t)
		for _, ts := range byCookie(recs) {
			if path(ts) == childPath {
				for _, r := range ts {
					if r.Family != "inet" || r.Saddr != "127.0.0.1" || r.Daddr != "127.0.0.1" {
						t.Errorf("accepted v4 client on a dual-stack listener: %s %s -> %s", r.Family, r.Saddr, r.Daddr)
					}
				}
				return
			}
		}
		t.Fatal("no accepted child seen")
	})
}

func TestPortFilter(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Ports = []uint16{8080}
	tr := startTracer(t, cfg)
	oneConnection(t, ns, "127.0.0.1:9090", "127.0.0.1", 10*time.Millisecond)
	server, client := oneConnection(t, ns, "127.0.0.1:8080", "127.0.0.1", 10*time.Millisecond)
	recs := tr.stop(t)
	for _, r := range ofType(recs, "transition") {
		if r.Sport != 8080 && r.Dport != 8080 {
			t.Errorf("transition on ports %d/%d passed --port 8080", r.Sport, r.Dport)
		}
	}
	checkSockets(t, recs, server, client, "inet")
}

func TestPIDFilter(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	server := ns.Start(t, "server", "127.0.0.1:0", "1", "10ms")
	cfg := nsConfig(ns)
	cfg.PID = uint32(server.PID)
	tr := startTracer(t, cfg)
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "1")
	client.Line()
	client.Wait()
	server.Wait()
	recs := tr.stop(t)
	socks := byCookie(recs)
	var paths []string
	for _, ts := range socks {
		paths = append(paths, path(ts))
	}
	slices.Sort(paths)
	want := []string{"LISTEN>CLOSE", childPath}
	if !slices.Equal(paths, want) {
		t.Fatalf("--pid %d saw %v, want %v (the listener, seeded at start, and its child)", server.PID, paths, want)
	}
}

// A server that was listening before the tracer started: its accepted
// children must still carry its PID (seeded from /proc through the
// socket iterator and inherited at accept), and the listener's own
// timeline is partial.
func TestSeedsExistingListener(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	server := ns.Start(t, "server", "127.0.0.1:0", "1", "10ms")
	tr := startTracer(t, nsConfig(ns))
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "1")
	client.Line()
	client.Wait()
	server.Wait()
	recs := tr.stop(t)
	var sawChild, sawListener bool
	for _, ts := range byCookie(recs) {
		switch path(ts) {
		case childPath:
			sawChild = true
			for _, r := range ts {
				if r.PID == nil || *r.PID != server.PID {
					t.Errorf("child %s->%s owner %v, want server %d", r.Old, r.New, r.PID, server.PID)
				}
			}
		case "LISTEN>CLOSE":
			sawListener = true
			if ts[0].DwellNs != nil {
				t.Errorf("listener older than the tracer has a dwell: %d", *ts[0].DwellNs)
			}
			if ts[0].PID == nil || *ts[0].PID != server.PID {
				t.Errorf("seeded listener owner %v, want %d", ts[0].PID, server.PID)
			}
		}
	}
	if !sawChild || !sawListener {
		t.Fatalf("child seen %v, listener seen %v", sawChild, sawListener)
	}
	for _, c := range ofType(recs, "connection") {
		if len(c.States) > 0 && c.States[0].State == "LISTEN" && (!c.Partial || c.Start != "") {
			t.Errorf("pre-existing listener: partial=%v start=%q, want partial and no start", c.Partial, c.Start)
		}
	}
}

func TestRefusedConnect(t *testing.T) {
	nettest.RequirePrivileges(t)
	bothAttachModes(t, testRefusedConnect)
}

// bothAttachModes runs test once per attach mode, in parallel.
func bothAttachModes(t *testing.T, test func(*testing.T, config.Attach)) {
	for _, a := range []config.Attach{config.AttachBTF, config.AttachTracepoint} {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			test(t, a)
		})
	}
}

func testRefusedConnect(t *testing.T, attach config.Attach) {
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Attach = attach
	tr := startTracer(t, cfg)
	p := ns.Start(t, "connect", "127.0.0.1:9", "2s")
	if l := p.Line(); !strings.Contains(l, "refused") {
		t.Fatalf("connect: %q", l)
	}
	p.Wait()
	recs := tr.stop(t)
	socks := byCookie(recs)
	if len(socks) != 1 {
		t.Fatalf("%d sockets", len(socks))
	}
	for _, ts := range socks {
		if got := path(ts); got != "CLOSE>SYN_SENT>CLOSE" {
			t.Fatalf("refused connect: %s", got)
		}
		if ts[1].PID == nil || *ts[1].PID != p.PID {
			t.Errorf("SYN_SENT->CLOSE runs in softirq; owner %v, want %d", ts[1].PID, p.PID)
		}
		if ts[1].Reset != "received" || ts[1].Error != "ECONNREFUSED" || ts[1].TimeWait == nil || *ts[1].TimeWait {
			t.Errorf("refused connect's CLOSE: reset %q error %q time_wait %v", ts[1].Reset, ts[1].Error, ts[1].TimeWait)
		}
	}
	c := ofType(recs, "connection")
	if len(c) != 1 || c[0].Reset != "received" || c[0].Error != "ECONNREFUSED" || c[0].SynRetransmits != 0 {
		t.Errorf("refused connection record: %+v", c)
	}
}

// A connect whose SYNs are dropped, given up by the application after
// 3.5 s: it must read as a hang with SYN retransmits, not as refused.
func TestConnectTimeoutShowsSynRetransmits(t *testing.T) {
	nettest.RequirePrivileges(t)
	bothAttachModes(t, testConnectTimeout)
}

func testConnectTimeout(t *testing.T, attach config.Attach) {
	connectTimeout(t, attach, "input")
}

// syn_retransmits counts the SYNs the kernel sent again whatever became
// of them: dropped by a local firewall on the way out (the retransmit
// tracepoint then reports an error, -EPERM) as well as on the way in
// (sent, err 0). The kernel's own count, total_retrans, read at the
// close, is the oracle.
func TestSynRetransmitsMatchTotalRetrans(t *testing.T) {
	nettest.RequirePrivileges(t)
	for _, hook := range []string{"output", "input"} {
		t.Run(hook, func(t *testing.T) {
			t.Parallel()
			bothAttachModes(t, func(t *testing.T, attach config.Attach) {
				c := connectTimeout(t, attach, hook)
				if c.TotalRetrans == nil {
					t.Fatal("no total_retrans on the connection record")
				}
				if c.SynRetransmits != *c.TotalRetrans {
					t.Errorf("syn_retransmits %d, total_retrans %d: want equal", c.SynRetransmits, *c.TotalRetrans)
				}
				t.Logf("nft drop on %s: syn_retransmits %d, total_retrans %d", hook, c.SynRetransmits, *c.TotalRetrans)
			})
		})
	}
}

// connectTimeout connects to a port whose SYNs nft drops on hook (input
// or output) and gives up after 3.5 s; it returns the connection record.
func connectTimeout(t *testing.T, attach config.Attach, hook string) record {
	ns := nettest.NewNetns(t)
	match := "tcp dport 9999 tcp flags syn drop"
	if hook == "input" {
		dropIn(t, ns, match)
	} else {
		nft(t, ns,
			"add table inet tcptrace_test",
			"add chain inet tcptrace_test out { type filter hook output priority 0 ; }",
			"add rule inet tcptrace_test out "+match)
	}
	cfg := nsConfig(ns)
	cfg.Attach = attach
	tr := startTracer(t, cfg)
	p := ns.Start(t, "connect", "127.0.0.1:9999", "3500ms")
	if l := p.Line(); !strings.Contains(l, "timeout") {
		t.Fatalf("connect: %q, want a timeout", l)
	}
	p.Wait()
	recs := tr.stop(t)
	c := ofType(recs, "connection")
	if len(c) != 1 {
		t.Fatalf("%d connection records", len(c))
	}
	var states []string
	for _, s := range c[0].States {
		states = append(states, s.State)
	}
	if got := strings.Join(states, ">"); got != "SYN_SENT>CLOSE" {
		t.Errorf("timeline %s", got)
	}
	// Linear SYN retries here: at +1 s, +2 s, +3 s (KERNEL-NOTES).
	if c[0].SynRetransmits < 2 || c[0].Reset != "" || c[0].Error != "" {
		t.Errorf("syn_retransmits %d reset %q error %q; want >= 2 and neither", c[0].SynRetransmits, c[0].Reset, c[0].Error)
	}
	if d := c[0].States[0].DwellNs; d == nil || time.Duration(*d) < 3400*time.Millisecond {
		t.Errorf("SYN_SENT dwell %v, want about 3.5 s", d)
	}
	return c[0]
}

// --emit histograms keeps the histograms in the kernel. Run it beside a
// tracer that builds them from records, on the same traffic: the counts
// must agree exactly, and the values to within the microseconds by
// which the two tracers' programs read the clock apart (the bucket
// function itself is checked value for value in internal/probe).
func TestKernelAggregationMatchesUserSpace(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	full := startTracer(t, nsConfig(ns))
	aggCfg := nsConfig(ns)
	aggCfg.Emit = config.EmitHistograms
	agg := startTracer(t, aggCfg)
	server := ns.Start(t, "server", "127.0.0.1:0", "20", "3ms")
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "20")
	client.Line()
	client.Wait()
	server.Wait()
	fromRecords := ofType(full.stop(t), "histogram")
	aggRecs := agg.stop(t)
	if n := len(ofType(aggRecs, "transition")) + len(ofType(aggRecs, "connection")); n != 0 {
		t.Errorf("--emit histograms wrote %d transition/connection records", n)
	}
	st := ofType(aggRecs, "stats")
	if len(st) != 1 || st[0].Aggregated != 20*10+2 || st[0].Events != 0 || st[0].StorageFail != 0 {
		t.Errorf("stats %+v, want 202 transitions aggregated in the kernel, none sent, every socket's state found", st)
	}
	fromKernel := ofType(aggRecs, "histogram")
	if len(fromKernel) == 0 || len(fromKernel) != len(fromRecords) {
		t.Fatalf("%d kernel histograms, %d from records", len(fromKernel), len(fromRecords))
	}
	near := func(a, b uint64) bool {
		return math.Abs(float64(a)-float64(b)) <= 20000+0.05*float64(max(a, b))
	}
	for i := range fromKernel {
		k, u := fromKernel[i], fromRecords[i]
		// Not max: one interrupt between the two programs shifts a single
		// value by tens of microseconds.
		if k.State != u.State || k.Count != u.Count || !near(k.MinNs, u.MinNs) ||
			!near(k.SumNs/k.Count, u.SumNs/u.Count) || !near(k.P50, u.P50) {
			t.Errorf("state %s: kernel count %d min %d max %d sum %d p50 %d; records count %d min %d max %d sum %d p50 %d",
				u.State, k.Count, k.MinNs, k.MaxNs, k.SumNs, k.P50, u.Count, u.MinNs, u.MaxNs, u.SumNs, u.P50)
		}
	}
}

// The histogram-only mode keeps each socket's entry time in a table of
// --max-conns slots chosen by the socket's cookie. Many more short
// connections than slots pass while a few long ones stay open: the long
// ones must keep their slots (a table indexed by cookie alone gives each
// slot to a newer socket once per wrap), so their stays are counted. A
// simulation of the table on a recorded run of this test is in
// docs/performance.md.
func TestHistogramSlotsKeepLongLivedSockets(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.Emit = config.EmitHistograms
	cfg.Stuck = [event.NumStates]time.Duration{}
	cfg.MaxConns = 2048 // 4096 slots
	tr := startTracer(t, cfg)
	// 6,000 cookies for the short-lived sockets: every slot is someone's
	// own slot once or twice. Fewer than 2048 are alive at once (the
	// server accepts more slowly than the client connects: ~550 waited
	// in its queue in a run of 1,500).
	const long, short = 4, 3000
	holdAndChurn(t, ns, "127.0.0.1:7201", long, short, "3s")
	recs := tr.stop(t)
	st := ofType(recs, "stats")
	var est *record
	for _, h := range ofType(recs, "histogram") {
		if h.State == "ESTABLISHED" {
			est = &h
		}
	}
	if len(st) != 1 || est == nil {
		t.Fatalf("stats %+v, ESTABLISHED histogram %v", st, est)
	}
	// At most one long socket may lose its slot, when its alternate slot
	// happens to be held by another long socket.
	if want := uint64(2*short + 2*long - 1); est.Count < want || st[0].StorageFail > 1 {
		t.Errorf("ESTABLISHED stays %d (want at least %d), storage_fail %d (want at most 1)",
			est.Count, want, st[0].StorageFail)
	}
	if time.Duration(est.MaxNs) < 2*time.Second {
		t.Errorf("longest ESTABLISHED stay %v, want the held connections' ~3 s", time.Duration(est.MaxNs))
	}
}

// The CLOSE_WAIT-leak detector: a server that holds CLOSE_WAIT past the
// limit is named while it is stuck, whether the connection began before
// the tracer (age counted from start, "at least") or after. The state
// tally counts the existing sockets, TIME_WAIT included.
func TestStuckCloseWaitAndStateCounts(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	// A leak already there when the tracer starts.
	old := ns.Start(t, "server", "127.0.0.1:7001", "1", "4s")
	oldClient := ns.Start(t, "client", "127.0.0.1:7001", "1")
	oldClient.Line()
	oldClient.Wait()
	time.Sleep(200 * time.Millisecond)

	cfg := nsConfig(ns)
	cfg.Stuck = [13]time.Duration{}
	cfg.Stuck[8] = time.Second // CLOSE_WAIT
	cfg.Interval = 500 * time.Millisecond
	tr := startTracer(t, cfg)
	fresh := ns.Start(t, "server", "127.0.0.1:7002", "1", "2500ms")
	freshClient := ns.Start(t, "client", "127.0.0.1:7002", "1")
	freshClient.Line()
	freshClient.Wait()
	fresh.Wait()
	old.Wait()
	recs := tr.stop(t)

	stuck := ofType(recs, "stuck")
	if len(stuck) != 2 {
		t.Fatalf("%d stuck records, want 2: %+v", len(stuck), stuck)
	}
	for _, s := range stuck {
		if s.State != "CLOSE_WAIT" || s.PID == nil || s.AgeNs < uint64(time.Second) || s.AgeNs > uint64(1500*time.Millisecond) {
			t.Errorf("stuck record %+v", s)
			continue
		}
		switch s.Sport {
		case 7001:
			if *s.PID != old.PID || !s.AgeAtLeast {
				t.Errorf("pre-existing leak: pid %d at_least %v, want %d true", *s.PID, s.AgeAtLeast, old.PID)
			}
		case 7002:
			if *s.PID != fresh.PID || s.AgeAtLeast {
				t.Errorf("new leak: pid %d at_least %v, want %d false", *s.PID, s.AgeAtLeast, fresh.PID)
			}
		default:
			t.Errorf("stuck record for port %d", s.Sport)
		}
	}
	states := ofType(recs, "states")
	if len(states) < 3 {
		t.Fatalf("%d states records, want one at start, one per interval and one at exit", len(states))
	}
	first, last := states[0].Counts, states[len(states)-1].Counts
	// The old client exited: its socket lingers as a timewait socket in
	// the FIN_WAIT2 substate, which netstat shows as FIN_WAIT2.
	if first["CLOSE_WAIT"] != 1 || first["FIN_WAIT2"] != 1 || first["LISTEN"] != 1 || len(first) != 3 {
		t.Errorf("state counts at start %v, want CLOSE_WAIT 1, FIN_WAIT2 1, LISTEN 1", first)
	}
	if last["TIME_WAIT"] != 2 {
		t.Errorf("state counts at exit %v, want the 2 clients' TIME_WAIT sockets", last)
	}
}

// --state, --min-dwell (in the kernel and in user space) and --cgroup, each
// in a tracer of its own on the same traffic: a server in a cgroup of the
// test's that holds CLOSE_WAIT for 1 s, and a client outside it.
func TestFocusFilters(t *testing.T) {
	nettest.RequirePrivileges(t)
	mount, _, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		if os.Getenv(nettest.RequireEnv) == "1" {
			t.Fatalf("no cgroup v2: %v", err)
		}
		t.Skipf("no cgroup v2: %v", err)
	}
	cg := filepath.Join(mount, fmt.Sprintf("tcptrace-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })

	ns := nettest.NewNetns(t)
	byState := nsConfig(ns)
	byState.States[event.CloseWait] = true
	kernelMin := nsConfig(ns)
	kernelMin.Emit, kernelMin.MinDwell = config.EmitTransitions, 500*time.Millisecond
	userMin := nsConfig(ns)
	userMin.MinDwell = 500 * time.Millisecond
	byCgroup := nsConfig(ns)
	byCgroup.Cgroup = "/" + filepath.Base(cg)
	tracers := []*traced{startTracer(t, byState), startTracer(t, kernelMin), startTracer(t, userMin), startTracer(t, byCgroup)}

	// The server joins the cgroup before it opens any socket.
	server := ns.StartIn(t, cg, "server", "127.0.0.1:0", "1", "1s")
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "1")
	client.Line()
	client.Wait()
	server.Wait()
	var recs [][]record
	for _, tr := range tracers {
		recs = append(recs, tr.stop(t))
	}

	for _, r := range ofType(recs[0], "transition") {
		if r.Old != "CLOSE_WAIT" && r.New != "CLOSE_WAIT" {
			t.Errorf("--state CLOSE_WAIT let %s->%s through", r.Old, r.New)
		}
	}
	if n := len(ofType(recs[0], "transition")); n != 2 {
		t.Errorf("--state CLOSE_WAIT: %d transitions, want 2 (into and out of it)", n)
	}
	if c := ofType(recs[0], "connection"); len(c) != 1 || c[0].Sport != server.Port {
		t.Errorf("--state CLOSE_WAIT: connections %+v, want the server's accepted socket only", c)
	}
	for i, name := range []string{"kernel", "user space"} {
		var got []string
		for _, r := range ofType(recs[1+i], "transition") {
			got = append(got, r.Old+">"+r.New)
		}
		slices.Sort(got)
		// CLOSE_WAIT held 1 s by the server; its listener lived about as long.
		if want := []string{"CLOSE_WAIT>LAST_ACK", "LISTEN>CLOSE"}; !slices.Equal(got, want) {
			t.Errorf("--min-dwell 500ms in %s: %v, want %v", name, got, want)
		}
	}
	socks := byCookie(recs[3])
	if len(socks) != 2 {
		t.Errorf("--cgroup: %d sockets, want the server's 2 (listener and accepted), not the client's", len(socks))
	}
	for _, ts := range socks {
		if ts[0].PID == nil || *ts[0].PID != server.PID {
			t.Errorf("--cgroup let a socket of pid %v through", ts[0].PID)
		}
	}
}

// --cgroup-fields: a server started in a cgroup of the test's own gets
// that cgroup's path (and, the directory being named like a systemd
// service, its unit) on its connection and stuck records; the client,
// in the test's cgroup, gets that one if it was still running when its
// first record was read.
func TestCgroupFields(t *testing.T) {
	nettest.RequirePrivileges(t)
	mount, mountRoot, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		if os.Getenv(nettest.RequireEnv) == "1" {
			t.Fatalf("no cgroup v2: %v", err)
		}
		t.Skipf("no cgroup v2: %v", err)
	}
	unit := fmt.Sprintf("tcptrace-test-%d.service", os.Getpid())
	cg := filepath.Join(mount, unit)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	want := filepath.Join(mountRoot, unit) // as /proc/PID/cgroup shows it
	self, err := cgroup.OfPID("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}

	ns := nettest.NewNetns(t)
	cfg := nsConfig(ns)
	cfg.CgroupFields = true
	cfg.Stuck = [event.NumStates]time.Duration{}
	cfg.Stuck[event.CloseWait] = 300 * time.Millisecond
	tr := startTracer(t, cfg)
	server := ns.StartIn(t, cg, "server", "127.0.0.1:0", "1", "1s") // holds CLOSE_WAIT 1 s
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), "1")
	client.Line()
	client.Wait()
	server.Wait()
	recs := tr.stop(t)

	var serverConns, clientConns, stuck int
	for _, r := range recs {
		if r.Type != "connection" && r.Type != "stuck" || r.PID == nil {
			continue
		}
		switch {
		case *r.PID == server.PID:
			if r.Cgroup != want || r.Unit != unit {
				t.Errorf("server's %s record: cgroup %q unit %q, want %q and %q", r.Type, r.Cgroup, r.Unit, want, unit)
			}
			if r.Type == "stuck" {
				stuck++
			} else {
				serverConns++
			}
		case *r.PID == client.PID:
			clientConns++
			// The client may have exited before the tracer read its
			// first record: then it has no cgroup (docs/ndjson.md).
			if r.Cgroup != "" && r.Cgroup != self {
				t.Errorf("client's connection record: cgroup %q, want the test's %q", r.Cgroup, self)
			}
		}
	}
	// The listener and the accepted socket; the client's one; the
	// accepted socket's CLOSE_WAIT past 300 ms.
	if serverConns != 2 || clientConns != 1 || stuck != 1 {
		t.Errorf("%d server connections, %d client connections, %d stuck records; want 2, 1, 1", serverConns, clientConns, stuck)
	}
}

// A full accept queue is silent on the server side: the kernel drops the
// SYNs of new clients, which sit in SYN_SENT. The listener record shows
// the queue over its limit; the clients show stuck SYN_SENT and SYN
// retransmits.
func TestFullAcceptQueue(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	server := ns.Start(t, "noaccept", "127.0.0.1:7100", "1", "10s")
	cfg := nsConfig(ns)
	cfg.Interval = 300 * time.Millisecond
	cfg.Stuck = [13]time.Duration{}
	cfg.Stuck[event.SynSent] = 500 * time.Millisecond
	tr := startTracer(t, cfg)
	var clients []*nettest.Peer
	for i := 0; i < 4; i++ {
		clients = append(clients, ns.Start(t, "connect", "127.0.0.1:7100", "2500ms"))
	}
	for _, c := range clients {
		c.Line()
		c.Wait()
	}
	recs := tr.stop(t)

	var full bool
	for _, l := range ofType(recs, "listener") {
		if l.Sport == 7100 && l.PID != nil && *l.PID == server.PID && l.AcceptQueue >= 2 && l.AcceptQueueMax == 1 {
			full = true
		}
	}
	if !full {
		t.Errorf("no listener record with the accept queue over its limit of 1: %+v", ofType(recs, "listener"))
	}
	var hung int
	for _, c := range ofType(recs, "connection") {
		if c.Dport == 7100 && c.SynRetransmits >= 1 {
			hung++
		}
	}
	stuck := ofType(recs, "stuck")
	if hung < 2 || len(stuck) < 2 {
		t.Errorf("%d clients with SYN retransmits, %d stuck records; want the 2 whose SYNs the full queue dropped", hung, len(stuck))
	}
}

// The server's real handshake time: the final ACK (and the data after it)
// dropped for 1.5 s, so the kernel retransmits the SYN-ACK and the child
// socket appears only when a later segment completes the handshake
// (KERNEL-NOTES). The full socket's SYN_RECV lasts microseconds; the
// handshake, from the first SYN-ACK, lasted seconds, and that is what the
// connection and the SYN_RECV histogram must show.
func TestHandshakeTimeWithSynAckRetransmits(t *testing.T) {
	nettest.RequirePrivileges(t)
	bothAttachModes(t, testHandshakeTime)
}

func testHandshakeTime(t *testing.T, attach config.Attach) {
	ns := nettest.NewNetns(t)
	run := func(rule string) { t.Helper(); nft(t, ns, rule) }
	// A port of each attach mode's own: the two run in parallel, and the
	// histogram-only tracer below is not confined to the namespace.
	port := 7300
	if attach == config.AttachTracepoint {
		port = 7301
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := nsConfig(ns)
	cfg.Attach = attach
	tr := startTracer(t, cfg)
	// Beside it, the histogram-only mode, which keeps its histograms in
	// the kernel: the same handshake in its SYN_RECV histogram. Filtered
	// by port, not namespace: without a namespace filter that mode reads
	// the namespace only for the retransmitted handshake's key.
	aggCfg := cfg
	aggCfg.Emit = config.EmitHistograms
	aggCfg.Netns = 0
	aggCfg.Ports = []uint16{uint16(port)}
	aggCfg.Stuck = [event.NumStates]time.Duration{}
	agg := startTracer(t, aggCfg)
	server := ns.Start(t, "server", addr, "1", "0s")
	run("add table inet tcptrace_hs")
	run("add chain inet tcptrace_hs in { type filter hook input priority 0 ; }")
	run(fmt.Sprintf("add rule inet tcptrace_hs in tcp dport %d tcp flags & (syn | ack) == ack drop", port))
	client := ns.Start(t, "client", addr, "1")
	client.Line()
	time.Sleep(1500 * time.Millisecond)
	run("delete table inet tcptrace_hs")
	client.Wait()
	server.Wait()
	waitClosed(t, ns)
	recs := tr.stop(t)

	var child *record
	for _, c := range ofType(recs, "connection") {
		if c.Sport == port && len(c.States) > 0 && c.States[0].State == "SYN_RECV" {
			child = &c
		}
	}
	if child == nil {
		t.Fatal("no accepted connection")
	}
	if child.HandshakeRTT == nil || time.Duration(*child.HandshakeRTT) < 1400*time.Millisecond ||
		time.Duration(*child.HandshakeRTT) > 10*time.Second || child.SynAckRetrans < 1 {
		t.Fatalf("handshake_ns %v, synack_retransmits %d; want over 1.4 s and at least 1", child.HandshakeRTT, child.SynAckRetrans)
	}
	// One truth in every view: the timeline's SYN_RECV stay is the
	// handshake (inferred: it began before the full socket existed), and
	// the connection starts with it; the transition keeps the kernel's
	// microseconds of the full socket, and says it was accepted.
	hs := *child.HandshakeRTT
	if sp := child.States[0]; sp.DwellNs == nil || *sp.DwellNs != hs || !sp.Inferred {
		t.Errorf("timeline SYN_RECV %+v, want the handshake %d ns, inferred", sp, hs)
	}
	start, err1 := time.Parse(time.RFC3339Nano, child.Start)
	est, err2 := time.Parse(time.RFC3339Nano, child.States[1].TS)
	if err1 != nil || err2 != nil || est.Sub(start) != time.Duration(hs) || child.States[0].TS != child.Start {
		t.Errorf("start %s, ESTABLISHED at %s: want start = handshake start", child.Start, child.States[1].TS)
	}
	for _, tr := range ofType(recs, "transition") {
		if tr.Sport == port && tr.Old == "SYN_RECV" && tr.New == "ESTABLISHED" {
			if !tr.Accepted || tr.HandshakeRTT == nil || *tr.HandshakeRTT != hs || tr.DwellNs == nil || time.Duration(*tr.DwellNs) > 100*time.Millisecond {
				t.Errorf("SYN_RECV->ESTABLISHED transition %+v: want accepted, handshake_ns %d, the full socket's µs dwell", tr, hs)
			}
		}
	}
	for _, h := range ofType(recs, "histogram") {
		if h.State == "SYN_RECV" && (h.Count != 1 || math.Abs(float64(h.P50)-float64(*child.HandshakeRTT)) > 0.05*float64(*child.HandshakeRTT)) {
			t.Errorf("SYN_RECV histogram %+v, want the one handshake of %v", h, time.Duration(*child.HandshakeRTT))
		}
	}
	var kernelHist bool
	for _, h := range ofType(agg.stop(t), "histogram") {
		if h.State == "SYN_RECV" {
			kernelHist = true
			if h.Count != 1 || math.Abs(float64(h.P50)-float64(hs)) > 0.05*float64(hs) {
				t.Errorf("--emit histograms: SYN_RECV histogram %+v, want the one handshake of %v", h, time.Duration(hs))
			}
		}
	}
	if !kernelHist {
		t.Error("--emit histograms: no SYN_RECV histogram")
	}
	t.Logf("handshake %v with %d SYN-ACK retransmits", time.Duration(*child.HandshakeRTT), child.SynAckRetrans)
}

// dropIn drops the incoming packets that match (an nft match such as
// "tcp dport 9999 tcp flags syn drop") in the test's namespace, in the
// table tcptrace_test (delete it to stop).
func dropIn(t *testing.T, ns *nettest.Netns, match string) {
	t.Helper()
	nft(t, ns,
		"add table inet tcptrace_test",
		"add chain inet tcptrace_test in { type filter hook input priority 0 ; }",
		"add rule inet tcptrace_test in "+match)
}

// nft runs nftables commands inside the test's namespace; the rules go
// with the namespace.
func nft(t *testing.T, ns *nettest.Netns, rules ...string) {
	t.Helper()
	bin, err := exec.LookPath("nft")
	if err != nil {
		if os.Getenv(nettest.RequireEnv) == "1" {
			t.Fatal("needs nft (nftables)")
		}
		t.Skip("needs nft (nftables)")
	}
	for _, rule := range rules {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, strings.Fields(rule)...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v: %s", rule, err, out)
		}
	}
}

// Several tracepoint-mode tracers starting at once on a host without
// tracefs: each mounts it in a private mount namespace, so none can pull
// it from under another, and the host's mounts stay as they were.
func TestConcurrentTracepointAttach(t *testing.T) {
	nettest.RequirePrivileges(t)
	before := tracefsMounted(t)
	ns := nettest.NewNetns(t)
	var trs [4]*traced
	done := make(chan int, len(trs))
	for i := range trs {
		go func() {
			defer func() { done <- i }() // also when startTracer fails
			cfg := nsConfig(ns)
			cfg.Attach = config.AttachTracepoint
			trs[i] = startTracer(t, cfg)
		}()
	}
	for range trs {
		<-done
	}
	for _, tr := range trs {
		if tr == nil {
			t.FailNow() // startTracer said why
		}
	}
	server, client := oneConnection(t, ns, "127.0.0.1:0", "127.0.0.1", 10*time.Millisecond)
	for _, tr := range trs {
		checkSockets(t, tr.stop(t), server, client, "inet")
	}
	if tracefsMounted(t) != before {
		t.Error("the host's tracefs mount changed")
	}
}

// holdAndChurn holds long connections to a sink at addr open for holdFor
// while short connections come and go beside them, and returns when all
// are closed by their peers.
func holdAndChurn(t *testing.T, ns *nettest.Netns, addr string, long, short int, holdFor string) {
	t.Helper()
	sink := ns.Start(t, "sink", addr, strconv.Itoa(long))
	hold := ns.Start(t, "hold", addr, strconv.Itoa(long), holdFor)
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	server := ns.Start(t, "server", "127.0.0.1:0", strconv.Itoa(short), "0s")
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), strconv.Itoa(short))
	client.Line()
	client.Wait()
	server.Wait()
	hold.Wait()
	sink.Wait()
}
