//go:build linux

package tracer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
	schema "github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// The tests of the periodic socket walk's answers (issue 22 items 1, 6,
// 7, 9), each built like the user's situation: the pile exists before
// the tracer starts, and its age is checked against the kernel (`ss -ti`)
// and the test's own clock.

// answer is what these tests read of a record (docs/ndjson.md).
type answer struct {
	Type       string         `json:"type"`
	TS         time.Time      `json:"ts"`
	State      string         `json:"state"`
	Cookie     uint64         `json:"cookie"`
	Sport      int            `json:"sport"`
	Daddr      string         `json:"daddr"`
	Dport      int            `json:"dport"`
	PID        *int           `json:"pid"`
	AgeNs      uint64         `json:"age_ns"`
	StateAgeNs uint64         `json:"state_age_ns"`
	AgeAtLeast bool           `json:"age_at_least"`
	AgeSource  string         `json:"age_source"`
	HalfOpen   uint64         `json:"half_open"`
	Count      uint64         `json:"count"`
	OldestNs   uint64         `json:"oldest_ns"`
	Since      time.Time      `json:"since"`
	Open       bool           `json:"open"`
	Limits     *schema.Limits `json:"limits"`
	States     []struct {
		State     string    `json:"state"`
		TS        time.Time `json:"ts"`
		AgeSource string    `json:"age_source"`
	} `json:"states"`
	Progress        *uint64 `json:"progress"`
	ProgressSkipped *uint64 `json:"progress_skipped"`
	Walks           uint64  `json:"walks"`
	WalkNs          uint64  `json:"walk_ns"`
}

