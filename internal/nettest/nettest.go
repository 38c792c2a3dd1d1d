//go:build linux

package nettest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// RequirePrivileges skips t unless the process is root with ip(8)
// available; under TCPTRACE_REQUIRE_BPF=1 it fails instead.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root (loads BPF programs, creates network namespaces)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		reason = "needs ip(8) from iproute2 to create network namespaces"
	}
	if reason == "" && testing.Short() && os.Getenv(RequireEnv) != "1" {
		reason = "-short: privileged test skipped"
	}
	if reason == "" {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", reason, RequireEnv)
	}
	t.Skip(reason)
}

var seq atomic.Uint32

// Netns is a network namespace made for one test, with loopback up.
type Netns struct {
	Name  string
	Inode uint32
}

// NewNetns creates a namespace that is deleted when t ends.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	name := fmt.Sprintf("tcptrace-test-%d-%d", os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("bringing lo up in %s: %v: %s", name, err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+name, &st); err != nil {
		t.Fatalf("stat netns %s: %v", name, err)
	}
	return &Netns{Name: name, Inode: uint32(st.Ino)}
}

// SSStates counts ns's TCP sockets by state, as `ss -tan` names the
// states (ESTAB, FIN-WAIT-2, TIME-WAIT...).
func (ns *Netns) SSStates(t testing.TB) map[string]uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Htan").Output()
	if err != nil {
		t.Fatalf("ss in %s: %v", ns.Name, err)
	}
	states := map[string]uint64{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			states[f[0]]++
		}
	}
	return states
}

// Peer is a peer process running inside a namespace.
type Peer struct {
	Cmd   *exec.Cmd
	PID   int // the peer's own PID, as it reported it
	Port  int // the server's port
	lines *bufio.Scanner
	t     testing.TB
}

// Start runs this test binary as a peer (see PeerMain) inside ns with
// the given arguments, and waits for its "ready" line.
func (ns *Netns) Start(t testing.TB, args ...string) *Peer {
	t.Helper()
	return ns.StartIn(t, "", args...)
}

// StartIn is Start with the peer moved into the cgroup (v2) directory
// cgroup before it runs, so every socket it opens belongs to that cgroup.
func (ns *Netns) StartIn(t testing.TB, cgroup string, args ...string) *Peer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, self}, args...)...)
	if cgroup != "" {
		script := `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`
		cmd = exec.Command("sh", append([]string{"-c", script, "sh", cgroup, "ip", "netns", "exec", ns.Name, self}, args...)...)
	}
	cmd.Env = append(os.Environ(), peerEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting peer %v: %v", args, err)
	}
	p := &Peer{Cmd: cmd, lines: bufio.NewScanner(out), t: t}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := p.Line()
	if _, err := fmt.Sscanf(line, "ready %d %d", &p.Port, &p.PID); err != nil {
		t.Fatalf("peer %v: got %q, want ready PORT PID", args, line)
	}
	return p
}

// Line returns the peer's next output line (10 s at most).
func (p *Peer) Line() string {
	p.t.Helper()
	got := make(chan string, 1)
	go func() {
		if p.lines.Scan() {
			got <- p.lines.Text()
		} else {
			got <- "EOF: " + fmt.Sprint(p.lines.Err())
		}
	}()
	select {
	case l := <-got:
		return l
	case <-time.After(10 * time.Second):
		p.t.Fatal("peer said nothing for 10 s")
		return ""
	}
}

// Wait waits for the peer to exit and fails t if it failed.
func (p *Peer) Wait() {
	p.t.Helper()
	if err := p.Cmd.Wait(); err != nil {
		p.t.Fatalf("peer %v: %v", p.Cmd.Args, err)
	}
}

// LeakCloseWait makes n sockets sit in CLOSE_WAIT in the namespace: a
// server (role leak) accepts n connections and never closes them, and a
// client closes its ends. It returns the server, once it has accepted.
func (ns *Netns) LeakCloseWait(t testing.TB, n int) *Peer {
	t.Helper()
	leak := ns.Start(t, "leak", "127.0.0.1:0", fmt.Sprint(n))
	c := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", leak.Port), fmt.Sprint(n))
	c.Line()
	c.Wait()
	if l := leak.Line(); l != "accepted" {
		t.Fatalf("leak: %q", l)
	}
	return leak
}
