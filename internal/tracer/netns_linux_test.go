package tracer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// netnsCookie is the kernel's identity of ns (SO_NETNS_COOKIE), read by
// a socket made inside it.
func netnsCookie(t *testing.T, ns *nettest.Netns) uint64 {
	t.Helper()
	p := ns.Start(t, "netnscookie", "-")
	var c uint64
	if _, err := fmt.Sscanf(p.Line(), "cookie %d", &c); err != nil || c == 0 {
		t.Fatalf("SO_NETNS_COOKIE in %s: %v", ns.Name, err)
	}
	p.Wait()
	return c
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
	return string(out)
}

// ssLocal returns the local end of ns's one established connection as ss
// shows it: the port and, after %, the interface it is bound to.
func ssLocal(t *testing.T, ns *nettest.Netns) (ifname string, port int) {
	t.Helper()
	f := strings.Fields(sh(t, "ip", "netns", "exec", ns.Name, "ss", "-Htn", "state", "established"))
	if len(f) < 4 {
		t.Fatalf("ss in %s shows no established connection: %q", ns.Name, f)
	}
	local := f[2] // Recv-Q Send-Q Local Peer: "[fe80::a]%veth0:40000"
	i, j := strings.LastIndexByte(local, '%'), strings.LastIndexByte(local, ':')
	if i < 0 || j < i {
		t.Fatalf("ss shows %q: no interface on the local end", local)
	}
	port, _ = strconv.Atoi(local[j+1:])
	return local[i+1 : j], port
}

// ifindex is the index of interface name in ns.
func ifindex(t *testing.T, ns *nettest.Netns, name string) uint32 {
	t.Helper()
	out := sh(t, "ip", "-n", ns.Name, "-o", "link", "show", "dev", name)
	n, err := strconv.Atoi(out[:strings.IndexByte(out, ':')])
	if err != nil {
		t.Fatalf("ip link: %q", out)
	}
	return uint32(n)
}

// An IPv6 link-local connection between two namespaces: each side's
// records carry the interface that scopes its local address (ss shows it
// as %ifname) and the local port ss shows, and its namespace's cookie as
// the kernel gives it to a socket (SO_NETNS_COOKIE).
func TestLinkLocalScopeAndNetnsCookie(t *testing.T) {
	nettest.RequirePrivileges(t)
	for i, attach := range []config.Attach{config.AttachBTF, config.AttachTracepoint} {
		t.Run(string(attach), func(t *testing.T) { linkLocal(t, attach, fmt.Sprintf("%d%d", os.Getpid()%100000, i)) })
	}
}

func linkLocal(t *testing.T, attach config.Attach, suffix string) {
	client, server := nettest.NewNetns(t), nettest.NewNetns(t)
	cIf, sIf := "tcl"+suffix, "tsv"+suffix
	sh(t, "ip", "link", "add", cIf, "netns", client.Name, "type", "veth", "peer", "name", sIf, "netns", server.Name)
	sh(t, "ip", "-n", client.Name, "addr", "add", "fe80::a/64", "dev", cIf, "nodad")
	sh(t, "ip", "-n", server.Name, "addr", "add", "fe80::b/64", "dev", sIf, "nodad")
	sh(t, "ip", "-n", client.Name, "link", "set", cIf, "up")
	sh(t, "ip", "-n", server.Name, "link", "set", sIf, "up")
	const port = 7643
	cfg := config.Defaults()
	cfg.Emit, cfg.Ports, cfg.Flush, cfg.KeepPrivileges = config.EmitAll, []uint16{port}, 20*time.Millisecond, true
	cfg.Attach = attach
	tr := startTracer(t, cfg)
	sink := server.Start(t, "sink", fmt.Sprintf("[::]:%d", port), "1")
	hold := client.Start(t, "hold", fmt.Sprintf("[fe80::b%%%s]:%d", cIf, port), "1", "1s")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	want := map[uint32]struct { // by netns inode: what the kernel says of each side
		ifindex uint32
		port    int
		cookie  uint64
	}{}
	for _, ns := range []*nettest.Netns{client, server} {
		name, p := ssLocal(t, ns)
		want[ns.Inode] = struct {
			ifindex uint32
			port    int
			cookie  uint64
		}{ifindex(t, ns, name), p, netnsCookie(t, ns)}
	}
	hold.Wait()
	sink.Wait()
	waitClosed(t, client)
	recs := tr.stop(t)
	seen := map[uint32]int{}
	for _, r := range recs {
		w, ours := want[r.Netns]
		if !ours || (r.Type != "transition" && r.Type != "connection") || r.Old == "CLOSE" {
			continue // a socket's birth may come before its port or scope
		}
		if r.Saddr == "::" { // the listener: ss shows *:PORT, bound to no interface
			if r.Ifindex != 0 {
				t.Errorf("listener record with ifindex %d: %+v", r.Ifindex, r)
			}
			continue
		}
		seen[r.Netns]++
		if r.Ifindex != w.ifindex || r.Sport != w.port || r.NetnsCookie != w.cookie {
			t.Errorf("%s %s->%s in netns %d: ifindex %d, port %d, netns_cookie %d; the kernel: %d, %d, %d",
				r.Type, r.Old, r.New, r.Netns, r.Ifindex, r.Sport, r.NetnsCookie, w.ifindex, w.port, w.cookie)
		}
	}
	if seen[client.Inode] == 0 || seen[server.Inode] == 0 {
		t.Fatalf("records per namespace %v, want both sides'", seen)
	}
	t.Logf("client: ifindex %d, port %d, netns_cookie %d; server: %+v", want[client.Inode].ifindex,
		want[client.Inode].port, want[client.Inode].cookie, want[server.Inode])
}