// answers stops the tracer (every line checked against the schema) and
// returns its records of the given types.
func answers(t *testing.T, tr *traced, types ...string) []answer {
	t.Helper()
	tr.stop(t)
	var out []answer
	sc := bufio.NewScanner(strings.NewReader(tr.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var a answer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		for _, typ := range types {
			if a.Type == typ {
				out = append(out, a)
			}
		}
	}
	return out
}

// ssLastack returns the kernel's `lastack` (ms since the last ACK was
// received, what rcv_tstamp holds) of each socket `ss -ti` shows in the
// namespace in state, by peer port.
func ssLastack(t *testing.T, ns *nettest.Netns, state string) map[int]time.Duration {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Htin", "state", state).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	port := regexp.MustCompile(`^\d+\s+\d+\s+\S+:\d+\s+\S+:(\d+)`)
	lastack := regexp.MustCompile(`lastack:(\d+)`)
	got := map[int]time.Duration{}
	cur := -1
	for _, line := range strings.Split(string(out), "\n") {
		if m := port.FindStringSubmatch(line); m != nil {
			cur, _ = strconv.Atoi(m[1])
		}
		if m := lastack.FindStringSubmatch(line); m != nil && cur >= 0 {
			ms, _ := strconv.Atoi(m[1])
			got[cur] = time.Duration(ms) * time.Millisecond
		}
	}
	return got
}

func within(d, want, tol time.Duration) bool { return d >= want-tol && d <= want+tol }

// A CLOSE_WAIT leak older than the tracer (issue 22 item 1): the peers
// sent data, stayed idle 5 s, then sent their FIN; the server never
// closes. 25 s later the tracer starts with a 10 s CLOSE_WAIT limit: the
// stuck records come within 2 s of its ready line (not 10 s later), with
// the FIN's age (the test's clock and `ss -ti` lastack agree within a
// second), marked a lower bound from rcv_tstamp, not from the last data
// (5 s older). The connection records at exit start their CLOSE_WAIT at
// the FIN, with the same source.
func TestOldCloseWaitLeakAgeFromKernel(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	// Without keepalive: each answered keepalive probe (Go's default,
	// every 15 s) refreshes rcv_tstamp, and the figure is then the
	// time since that answer (still a lower bound; docs/ndjson.md).
	leak := ns.Start(t, "leak", "127.0.0.1:7401", "3", "nokeepalive")
	peers := ns.Start(t, "idleclose", "127.0.0.1:7401", "3", "5s")
	if l := peers.Line(); l != "connected" {
		t.Fatalf("idleclose: %q", l)
	}
	if l := leak.Line(); l != "accepted" {
		t.Fatalf("leak: %q", l)
	}
	if l := peers.Line(); l != "closing" {
		t.Fatalf("idleclose: %q", l)
	}
	fin := time.Now()
	peers.Wait()
	time.Sleep(25 * time.Second)
	if n := ssCount(t, ns, "close-wait"); n != 3 {
		t.Fatalf("ss shows %d CLOSE-WAIT, want 3", n)
	}
	lastack := ssLastack(t, ns, "close-wait")
	ssAt := time.Now()

	tr := startTracer(t, stuckWatch(ns, map[event.State]time.Duration{event.CloseWait: 10 * time.Second}))
	ready := time.Now()
	time.Sleep(2500 * time.Millisecond)
	recs := answers(t, tr, "stuck", "connection")
	var stuck int
	for _, r := range recs {
		if r.Type != "stuck" {
			continue
		}
		stuck++
		finAge := r.TS.Sub(fin)
		if r.State != "CLOSE_WAIT" || r.Sport != 7401 || !r.AgeAtLeast || r.AgeSource != "rcv_tstamp" ||
			r.PID == nil || *r.PID != leak.PID {
			t.Errorf("stuck record %+v, want CLOSE_WAIT on 7401 held by %d, at least, from rcv_tstamp", r, leak.PID)
		}
		if r.TS.Sub(ready) > 2*time.Second {
			t.Errorf("stuck record at %v, %v after the ready line (at most 2 s)", r.TS, r.TS.Sub(ready))
		}
		if !within(time.Duration(r.AgeNs), finAge, time.Second) {
			t.Errorf("age %v, the FIN's true age then %v (test's clock)", time.Duration(r.AgeNs), finAge)
		}
		if la, ok := lastack[r.Dport]; !ok {
			t.Errorf("ss -ti shows no lastack for the peer port %d: %v", r.Dport, lastack)
		} else if want := la + r.TS.Sub(ssAt); !within(time.Duration(r.AgeNs), want, time.Second) {
			t.Errorf("age %v, ss -ti lastack says %v", time.Duration(r.AgeNs), want)
		}
	}
	if stuck != 3 {
		t.Errorf("%d stuck records, want 3 (ss -ti lastack %v)", stuck, lastack)
	}
	var conns int
	for _, r := range recs {
		if r.Type != "connection" || r.Sport != 7401 || len(r.States) == 0 || r.States[0].State != "CLOSE_WAIT" {
			continue
		}
		conns++
		s := r.States[0]
		if s.AgeSource != "rcv_tstamp" || !within(s.TS.Sub(fin), 0, time.Second) {
			t.Errorf("connection's CLOSE_WAIT starts %v (%v from the FIN), source %q; want the FIN's time from rcv_tstamp",
				s.TS, s.TS.Sub(fin), s.AgeSource)
		}
	}
	if conns != 3 {
		t.Errorf("%d open connection records of the leak, want 3", conns)
	}
}

// A connect that hangs, older than the tracer: its SYNs are dropped, and
// 6 s later the tracer starts with a 3 s SYN_SENT limit. The stuck record
// comes at once, aged from the first SYN (retrans_stamp, set by the first
// retransmit), within a second of the test's clock.
func TestOldSynSentAgeFromFirstSyn(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	dropIn(t, ns, "tcp dport 7406 tcp flags syn drop")
	p := ns.Start(t, "connect", "127.0.0.1:7406", "20s")
	syn := time.Now()
	time.Sleep(6 * time.Second)
	if n := ssCount(t, ns, "syn-sent"); n != 1 {
		t.Fatalf("ss shows %d SYN-SENT, want 1", n)
	}
	tr := startTracer(t, stuckWatch(ns, map[event.State]time.Duration{event.SynSent: 3 * time.Second}))
	ready := time.Now()
	time.Sleep(1500 * time.Millisecond)
	recs := answers(t, tr, "stuck")
	if len(recs) != 1 {
		t.Fatalf("%d stuck records, want 1: %+v", len(recs), recs)
	}
	r := recs[0]
	if r.State != "SYN_SENT" || r.Dport != 7406 || r.Sport == 0 || !r.AgeAtLeast || r.AgeSource != "retrans_stamp" ||
		r.PID == nil || *r.PID != p.PID {
		t.Errorf("stuck record %+v, want SYN_SENT to 7406 by %d, from retrans_stamp", r, p.PID)
	}
	if r.TS.Sub(ready) > time.Second || !within(time.Duration(r.AgeNs), r.TS.Sub(syn), time.Second) {
		t.Errorf("stuck record at %v after ready, age %v; the SYN's age then %v", r.TS.Sub(ready), time.Duration(r.AgeNs), r.TS.Sub(syn))
	}
}

// A half-closed connection older than the tracer: the client shut its
// side down 8 s before the tracer starts and holds the socket in
// FIN_WAIT2; the server never closes (CLOSE_WAIT). With 5 s limits both
// are stuck at once, aged from the ACK of the client's FIN and from the
// FIN itself (rcv_tstamp on each side), and the FIN_WAIT2 record names
// the namespace's tcp_fin_timeout, read there (set to 17 for the test).
func TestOldFinWait2AgainstFinTimeout(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-w", "net.ipv4.tcp_fin_timeout=17").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	leak := ns.Start(t, "leak", "127.0.0.1:7407", "1", "nokeepalive")
	client := ns.Start(t, "idleclose", "127.0.0.1:7407", "1", "0s", "shutdown")
	if l := client.Line(); l != "connected" {
		t.Fatalf("idleclose: %q", l)
	}
	if l := client.Line(); l != "closing" {
		t.Fatalf("idleclose: %q", l)
	}
	fin := time.Now()
	time.Sleep(8 * time.Second)
	if ssCount(t, ns, "fin-wait-2") != 1 || ssCount(t, ns, "close-wait") != 1 {
		t.Fatal("ss does not show the FIN-WAIT-2 and CLOSE-WAIT pair")
	}
	tr := startTracer(t, stuckWatch(ns, map[event.State]time.Duration{event.FinWait2: 5 * time.Second, event.CloseWait: 5 * time.Second}))
	time.Sleep(1500 * time.Millisecond)
	recs := answers(t, tr, "stuck")
	var states []string
	for _, r := range recs {
		states = append(states, r.State)
		if !r.AgeAtLeast || r.AgeSource != "rcv_tstamp" || !within(time.Duration(r.AgeNs), r.TS.Sub(fin), time.Second) {
			t.Errorf("%s stuck record aged %v from %q, the FIN's age then %v", r.State, time.Duration(r.AgeNs), r.AgeSource, r.TS.Sub(fin))
		}
		switch r.State {
		case "FIN_WAIT2":
			if r.Limits == nil || r.Limits.TCPFinTimeout == nil || *r.Limits.TCPFinTimeout != 17 || r.PID == nil || *r.PID != client.PID {
				t.Errorf("FIN_WAIT2 stuck record %+v, want tcp_fin_timeout 17 and the client %d", r, client.PID)
			}
		case "CLOSE_WAIT":
			if r.PID == nil || *r.PID != leak.PID {
				t.Errorf("CLOSE_WAIT stuck record %+v, want the server %d", r, leak.PID)
			}
		}
	}
	if slices.Sort(states); !slices.Equal(states, []string{"CLOSE_WAIT", "FIN_WAIT2"}) {
		t.Errorf("stuck records in %v, want CLOSE_WAIT and FIN_WAIT2", states)
	}
}

// A half-open pile older than the tracer (issue 22 item 6): five
// handshakes whose final ACKs are dropped; the tracer starts 17 s later,
// between the SYN-ACK retransmits at 15 s and 31 s, so none happens while
// it runs. The walk sees the request sockets: one stuck record within a
// walk of the start, the oldest's age from snt_synack, with the listener's
// backlog and the namespace's settings; when the ACKs pass again and the
// clients' FINs complete the handshakes, a cleared record.
func TestOldHalfOpenPileFromRequestSockets(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	sink := ns.Start(t, "sink", "127.0.0.1:7402", "5")
	dropIn(t, ns, "tcp dport 7402 tcp flags & (syn | ack) == ack drop")
	hold := ns.Start(t, "hold", "127.0.0.1:7402", "5", "21s")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	synAt := time.Now()
	time.Sleep(17 * time.Second)
	if n := ssCount(t, ns, "syn-recv"); n != 5 {
		t.Fatalf("ss shows %d SYN-RECV, want 5 half-open", n)
	}
	tr := startTracer(t, stuckWatch(ns, map[event.State]time.Duration{event.SynRecv: 5 * time.Second}))
	ready := time.Now()
	time.Sleep(2 * time.Second)
	nft(t, ns, "delete table inet tcptrace_test")
	hold.Wait() // the clients close: their FIN's ACK completes each handshake
	sink.Wait()
	time.Sleep(2 * time.Second)
	recs := answers(t, tr, "stuck", "cleared")
	if len(recs) != 2 || recs[0].Type != "stuck" || recs[1].Type != "cleared" {
		t.Fatalf("records %+v, want one stuck then one cleared\n%s", recs, tr.errOut)
	}
	s, c := recs[0], recs[1]
	if s.State != "SYN_RECV" || s.HalfOpen != 5 || s.Sport != 7402 || s.PID == nil || *s.PID != sink.PID ||
		s.AgeSource != "snt_synack" || !within(time.Duration(s.AgeNs), s.TS.Sub(synAt), time.Second) {
		t.Errorf("stuck record %+v, want 5 half-open on 7402 owned by %d, aged %v from snt_synack", s, sink.PID, s.TS.Sub(synAt))
	}
	if s.TS.Sub(ready) > 1500*time.Millisecond {
		t.Errorf("stuck record %v after the ready line", s.TS.Sub(ready))
	}
	if l := s.Limits; l == nil || l.ListenBacklog == nil || *l.ListenBacklog == 0 || l.Somaxconn == nil ||
		l.TCPMaxSynBacklog == nil || l.TCPSyncookies == nil {
		t.Errorf("stuck record's limits %+v, want listen_backlog, somaxconn, tcp_max_syn_backlog, tcp_syncookies", l)
	}
	if c.State != "SYN_RECV" || c.Sport != 7402 || !c.Since.Equal(s.TS) || c.TS.Before(s.TS) {
		t.Errorf("cleared record %+v, want SYN_RECV on 7402 since %v", c, s.TS)
	}
}

// TIME_WAIT toward one destination near port exhaustion (issue 22 item
// 9), in a namespace whose local port range is 40 ports: 30 connections
// closed by the client leave 30 TIME_WAIT sockets toward the server. The
// tracer, started after, writes one pile record with the count, that
// namespace's port range and tcp_tw_reuse (not the host's).
func TestTimeWaitPileAgainstPortRange(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	for _, kv := range []string{"net.ipv4.ip_local_port_range=40000 40039", "net.ipv4.tcp_tw_reuse=0"} {
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-w", kv).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s: %v: %s", kv, err, out)
		}
	}
	server := ns.Start(t, "server", "127.0.0.1:7403", "30", "0s")
	client := ns.Start(t, "client", "127.0.0.1:7403", "30")
	client.Line()
	client.Wait()
	server.Wait()
	closed := time.Now()
	time.Sleep(time.Second)
	if n := ssCount(t, ns, "time-wait"); n != 30 {
		t.Fatalf("ss shows %d TIME-WAIT, want 30", n)
	}
	tr := startTracer(t, nsConfig(ns))
	time.Sleep(1500 * time.Millisecond)
	recs := answers(t, tr, "pile")
	if len(recs) != 1 {
		t.Fatalf("%d pile records, want 1: %+v", len(recs), recs)
	}
	p := recs[0]
	if p.State != "TIME_WAIT" || p.Daddr != "127.0.0.1" || p.Dport != 7403 || p.Count != 30 || p.AgeSource != "tw_timer" ||
		p.OldestNs == 0 || time.Duration(p.OldestNs) > p.TS.Sub(closed)+time.Second {
		t.Errorf("pile record %+v, want 30 TIME_WAIT toward 127.0.0.1:7403", p)
	}
	if l := p.Limits; l == nil || l.LocalPortRange == nil || *l.LocalPortRange != [2]uint32{40000, 40039} ||
		l.TCPTwReuse == nil || *l.TCPTwReuse != 0 {
		t.Errorf("pile limits %+v, want the namespace's range 40000-40039 and tcp_tw_reuse 0", l)
	}
}

