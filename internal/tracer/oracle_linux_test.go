//go:build linux

package tracer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// The loss invariant, against the kernel's own ftrace: every transition
// the kernel made is delivered or counted lost. Where the kernel counts
// the skip itself (recursion_misses), the count is exact; where nothing in
// the kernel counts it (docs/reliability.md: this VM's kernel skips every
// tracing program while PID 1 is on the CPU), the tracer infers it from
// the sockets' states, at least N. So delivered + lost >= made, and
// delivered <= made (no duplicates). A run that provoked no skip proves
// nothing: each scenario is retried until one did, and fails after three.
func TestLossInvariantAgainstFtrace(t *testing.T) {
	nettest.RequirePrivileges(t)
	if testing.Short() {
		t.Skip("-short")
	}
	for _, a := range []config.Attach{config.AttachBTF, config.AttachTracepoint} {
		t.Run(string(a), func(t *testing.T) {
			// Two tracers at once on the qdisc-paced path: each must hold.
			t.Run("qdisc paced, two tracers", func(t *testing.T) { provoke(t, a, 2, 0, qdiscPaced) })
			// A wakeup per record (as the peer tools do) makes the
			// burst's nesting likely: batched, it rarely provokes a skip.
			t.Run("burst", func(t *testing.T) { provoke(t, a, 1, 1, burstOfCloses) })
		})
	}
	// The default output on tp_btf sends a record per connection
	// (config.ConnRecords): the transitions it delivered are the states
	// its connection records saw entered, each matched to ftrace's by
	// socket and new state, in both scenarios.
	t.Run("connection records", func(t *testing.T) {
		t.Run("qdisc paced, two tracers", func(t *testing.T) { provokeConn(t, 2, 0, qdiscPaced) })
		t.Run("burst", func(t *testing.T) { provokeConn(t, 1, 1, burstOfCloses) })
		// A table too small for the connections (--max-conns 100 for
		// 1,000 sockets held at once): the kernel reclaims the entries
		// of live sockets with the transitions they held.
		t.Run("full table", fullTableOracle)
	})
}

// scenario makes TCP traffic on port, the only port the tracers and the
// ftrace instance look at.
type scenario func(t *testing.T, port int)

var oraclePorts atomic.Int32

// provoke runs the scenario under n tracers and a ftrace instance until a
// run provoked at least one skip (a recursion miss, or a transition the
// programs never ran for), then checks the invariant for every tracer.
func provoke(t *testing.T, attach config.Attach, n, wakeupBytes int, run scenario) {
	cfg := config.Defaults()
	cfg.Emit, cfg.Attach = config.EmitTransitions, attach
	provokeWith(t, cfg, n, wakeupBytes, run)
}

// provokeConn is provoke for the default output's connection records.
func provokeConn(t *testing.T, n, wakeupBytes int, run scenario) {
	cfg := config.Defaults()
	if !cfg.ConnRecords() {
		t.Fatal("the default output does not send connection records: nothing of them tested")
	}
	provokeWith(t, cfg, n, wakeupBytes, run)
}

