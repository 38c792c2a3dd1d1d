package tracer

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// sysctlIn sets a sysctl inside the test's namespace (net.* sysctls are
// per namespace: the host's stay as they are).
func sysctlIn(t *testing.T, ns *nettest.Netns, key, value string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-qw", key+"="+value).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v: %s", key, value, ns.Name, err, out)
	}
}

// netstatIn reads the namespace's TcpExt counters (/proc/net/netstat as
// nstat shows them, without its history file).
func netstatIn(t *testing.T, ns *nettest.Netns) map[string]uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "cat", "/proc/net/netstat").Output()
	if err != nil {
		t.Fatalf("reading /proc/net/netstat in %s: %v", ns.Name, err)
	}
	lines := strings.Split(string(out), "\n")
	m := map[string]uint64{}
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || len(names) == 0 || names[0] != "TcpExt:" {
			continue
		}
		for j := 1; j < len(names); j++ {
			v, _ := strconv.ParseUint(values[j], 10, 64)
			m[names[j]] = v
		}
	}
	return m
}

// A handshake completed by a SYN cookie (net.ipv4.tcp_syncookies=2: the
// listener answers every SYN with one) has no SYN-ACK time in the kernel:
// the child's first RTT sample comes from the final ACK's timestamp echo,
// which the cookie moved back by up to 63 ms. Its handshake must be
// absent and marked, never that offset: in the connection record (whose
// start must then not come before the client's connect()), the
// transition, the SYN_RECV histogram of the record modes and of the
// histogram-only mode (untimed, reason syncookie). A namespace without
// cookies beside it keeps its handshakes, microseconds on loopback.
func TestSynCookieHandshakeIsMarkedNotTimed(t *testing.T) {
	nettest.RequirePrivileges(t)
	bothAttachModes(t, testSynCookieHandshake)
}

func testSynCookieHandshake(t *testing.T, attach config.Attach) {
	const n = 5
	port := 7400
	if attach == config.AttachTracepoint {
		port = 7401
	}
	cookies, plain := nettest.NewNetns(t), nettest.NewNetns(t)
	sysctlIn(t, cookies, "net.ipv4.tcp_syncookies", "2")
	sysctlIn(t, plain, "net.ipv4.tcp_syncookies", "0")
	var tracers []*traced
	for _, ns := range []*nettest.Netns{cookies, plain} {
		cfg := nsConfig(ns)
		cfg.Attach = attach
		tracers = append(tracers, startTracer(t, cfg))
	}
	aggCfg := nsConfig(cookies)
	aggCfg.Attach = attach
	aggCfg.Emit = config.EmitHistograms
	aggCfg.Netns = 0
	aggCfg.Ports = []uint16{uint16(port)}
	aggCfg.Stuck = [event.NumStates]time.Duration{}
	agg := startTracer(t, aggCfg)
	// The plain namespace on another port: the histogram-only tracer
	// below filters by port alone.
	ports := []int{port, port + 10}
	for i, ns := range []*nettest.Netns{cookies, plain} {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		server := ns.Start(t, "server", addr, strconv.Itoa(n), "0s")
		client := ns.Start(t, "client", addr, strconv.Itoa(n))
		client.Line()
		client.Wait()
		server.Wait()
		waitClosed(t, ns)
	}
	before := netstatIn(t, cookies)
	for i, tr := range tracers {
		recs := tr.stop(t)
		checkHandshakes(t, recs, ports[i], n, i == 0)
	}
	if sent := before["SyncookiesSent"]; sent < n {
		t.Errorf("the kernel sent %d SYN cookies, want %d: the test did not make cookie handshakes", sent, n)
	}
	var hist *record
	aggRecs := agg.stop(t)
	for _, h := range ofType(aggRecs, "histogram") {
		if h.State == "SYN_RECV" {
			hist = &h
		}
	}
	// The histogram-only mode has no backup program: a transition the
	// kernel skipped (counted lost) leaves its handshake untimed for
	// another reason (no start, or a gap), never timed.
	var lost uint64
	if st := ofType(aggRecs, "stats"); len(st) == 1 {
		lost = st[0].Lost
	}
	if hist == nil || hist.Count != 0 || hist.UntimedReasons == nil || hist.Untimed != uint64(n) ||
		hist.UntimedReasons.SynCookie+lost < uint64(n) {
		t.Errorf("histogram-only SYN_RECV %+v (%d lost), want %d stays untimed for a SYN cookie and none timed", hist, lost, n)
	}
}

