//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// perProcess stays under this machine's 20,000-descriptor hard limit,
// which an unprivileged-for-resources root cannot raise.
const perProcess = 15000

// measureRSS opens n loopback connections and holds them while the tracer
// (all records, to a file) watches; it reports the tracer's peak RSS.
func measureRSS(tracer string, n int, out io.Writer) error {
	tmp, err := os.MkdirTemp("", "tcptrace-rss")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(tracer, "-o", tmp+"/out.ndjson", "--port", portList(idleFirstPort, idleProcesses(n)))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	if err := waitReady(stderr, ""); err != nil {
		return err
	}
	before, _ := vm(cmd.Process.Pid, "VmRSS")
	idle, err := holdIdle(n)
	if err != nil {
		return err
	}
	defer idle.stop()
	time.Sleep(2 * time.Second) // let the tracer read everything
	rss, _ := vm(cmd.Process.Pid, "VmRSS")
	hwm, _ := vm(cmd.Process.Pid, "VmHWM")
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	fmt.Fprintf(out, "\n%d connections held open (%d sockets, %d client and %d server processes): tracer RSS %d MiB before, %d MiB with them open, peak %d MiB\n",
		n, 2*n, idle.processes, idle.processes, before>>10, rss>>10, hwm>>10)
	return nil
}

// idleFirstPort is the first server port of the idle connections; each
// pair of processes holds perProcess of them on the next port.
const idleFirstPort = 30000

func idleProcesses(n int) int { return (n + perProcess - 1) / perProcess }

// idleConns are loopback connections held open by peer processes (this
// binary, as internal/nettest's sink and hold peers).
type idleConns struct {
	peers     []*exec.Cmd
	processes int    // client processes (as many servers)
	ports     string // their servers' ports, as --port takes them
}

// holdIdle opens n loopback connections and returns once every one is
// open; stop closes them.
func holdIdle(n int) (*idleConns, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ic := &idleConns{processes: idleProcesses(n), ports: portList(idleFirstPort, idleProcesses(n))}
	start := func(args ...string) (*bufio.Scanner, error) {
		p := exec.Command(self, args...)
		p.Env = append(os.Environ(), "TCPTRACE_TEST_PEER=1")
		o, _ := p.StdoutPipe()
		p.Stderr = os.Stderr
		if err := p.Start(); err != nil {
			return nil, err
		}
		ic.peers = append(ic.peers, p)
		sc := bufio.NewScanner(o)
		sc.Scan()
		return sc, nil
	}
	var holds []*bufio.Scanner
	for i, opened := 0, 0; opened < n; i++ {
		k := min(perProcess, n-opened)
		addr := fmt.Sprintf("127.0.0.1:%d", idleFirstPort+i)
		if _, err := start("sink", addr, fmt.Sprint(k)); err != nil {
			ic.stop()
			return nil, err
		}
		sc, err := start("hold", addr, fmt.Sprint(k), "1h")
		if err != nil {
			ic.stop()
			return nil, err
		}
		holds = append(holds, sc)
		opened += k
	}
	for _, sc := range holds {
		if !sc.Scan() || sc.Text() != "connected" {
			ic.stop()
			return nil, fmt.Errorf("a client process failed to open its connections")
		}
	}
	return ic, nil
}

func (ic *idleConns) stop() {
	for _, p := range ic.peers {
		p.Process.Kill()
		p.Wait()
	}
}

func portList(first, count int) string {
	ps := make([]string, count)
	for i := range ps {
		ps[i] = fmt.Sprint(first + i)
	}
	return strings.Join(ps, ",")
}

// vm reads a kB field of /proc/PID/status.
func vm(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func init() {
	if nettest.IsPeer() {
		nettest.PeerMain()
	}
}