func provokeWith(t *testing.T, base config.Config, n, wakeupBytes int, run scenario) {
	for attempt := 1; ; attempt++ {
		port := 20000 + os.Getpid()%10000 + int(oraclePorts.Add(1))
		tr := oracleRun(t, base, n, wakeupBytes, port, run)
		skips := uint64(0)
		for _, r := range tr {
			skips = max(skips, r.skips())
		}
		t.Logf("attempt %d: ftrace saw %d transitions; %d skips provoked", attempt, tr[0].made, skips)
		for i, r := range tr {
			t.Logf("  tracer %d: %d delivered (%d rescued by the backup program), %d counted lost (%d of them inferred, at least), %d missing, of which %d on top of PID 1",
				i+1, r.delivered, r.rescued, r.lost, r.inferred, r.missing(), r.onPID1)
		}
		if skips == 0 {
			if attempt == 3 {
				t.Fatal("no skip provoked in 3 runs: the invariant was not put to the test")
			}
			continue
		}
		for i, r := range tr {
			if r.delivered > r.made {
				t.Errorf("tracer %d: %d transitions delivered, more than the %d ftrace saw: duplicates", i+1, r.delivered, r.made)
			}
			// This VM's kernel runs no tracing program (and counts no
			// skip) while PID 1 is on the CPU (docs/reliability.md): those
			// transitions cannot be delivered or counted by any BPF tool;
			// the tracer infers what it can, and the rest are left out.
			if err := r.overReported(); err != nil {
				t.Errorf("tracer %d: %v", i+1, err)
			}
			if r.delivered+r.lost+r.onPID1 < r.made {
				t.Errorf("tracer %d: %d transitions neither delivered nor counted lost, nor skipped by the kernel for PID 1 (made %d, delivered %d, lost %d, on PID 1 %d)",
					i+1, r.made-r.delivered-r.lost-r.onPID1, r.made, r.delivered, r.lost, r.onPID1)
				unmatched, extra := r.match()
				for _, l := range unmatched {
					if task := taskOf(l); task != "PID 1" {
						t.Logf("    missing (on %s): %s", task, l)
					}
				}
				for _, k := range extra {
					t.Logf("    delivered, not in ftrace: %s", k)
				}
			}
		}
		return
	}
}

type oracleResult struct {
	made, delivered, lost, inferred, rescued uint64
	unsent                                   uint64          // of lost: held in the kernel, never sent
	reclaimed                                uint64          // sockets whose entry the full table reclaimed
	partial                                  map[string]bool // SADDR:SPORT>DADDR:DPORT of partial connection records
	onPID1                                   uint64          // missing, on top of PID 1's threads
	ftrace                                   []string
	got                                      map[string]int
	key                                      func(ftraceLine string) string // got's key of a ftrace line
}

func (r *oracleResult) missing() uint64 {
	if r.delivered >= r.made {
		return 0
	}
	return r.made - r.delivered
}

// overReported fails when the tracer reports more lost than went
// missing: what it infers is a lower bound and what it held and never
// sent is exact, so together no more than that. (Recursion skips are the
// host's, and may exceed it.)
func (r *oracleResult) overReported() error {
	if r.delivered+r.unsent+r.inferred > r.made {
		return fmt.Errorf("%d transitions reported lost (%d held and never sent, at least %d inferred), but only %d of the %d made went missing",
			r.unsent+r.inferred, r.unsent, r.inferred, r.missing(), r.made)
	}
	return nil
}

// skips: transitions the primary program was not run for, as far as one
// tracer saw them: rescued by the backup, or missing.
func (r *oracleResult) skips() uint64 { return r.rescued + r.missing() }

// unmatched lists ftrace lines with no delivered transition.
func (r *oracleResult) unmatched() []string {
	out, _ := r.match()
	return out
}