// The kernel reuses a namespace's inode as soon as the namespace is gone
// (50 namespaces made in a row got 3 distinct inodes): records of
// namespaces that shared an inode carry each its own netns_cookie, the
// one a socket in it reads (SO_NETNS_COOKIE).
func TestNetnsCookieTellsReusedInodesApart(t *testing.T) {
	nettest.RequirePrivileges(t)
	const port = 7644 // nothing listens: each connect is refused at once
	cfg := config.Defaults()
	cfg.Emit, cfg.Ports, cfg.Flush, cfg.KeepPrivileges = config.EmitAll, []uint16{port}, 20*time.Millisecond, true
	tr := startTracer(t, cfg)
	cookies := map[uint32][]uint64{} // inode: the cookies of the namespaces that had it
	var reused uint32
	for i := 0; i < 60 && reused == 0; i++ {
		name := fmt.Sprintf("tcptrace-reuse-%d-%d", os.Getpid(), i)
		sh(t, "ip", "netns", "add", name)
		// Deleted below; this is for a test that fails on the way (a
		// namespace left behind makes every later walk a pass longer).
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+name, &st); err != nil {
			t.Fatal(err)
		}
		ns := &nettest.Netns{Name: name, Inode: uint32(st.Ino)}
		sh(t, "ip", "-n", name, "link", "set", "lo", "up")
		cookies[ns.Inode] = append(cookies[ns.Inode], netnsCookie(t, ns))
		p := ns.Start(t, "connect", fmt.Sprintf("127.0.0.1:%d", port), "1s")
		if l := p.Line(); !strings.Contains(l, "refused") {
			t.Fatalf("connect in %s: %q", name, l)
		}
		p.Wait()
		sh(t, "ip", "netns", "delete", name)
		if len(cookies[ns.Inode]) > 1 {
			reused = ns.Inode
		}
	}
	if reused == 0 {
		t.Fatalf("60 namespaces made and deleted, no inode reused: %d inodes", len(cookies))
	}
	time.Sleep(100 * time.Millisecond) // past --flush
	recs := tr.stop(t)
	got := map[uint64]int{} // netns_cookie: connections of the reused inode
	for _, r := range ofType(recs, "connection") {
		if r.Netns == reused && r.Dport == port {
			got[r.NetnsCookie]++
		}
	}
	for _, c := range cookies[reused] {
		if got[c] != 1 {
			t.Errorf("inode %d, namespace cookie %d (SO_NETNS_COOKIE): %d connection records, want 1 (got %v)", reused, c, got[c], got)
		}
	}
	if len(got) != len(cookies[reused]) {
		t.Errorf("inode %d: connections under netns_cookies %v, the kernel's cookies %v", reused, got, cookies[reused])
	}
	t.Logf("%d namespaces, %d distinct inodes; inode %d had cookies %v", func() (n int) {
		for _, c := range cookies {
			n += len(c)
		}
		return
	}(), len(cookies), reused, cookies[reused])
}