// Long-lived connections reported while they live (issue 22 item 7): five
// idle connections older than the tracer (ten sockets), --progress 1s with
// at most 3 records an interval. Each interval writes 3; the skipped are
// counted and come first next time, so all ten are reported within four
// intervals, their ages lower bounds from the kernel.
func TestProgressOfIdleConnections(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	ns.Start(t, "sink", "127.0.0.1:7404", "5")
	hold := ns.Start(t, "hold", "127.0.0.1:7404", "5", "30s")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	born := time.Now()
	time.Sleep(2 * time.Second)
	cfg := nsConfig(ns)
	cfg.Progress, cfg.ProgressMax = time.Second, 3
	tr := startTracer(t, cfg)
	time.Sleep(8 * time.Second) // four intervals even on a loaded machine
	recs := answers(t, tr, "progress", "stats")
	perTS := map[time.Time]int{}
	var intervals []time.Time
	cookies := map[uint64]bool{}
	var written uint64
	for _, r := range recs {
		if r.Type == "stats" {
			if r.Progress == nil || r.ProgressSkipped == nil || *r.Progress != written || *r.ProgressSkipped == 0 || r.Walks < 4 {
				t.Errorf("stats progress %v skipped %v walks %d; want %d written, some skipped, a walk a second",
					r.Progress, r.ProgressSkipped, r.Walks, written)
			}
			continue
		}
		written++
		perTS[r.TS]++
		intervals = append(intervals, r.TS)
		if len(slices.Compact(slices.Clone(intervals))) <= 4 {
			cookies[r.Cookie] = true // reported within the first four intervals
		}
		if r.State != "ESTABLISHED" || !r.AgeAtLeast || r.AgeSource == "" || r.PID == nil ||
			time.Duration(r.AgeNs) > r.TS.Sub(born)+time.Second || r.AgeNs < uint64(time.Second) {
			t.Errorf("progress record %+v (connections %v old)", r, r.TS.Sub(born))
		}
	}
	for ts, n := range perTS {
		if n > 3 {
			t.Errorf("%d progress records at %v, cap 3", n, ts)
		}
	}
	if len(cookies) != 10 || len(perTS) < 4 {
		t.Errorf("%d sockets reported in %d intervals, want all 10 within 4", len(cookies), len(perTS))
	}
}