// checkHandshakes checks the accepted connections on port: marked and
// untimed with cookies, timed (and short) without.
func checkHandshakes(t *testing.T, recs []record, port, n int, cookies bool) {
	t.Helper()
	what := map[bool]string{true: "with SYN cookies", false: "without"}[cookies]
	connectAt := map[int]time.Time{} // client's connect(), by its port
	for _, c := range ofType(recs, "connection") {
		if c.Dport == port && len(c.States) > 0 && c.States[0].State == "SYN_SENT" {
			connectAt[c.Sport], _ = time.Parse(time.RFC3339Nano, c.Start)
		}
	}
	accepted := 0
	for _, c := range ofType(recs, "connection") {
		if c.Sport != port || len(c.States) == 0 || c.States[0].State != "SYN_RECV" {
			continue
		}
		accepted++
		if cookies != c.SynCookie || cookies != (c.HandshakeRTT == nil) {
			hs := "absent"
			if c.HandshakeRTT != nil {
				hs = time.Duration(*c.HandshakeRTT).String()
			}
			t.Errorf("%s: accepted connection syncookie %v handshake %s", what, c.SynCookie, hs)
		}
		if !cookies && c.HandshakeRTT != nil && time.Duration(*c.HandshakeRTT) > 5*time.Millisecond {
			t.Errorf("%s: handshake %v on loopback", what, time.Duration(*c.HandshakeRTT))
		}
		start, err := time.Parse(time.RFC3339Nano, c.Start)
		if at, ok := connectAt[c.Dport]; !ok || err != nil || start.Before(at) {
			t.Errorf("%s: server side starts at %s, before its client's connect() at %s", what, c.Start, at)
		}
	}
	if accepted != n {
		t.Errorf("%s: %d accepted connections, want %d", what, accepted, n)
	}
	marked := 0
	for _, r := range ofType(recs, "transition") {
		if r.Old == "SYN_RECV" && r.New == "ESTABLISHED" && r.SynCookie && r.HandshakeRTT == nil {
			marked++
		}
	}
	var hist *record
	for _, h := range ofType(recs, "histogram") {
		if h.State == "SYN_RECV" {
			hist = &h
		}
	}
	switch {
	case cookies && (marked != n || hist == nil || hist.Count != 0 || hist.UntimedReasons == nil || hist.UntimedReasons.SynCookie != uint64(n)):
		t.Errorf("%s: %d marked transitions, SYN_RECV histogram %+v; want %d, all untimed (syncookie)", what, marked, hist, n)
	case !cookies && (marked != 0 || hist == nil || hist.Count != uint64(n) || hist.Untimed != 0):
		t.Errorf("%s: %d marked transitions, SYN_RECV histogram %+v; want %d timed", what, marked, hist, n)
	}
}

