//go:build linux

// Package demo reproduces the four classic TCP piles inside a private
// network namespace, for the tracer to show within seconds: a connect to
// a port whose SYNs are dropped (SYN_SENT), a handshake whose final ACK
// is lost for a few seconds (SYN_RECV, half-open), a server that never
// closes what its clients closed (CLOSE_WAIT), and clients that close
// first (TIME_WAIT). The servers and clients are this binary re-executed
// in a hidden role (RoleMain) inside the namespace.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RoleArg is the hidden first argument that makes the binary a demo
// server or client (RoleMain) instead of the CLI.
const RoleArg = "__demo-role"

// The ports of the four cases, on 127.0.0.1 inside the namespace.
const (
	portSynDrop = 9001 // every SYN dropped: connects hang in SYN_SENT
	portAckLoss = 9002 // pure ACKs dropped for ackLossFor: handshakes half-open
	portLeak    = 9003 // the server never closes: CLOSE_WAIT
	portEcho    = 9004 // the clients close first: TIME_WAIT
)

// ackLossFor is how long final ACKs to portAckLoss are dropped; the
// kernel's SYN-ACK retransmits (1 s, 3 s, 7 s) then complete the
// handshakes.
const ackLossFor = 5 * time.Second

// rules drops the SYNs and, in a table of its own removed after
// ackLossFor, the pure ACKs. They live in the namespace and go with it.
const rules = `table inet tcptrace_demo {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 9001 tcp flags & (syn | ack) == syn drop
	}
}
table inet tcptrace_demo_ack {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 9002 tcp flags & (syn | ack | fin | rst | psh) == ack drop
	}
}
`

// Trace runs the tracer on the namespace with this inode until ctx
// ends; it calls ready once its probes are attached.
type Trace func(ctx context.Context, netns uint32, ready func()) error

// Run makes the namespace and its rules, starts the tracer, then the
// servers and clients, and after d (or when ctx ends) stops the tracer
// and removes everything it made. Progress goes to stderr.
func Run(ctx context.Context, d time.Duration, trace Trace, stderr io.Writer) (err error) {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := preflight(); err != nil {
		return err
	}
	name := fmt.Sprintf("tcptrace-demo-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("creating network namespace (needs root and iproute2): ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	defer func() {
		if out, derr := exec.Command("ip", "netns", "delete", name).CombinedOutput(); derr != nil {
			err = errors.Join(err, fmt.Errorf("ip netns delete %s: %v: %s", name, derr, strings.TrimSpace(string(out))))
		}
	}()
	inNS := func(args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", name}, args...)...)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	nft := inNS("nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		return fmt.Errorf("adding the nftables rules (needs nftables): %v: %s", err, strings.TrimSpace(string(out)))
	}
	// Removing the ACK drop later needs CAP_NET_ADMIN, which the tracer
	// gives up once attached: a helper started now, with it, waits for
	// the word, then removes the drop ackLossFor later.
	helper := inNS("sh", "-c", fmt.Sprintf("read go && sleep %d && nft delete table inet tcptrace_demo_ack", int(ackLossFor/time.Second)))
	helper.Stderr = stderr
	ackLoss, err := helper.StdinPipe()
	if err != nil {
		return err
	}
	if err := helper.Start(); err != nil {
		return err
	}
	helper.WaitDelay = 100 * time.Millisecond // its sleep may hold stderr a while
	defer func() {
		ackLoss.Close() // before the word: it exits at EOF
		_ = helper.Process.Kill()
		_ = helper.Wait()
	}()
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+name, &st); err != nil {
		return err
	}

	// The tracer first, so the cases are seen from their start.
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ready := make(chan struct{})
	traced := make(chan error, 1)
	go func() {
		var once sync.Once
		closeReady := func() { once.Do(func() { close(ready) }) }
		traced <- trace(ctx, uint32(st.Ino), closeReady)
		closeReady()
	}()
	select {
	case <-ready:
	case err := <-traced:
		return err
	}
	select {
	case err := <-traced: // it failed to start
		return err
	default:
	}
	fmt.Fprintf(stderr, "tcptrace-bpf demo: namespace %s (netns %d): SYN_SENT to :%d (SYNs dropped), half-open handshakes to :%d (final ACKs dropped for %s), CLOSE_WAIT leaks on :%d, TIME_WAIT from :%d; ends in %s\n",
		name, st.Ino, portSynDrop, portAckLoss, ackLossFor, portLeak, portEcho, d)

	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	start := func(role string) error {
		c := inNS(self, RoleArg, role)
		c.Stderr = stderr
		// Its stdin stays open while we live: at EOF it exits (Pdeathsig
		// would fire when the starting thread ends, which the tracer's
		// namespace walks do).
		if _, err := c.StdinPipe(); err != nil {
			return err
		}
		out, err := c.StdoutPipe()
		if err != nil {
			return err
		}
		if err := c.Start(); err != nil {
			return fmt.Errorf("starting demo %s: %w", role, err)
		}
		procs = append(procs, c)
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			return fmt.Errorf("demo %s did not start: %q", role, line)
		}
		return nil
	}
	for _, role := range []string{"leaky", "server", "client"} {
		if err := start(role); err != nil {
			cancel()
			return errors.Join(err, <-traced)
		}
	}
	// The clients have connected: the final ACKs are lost from now on.
	io.WriteString(ackLoss, "go\n")
	// The tracer writes its closing records while the sockets are still
	// there; then the deferred cleanup.
	return <-traced
}

// preflight says in one line what the demo lacks before it makes
// anything: root (a network namespace and nftables rules need
// CAP_SYS_ADMIN and CAP_NET_ADMIN, the tracer CAP_BPF and CAP_PERFMON),
// ip and nft.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: it makes a network namespace with nftables rules and loads the tracer (run it with sudo)")
	}
	for _, tool := range []struct{ name, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return fmt.Errorf("the demo needs %s (package %s), which is not on PATH", tool.name, tool.pkg)
		}
	}
	return nil
}