// match pairs ftrace's lines with the delivered transitions: the lines
// left without one, and the delivered transitions left without a line.
func (r *oracleResult) match() (unmatched, extra []string) {
	left := map[string]int{}
	for k, v := range r.got {
		left[k] = v
	}
	for _, l := range r.ftrace {
		k := r.key(l)
		if left[k] > 0 {
			left[k]--
			continue
		}
		unmatched = append(unmatched, strings.TrimSpace(l))
	}
	for k, n := range left {
		for range n {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	return unmatched, extra
}

func oracleRun(t *testing.T, base config.Config, n, wakeupBytes, port int, run scenario) []*oracleResult {
	t.Helper()
	ft := startFtrace(t, port)
	var tracers []*traced
	for range n {
		cfg := base
		cfg.Ports = []uint16{uint16(port)}
		cfg.WakeupBytes = wakeupBytes
		cfg.Flush = 20 * time.Millisecond
		cfg.KeepPrivileges = true
		tracers = append(tracers, startTracer(t, cfg))
	}
	ft.start(t)
	run(t, port)
	time.Sleep(200 * time.Millisecond) // the last softirq work
	lines := ft.stop(t)
	var out []*oracleResult
	for _, tr := range tracers {
		recs := tr.stop(t)
		r := &oracleResult{made: uint64(len(lines)), ftrace: lines, got: map[string]int{}, key: ftraceKey}
		for _, x := range ofType(recs, "transition") {
			r.delivered++
			r.got[fmt.Sprintf("%s:%d>%s:%d %s>%s", x.Saddr, x.Sport, x.Daddr, x.Dport, x.Old, x.New)]++
		}
		r.partial = map[string]bool{}
		for _, x := range ofType(recs, "connection") {
			if x.Partial {
				r.partial[fmt.Sprintf("%s:%d>%s:%d", x.Saddr, x.Sport, x.Daddr, x.Dport)] = true
			}
		}
		if base.ConnRecords() {
			if !strings.Contains(tr.errOut.String(), "one record per connection") {
				t.Fatalf("the tracer did not send connection records:\n%s", tr.errOut)
			}
			r.key = ftraceNewKey
			for _, x := range ofType(recs, "connection") {
				for _, s := range x.States {
					if !s.Unseen && !(s.Inferred && s.State == "TIME_WAIT") { // a state the kernel was seen entering
						r.delivered++
						r.got[connStateKey(x.Saddr, fmt.Sprint(x.Sport), x.Daddr, fmt.Sprint(x.Dport), s.State)]++
					}
				}
			}
		}
		for _, l := range ofType(recs, "lost") {
			r.lost += l.Count
			r.unsent += l.Unsent
		}
		if st := ofType(recs, "stats"); len(st) == 1 {
			r.rescued, r.inferred, r.reclaimed = st[0].Rescued, st[0].LostInferred, st[0].Reclaimed
		}
		for _, l := range r.unmatched() {
			if taskOf(l) == "PID 1" {
				r.onPID1++
			}
		}
		out = append(out, r)
	}
	return out
}

var ftraceTask = regexp.MustCompile(`^\s*(.*)-(\d+)\s+\[`)

// taskOf names whose task a ftrace line ran on top of: the test process,
// PID 1, another process, or one gone.
func taskOf(l string) string {
	m := ftraceTask.FindStringSubmatch(l)
	if m == nil {
		return "?"
	}
	for _, p := range []string{"self", "1"} {
		if _, err := os.Stat("/proc/" + p + "/task/" + m[2]); err == nil {
			return map[string]string{"self": "the test process", "1": "PID 1"}[p]
		}
	}
	if b, err := os.ReadFile("/proc/" + m[2] + "/status"); err == nil {
		for _, f := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(f, "Tgid:") {
				return "process " + strings.TrimSpace(strings.TrimPrefix(f, "Tgid:"))
			}
		}
	}
	return "task " + m[2] + " gone"
}

var ftraceLine = regexp.MustCompile(`sport=(\d+) dport=(\d+) saddr=(\S+) daddr=(\S+) .* oldstate=TCP_(\S+) newstate=TCP_(\S+)`)

func ftraceKey(l string) string {
	m := ftraceLine.FindStringSubmatch(l)
	if m == nil {
		return l
	}
	return fmt.Sprintf("%s:%s>%s:%s %s>%s", m[3], m[1], m[4], m[2], m[5], m[6])
}

// ftraceNewKey keys a ftrace line by socket and new state, as a
// connection record's states are.
func ftraceNewKey(l string) string {
	m := ftraceLine.FindStringSubmatch(l)
	if m == nil {
		return l
	}
	return connStateKey(m[3], m[1], m[4], m[2], m[6])
}

// connStateKey: a socket's entry into state. SYN_SENT is entered before
// connect chose the source port (ftrace shows sport 0), so it is keyed
// without one.
func connStateKey(saddr, sport, daddr, dport, state string) string {
	if state == "SYN_SENT" {
		sport = "*"
	}
	return fmt.Sprintf("%s:%s>%s:%s >%s", saddr, sport, daddr, dport, state)
}

// ftraceInstance is a private ftrace instance recording
// sock:inet_sock_set_state for one port, run by a shell in a mount
// namespace of its own (the host's mounts stay as they are).
type ftraceInstance struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	buf   bytes.Buffer
}