// Under a SYN pile with cookies, connections answered with cookies and
// dropped at a full accept queue: their clients believe they are
// ESTABLISHED, and only the listener's drops say otherwise. A listener
// with backlog 1 that never accepts, net.ipv4.tcp_syncookies=2, and five
// clients whose final ACKs are held back by nftables until all five have
// their cookie (the queue is empty while they connect, so every SYN is
// answered). When the clients close, their FINs complete the cookie
// handshakes: two fit in the queue, the rest are dropped. The kernel's
// own counters in the namespace are the oracle.
func TestSynCookieDropsShowOnTheListener(t *testing.T) {
	nettest.RequirePrivileges(t)
	const clients, port = 5, 7410
	ns := nettest.NewNetns(t)
	sysctlIn(t, ns, "net.ipv4.tcp_syncookies", "2")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ns.Start(t, "noaccept", addr, "1", "30s")
	cfg := nsConfig(ns)
	cfg.Interval = 200 * time.Millisecond
	cfg.Stuck = [event.NumStates]time.Duration{}
	cfg.Metrics = "127.0.0.1:0"
	tr := startTracer(t, cfg)
	nft(t, ns, "add table inet tcptrace_ck",
		"add chain inet tcptrace_ck in { type filter hook input priority 0 ; }",
		fmt.Sprintf("add rule inet tcptrace_ck in tcp dport %d tcp flags & (syn | ack) == ack drop", port))
	hold := ns.Start(t, "hold", addr, strconv.Itoa(clients), "1s")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("clients: %q", l)
	}
	nft(t, ns, "delete table inet tcptrace_ck")
	hold.Wait()
	time.Sleep(600 * time.Millisecond) // the FINs, and a walk after them
	// The metrics: the counters as soon as the records are read, the
	// drops gauge at the next walk (every --interval).
	var metrics string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		metrics = scrape(t, tr)
		if strings.Contains(metrics, "tcptrace_syncookie_handshakes_total 2\n") &&
			metricValue(metrics, "tcptrace_listen_drops") >= clients-2 || time.Now().After(deadline) {
			break
		}
	}
	before := netstatIn(t, ns)
	recs := tr.stop(t)
	after := netstatIn(t, ns)
	ssDrops := ssListenDrops(t, ns, port)
	for _, want := range []string{
		"tcptrace_syncookie_handshakes_total 2\n",
		`tcptrace_untimed_stays_total{reason="syncookie",state="SYN_RECV"} 2` + "\n",
		"tcptrace_listeners_sending_syncookies ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if d := metricValue(metrics, "tcptrace_listen_drops"); d < clients-2 || d > float64(after["ListenDrops"]) {
		t.Errorf("tcptrace_listen_drops %v; want at least %d, at most the namespace's %d", d, clients-2, after["ListenDrops"])
	}

	var last *record
	sent := false
	for _, l := range ofType(recs, "listener") {
		if l.Sport == port {
			last = &l
			sent = sent || (l.SynCookiesSent != nil && *l.SynCookiesSent)
		}
	}
	if last == nil {
		t.Fatal("no listener record")
	}
	if after["SyncookiesSent"] < clients || after["ListenOverflows"] == 0 {
		t.Fatalf("kernel: %d SYN cookies sent, %d listen overflows: the test made no cookie drops", after["SyncookiesSent"], after["ListenOverflows"])
	}
	if last.Drops < before["ListenDrops"] || last.Drops > after["ListenDrops"] || last.Drops < clients-2 {
		t.Errorf("listener drops %d; the namespace's ListenDrops was %d before the last walk and %d after; want between, and at least %d",
			last.Drops, before["ListenDrops"], after["ListenDrops"], clients-2)
	}
	if last.Drops > ssDrops {
		t.Errorf("listener drops %d, ss -ltm shows d%d after it", last.Drops, ssDrops)
	}
	if !sent {
		t.Error("no listener record says the listener sent SYN cookies")
	}
	accepted := 0
	for _, c := range ofType(recs, "connection") {
		if c.Sport == port && len(c.States) > 0 && c.States[0].State == "SYN_RECV" {
			accepted++
			if !c.SynCookie || c.HandshakeRTT != nil {
				t.Errorf("accepted connection syncookie %v handshake_ns %v", c.SynCookie, c.HandshakeRTT)
			}
		}
	}
	if accepted != 2 || last.SynCookies != 2 {
		t.Errorf("%d accepted connections, listener syncookies %d; want the 2 the queue had room for", accepted, last.SynCookies)
	}
	t.Logf("listener: drops %d (ListenDrops %d..%d, ss d%d after), syncookies %d; kernel: SyncookiesSent %d, SyncookiesRecv %d, ListenOverflows %d",
		last.Drops, before["ListenDrops"], after["ListenDrops"], ssDrops, last.SynCookies, after["SyncookiesSent"], after["SyncookiesRecv"], after["ListenOverflows"])
}

// scrape reads the tracer's /metrics once.
func scrape(t *testing.T, tr *traced) string {
	t.Helper()
	m := regexp.MustCompile(`metrics at http://([0-9.:]+)/metrics`).FindStringSubmatch(tr.errOut.String())
	if m == nil {
		t.Fatalf("no metrics address in %q", tr.errOut.String())
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue is the value of an unlabelled series in a scrape (-1: none).
func metricValue(scrape, name string) float64 {
	for _, l := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// ssListenDrops is the drop count `ss -ltm` shows for the listener on
// port (skmem's d: the socket's sk_drops).
func ssListenDrops(t *testing.T, ns *nettest.Netns, port int) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Hltmn", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	m := regexp.MustCompile(`skmem:\(.*\bd(\d+)\)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no drop count in ss output %q", out)
	}
	d, _ := strconv.ParseUint(m[1], 10, 64)
	return d
}