// The periodic walk's cost (docs/performance.md), measured when
// TCPTRACE_WALK_COST=1: N idle loopback connections (2N sockets) held in
// a namespace of the test's, a tracer with the default walk interval for
// 15 s against one without periodic walks; the time per walk (the kernel
// iterator and the read, stats walk_ns / walks) and the tracer process's
// CPU (getrusage) in each run.
func TestWalkCost(t *testing.T) {
	if os.Getenv("TCPTRACE_WALK_COST") != "1" {
		t.Skip("a measurement: set TCPTRACE_WALK_COST=1")
	}
	nettest.RequirePrivileges(t)
	// A process may hold fewer than 20,000 files here: 10,000
	// connections per pair of peers.
	const chunk = 10000
	for _, n := range []int{10000, 100000} {
		ns := nettest.NewNetns(t)
		var peers []*nettest.Peer
		for i := 0; i < n/chunk; i++ {
			addr := fmt.Sprintf("127.0.0.1:%d", 7410+i)
			leak := ns.Start(t, "leak", addr, strconv.Itoa(chunk))
			hold := ns.Start(t, "hold", addr, strconv.Itoa(chunk), "10m")
			if l := hold.Line(); l != "connected" {
				t.Fatalf("hold: %q", l)
			}
			if l := leak.Line(); l != "accepted" {
				t.Fatalf("leak: %q", l)
			}
			peers = append(peers, leak, hold)
		}
		for _, run := range []struct {
			every time.Duration
			netns uint32
		}{{0, ns.Inode}, {time.Second, ns.Inode}, {time.Second, 0}} {
			every := run.every
			cfg := config.Defaults()
			cfg.KeepPrivileges = true
			cfg.Netns = run.netns // --netns: only that namespace is walked
			cfg.WalkInterval = every
			var before, after unix.Rusage
			tr := startTracer(t, cfg)
			unix.Getrusage(unix.RUSAGE_SELF, &before)
			t0 := time.Now()
			time.Sleep(15 * time.Second)
			unix.Getrusage(unix.RUSAGE_SELF, &after)
			wall := time.Since(t0)
			recs := answers(t, tr, "stats")
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			var walks, walkNs uint64
			for _, r := range recs {
				if r.Type == "stats" {
					walks, walkNs = r.Walks, r.WalkNs
				}
			}
			per := time.Duration(0)
			if walks > 0 {
				per = time.Duration(walkNs / walks)
			}
			t.Logf("%d connections (%d sockets in the namespace), --netns %d, walk every %v: %d walks, %v CPU a walk (the walking thread: kernel iterator and read); tracer process CPU %v in %v (%.2f %% of one core)",
				n, 2*n+n/chunk, run.netns, every, walks, per, cpu.Round(time.Millisecond), wall.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
		}
		for _, p := range peers {
			p.Cmd.Process.Kill()
		}
	}
}