const ftraceScript = `set -e
T=/sys/kernel/tracing
[ -e $T/instances ] || mount -t tracefs nodev $T
I=$T/instances/$1
mkdir $I
trap 'echo 0 > $I/events/sock/inet_sock_set_state/enable; rmdir $I' EXIT
echo 32768 > $I/buffer_size_kb
echo "protocol == 6 && (sport == $2 || dport == $2)" > $I/events/sock/inet_sock_set_state/filter
echo 1 > $I/events/sock/inet_sock_set_state/enable
echo 0 > $I/tracing_on
echo ready
read x
echo 1 > $I/tracing_on
echo on
read x
echo 0 > $I/tracing_on
grep inet_sock_set_state $I/trace || true
echo "lost entries: $(grep -h '^entries\|^overrun' $I/per_cpu/cpu*/stats | awk '$1=="overrun:"{s+=$2} END {print s+0}')"
`

func startFtrace(t *testing.T, port int) *ftraceInstance {
	t.Helper()
	name := fmt.Sprintf("tcptrace-oracle-%d-%d", os.Getpid(), port)
	f := &ftraceInstance{cmd: exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", ftraceScript, "sh", name, fmt.Sprint(port))}
	f.cmd.Stderr = os.Stderr
	var err error
	if f.stdin, err = f.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	f.out = bufio.NewReaderSize(stdout, 1<<20)
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("ftrace instance: %v", err)
	}
	t.Cleanup(func() {
		f.stdin.Close()
		_ = f.cmd.Wait()
	})
	if l, _ := f.out.ReadString('\n'); l != "ready\n" {
		t.Fatalf("ftrace instance: %q", l)
	}
	return f
}

// start turns recording on (after the tracers attached).
func (f *ftraceInstance) start(t *testing.T) {
	t.Helper()
	fmt.Fprintln(f.stdin)
	if l, _ := f.out.ReadString('\n'); l != "on\n" {
		t.Fatalf("ftrace instance: %q", l)
	}
}

// stop ends recording and returns the transitions, in order; it fails t
// if ftrace itself overran (then it is no oracle).
func (f *ftraceInstance) stop(t *testing.T) []string {
	t.Helper()
	fmt.Fprintln(f.stdin)
	f.stdin.Close()
	var lines []string
	for {
		l, err := f.out.ReadString('\n')
		if strings.HasPrefix(l, "lost entries: ") {
			if n := strings.TrimSpace(strings.TrimPrefix(l, "lost entries: ")); n != "0" {
				t.Fatalf("the ftrace instance overran: %s entries lost", n)
			}
			continue
		}
		if strings.Contains(l, "inet_sock_set_state:") {
			lines = append(lines, l)
		}
		if err != nil {
			break
		}
	}
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("ftrace instance: %v", err)
	}
	return lines
}