// On a filtered run the kernel's recursion skips are the whole host's:
// the kernel counts them before any filter can look at the socket. A
// tracer filtered on a quiet namespace, in the tracepoint mode (no backup
// program, so a skip is a loss), beside another tracer that wakes its
// reader per record (whose interrupt runs softirq work inside the next
// program on the tracepoint) and bursts of closes in a second namespace:
// the quiet tracer loses transitions of the bursts, not its own; it keeps
// the figure and labels it the host's everywhere. A burst provokes a skip
// about one time in two here, so bursts go on, under the same tracers,
// until the kernel's own counter (the programs' recursion_misses) moved;
// a run that provokes none in fifteen proves nothing, and fails.
func TestHostWideLossesLabelledOnFilteredRun(t *testing.T) {
	nettest.RequirePrivileges(t)
	if testing.Short() {
		t.Skip("-short")
	}
	quiet, busy := nettest.NewNetns(t), nettest.NewNetns(t)
	waker := nsConfig(busy)
	waker.Emit, waker.WakeupBytes, waker.Attach = config.EmitTransitions, 1, config.AttachTracepoint
	provoker := startTracer(t, waker) // first: its program runs before the filtered one's
	cfg := nsConfig(quiet)
	cfg.Attach = config.AttachTracepoint
	filtered := startTracer(t, cfg)
	before := tracepointMisses(t)
	const n, bursts = 4000, 15
	burst := 1
	for ; ; burst++ {
		sink := busy.Start(t, "sink", "127.0.0.1:0", fmt.Sprint(n))
		hold := busy.Start(t, "hold", fmt.Sprintf("127.0.0.1:%d", sink.Port), fmt.Sprint(n), "200ms")
		if l := hold.Line(); l != "connected" {
			t.Fatalf("hold: %q", l)
		}
		hold.Wait()
		sink.Wait()
		waitClosed(t, busy)
		if tracepointMisses(t) > before {
			break
		}
		if burst == bursts {
			provoker.stop(t)
			filtered.stop(t)
			t.Fatalf("%d bursts of %d closes provoked no recursion skip on the tracepoint: nothing tested", bursts, n)
		}
	}
	server, client := oneConnection(t, quiet, "127.0.0.1:0", "127.0.0.1", 10*time.Millisecond)
	provoker.stop(t)
	recs := filtered.stop(t)
	checkSockets(t, recs, server, client, "inet") // its own transitions: every one
	st := ofType(recs, "stats")
	if len(st) != 1 {
		t.Fatalf("%d stats records", len(st))
	}
	if st[0].Lost == 0 {
		t.Fatalf("the tracepoint's programs counted recursion skips after burst %d, the filtered tracer reports none lost", burst)
	}
	t.Logf("burst %d: the filtered tracer's kernel skipped it %d times for the other namespace's transitions, and delivered all of its own", burst, st[0].Lost)
	if st[0].LostHostWide != st[0].Lost {
		t.Errorf("stats: lost %d, lost_host_wide %d: want every recursion skip labelled the host's", st[0].Lost, st[0].LostHostWide)
	}
	for _, l := range ofType(recs, "lost") {
		if !l.RecursionHostWide || l.Recursion != l.Count {
			t.Errorf("lost record %+v: want its recursion labelled host-wide", l)
		}
	}
	if errOut := filtered.errOut.String(); !strings.Contains(errOut, "the whole host's kernel recursion skips: may concern sockets outside the filters") {
		t.Errorf("exit line does not label the host's losses:\n%s", errOut)
	}
}

// tracepointMisses sums the kernel's recursion_misses over the host's
// classic tracepoint programs on sock:inet_sock_set_state (on_state_tp:
// the tracers' other tracepoint programs hang on other tracepoints). The
// kernel counts a skip on every program attached to the tracepoint at
// once, so a sum that moved means each of them, the filtered tracer's
// too, missed the transition.
func tracepointMisses(t *testing.T) uint64 {
	t.Helper()
	var sum uint64
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return sum
		}
		if err != nil {
			t.Fatalf("listing BPF programs: %v", err)
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue // unloaded since it was listed
		}
		if err != nil {
			t.Fatalf("BPF program %d: %v", id, err)
		}
		info, err := prog.Info()
		if err != nil {
			t.Fatalf("BPF program %d: %v", id, err)
		}
		if prog.Type() == ebpf.TracePoint && info.Name == "on_state_tp" {
			st, err := prog.Stats()
			if err != nil {
				t.Fatalf("BPF program %d: %v", id, err)
			}
			sum += st.RecursionMisses
		}
		prog.Close()
	}
}