// pacedLink makes two namespaces joined by a veth whose server side is
// rate-limited by tbf: the qdisc releases segments in
// bursts from its watchdog, so transitions run in softirq on top of
// whatever task the CPU runs, also mid-program. It returns the server's
// and the client's namespace and the server's address.
func pacedLink(t *testing.T) (srv, cli *nettest.Netns, addr string) {
	srv, cli = nettest.NewNetns(t), nettest.NewNetns(t)
	id := oraclePorts.Add(1)
	sv, cv := fmt.Sprintf("tto%ds", id), fmt.Sprintf("tto%dc", id)
	subnet := fmt.Sprintf("10.%d.%d", 200+id%50, os.Getpid()%250)
	for _, args := range [][]string{
		{"link", "add", sv, "netns", srv.Name, "type", "veth", "peer", "name", cv, "netns", cli.Name},
		{"-n", srv.Name, "addr", "add", subnet + ".1/24", "dev", sv},
		{"-n", cli.Name, "addr", "add", subnet + ".2/24", "dev", cv},
		{"-n", srv.Name, "link", "set", sv, "up"},
		{"-n", cli.Name, "link", "set", cv, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", srv.Name, "tc", "qdisc", "add", "dev", sv, "root",
		"tbf", "rate", "10mbit", "burst", "10kb", "latency", "300ms").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
	return srv, cli, subnet + ".1"
}

// qdiscPaced: 20 clients making 125 connections each, one after the
// other, across the paced link (the clients close first).
func qdiscPaced(t *testing.T, port int) {
	const clients, each = 20, 125
	srv, cli, addr := pacedLink(t)
	sink := srv.Start(t, "sink", fmt.Sprintf("%s:%d", addr, port), fmt.Sprint(clients*each))
	var peers []*nettest.Peer
	for range clients {
		peers = append(peers, cli.Start(t, "client", fmt.Sprintf("%s:%d", addr, port), fmt.Sprint(each)))
	}
	for _, p := range peers {
		if l := p.Line(); l != "done" {
			t.Fatalf("client: %q", l)
		}
		p.Wait()
	}
	sink.Wait()
	waitClosed(t, srv)
	waitClosed(t, cli)
}

// fullTableOracle: --max-conns 100 for 1,000 sockets held at once. The
// full table reclaims the entries of live sockets, with what they held:
// how many transitions is known to no one, so no number may be claimed
// for them. What must hold: the losses reported are no more than went
// missing; every socket that lost transitions is in a connection record
// marked partial; and the tracer says it reclaimed live sockets' entries.
func fullTableOracle(t *testing.T) {
	cfg := config.Defaults()
	cfg.MaxConns = 100
	port := 20000 + os.Getpid()%10000 + int(oraclePorts.Add(1))
	r := oracleRun(t, cfg, 1, 0, port, heldOverTheTable)[0]
	t.Logf("ftrace saw %d transitions: %d delivered, %d missing; %d counted lost (%d inferred, %d unsent); %d sockets' entries reclaimed",
		r.made, r.delivered, r.missing(), r.lost, r.inferred, r.unsent, r.reclaimed)
	if err := r.overReported(); err != nil {
		t.Error(err)
	}
	if r.missing() == 0 {
		t.Fatal("nothing went missing: the table was not full, nothing tested")
	}
	if r.reclaimed == 0 {
		t.Error("transitions went missing from a full table, and no reclaimed entry was reported")
	}
	unmatched, _ := r.match()
	for _, l := range unmatched {
		m := ftraceLine.FindStringSubmatch(l)
		if m == nil || m[1] == "0" || taskOf(l) == "PID 1" {
			continue // SYN_SENT's line has no port yet; PID 1: no program ran
		}
		if k := m[3] + ":" + m[1] + ">" + m[4] + ":" + m[2]; !r.partial[k] {
			t.Errorf("socket %s lost a transition but its connection record is not partial: %s", k, strings.TrimSpace(l))
		}
	}
}

// heldOverTheTable: 500 connections opened and held on loopback, then
// closed at once: 1,000 sockets with an entry each.
func heldOverTheTable(t *testing.T, port int) {
	const n = 500
	ns := nettest.NewNetns(t)
	sink := ns.Start(t, "sink", fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprint(n))
	hold := ns.Start(t, "hold", fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprint(n), "300ms")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	hold.Wait()
	sink.Wait()
	waitClosed(t, ns)
}

// burstOfCloses: 2,000 connections held across the paced link, then all
// closed at once by the kernel at the holder's exit: the closes' softirq
// work (and the qdisc's release of the FINs) interrupts the program in
// process context (TestBurstCloseAccountsForEveryTransition).
func burstOfCloses(t *testing.T, port int) {
	const n = 2000
	srv, cli, addr := pacedLink(t)
	sink := srv.Start(t, "sink", fmt.Sprintf("%s:%d", addr, port), fmt.Sprint(n))
	hold := cli.Start(t, "hold", fmt.Sprintf("%s:%d", addr, port), fmt.Sprint(n), "200ms")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	hold.Wait()
	sink.Wait()
	waitClosed(t, srv)
	waitClosed(t, cli)
}
