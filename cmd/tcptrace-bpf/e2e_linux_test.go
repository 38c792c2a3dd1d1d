//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tcptrace-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tcptrace-bpf")
		build := exec.Command("go", "build", "-o", binPath, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile builds it
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	cmd    *exec.Cmd
	stderr *bufio.Reader
	log    lockedBuffer // stderr after the tracing line
}

// lockedBuffer is a bytes.Buffer safe to read while it is written.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs the binary and waits for its "tcptrace-bpf: tracing" line.
func start(t *testing.T, stdout io.Writer, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Stdout = stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &proc{cmd: cmd, stderr: bufio.NewReader(errPipe)}
	line := make(chan string, 1)
	go func() {
		l, _ := p.stderr.ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "tcptrace-bpf: tracing") {
			t.Fatalf("first stderr line %q, want the tracing line", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no tracing line within 20 s")
	}
	go io.Copy(&p.log, p.stderr)
	return p
}

// stop signals the process and returns its exit code.
func (p *proc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit within 10 s of %v", sig)
		return -1
	}
}

func traffic(t *testing.T, ns *nettest.Netns, n int) {
	t.Helper()
	server := ns.Start(t, "server", "127.0.0.1:8080", fmt.Sprint(n), "0s")
	client := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", server.Port), fmt.Sprint(n))
	client.Line()
	client.Wait()
	server.Wait()
}

// countTypes checks every line is a record of its type in internal/record
// with no field the type lacks, and counts types.
func countTypes(t *testing.T, data []byte) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if _, err := record.DecodeStrict([]byte(line)); err != nil {
			t.Fatalf("line %d not a record: %v: %q", i+1, err, line)
		}
		var head struct{ Type string }
		json.Unmarshal([]byte(line), &head)
		counts[head.Type]++
	}
	return counts
}

func TestEndToEndSignals(t *testing.T) {
	nettest.RequirePrivileges(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ns := nettest.NewNetns(t)
			out := filepath.Join(t.TempDir(), "out.ndjson")
			p := start(t, io.Discard, "--netns", fmt.Sprint(ns.Inode), "--port", "8080", "-o", out, "--flush", "10s")
			const conns = 20
			traffic(t, ns, conns)
			// --flush 10s: everything is still buffered in the tracer;
			// the signal must write it all.
			if code := p.stop(t, sig); code != 0 {
				t.Fatalf("exit code %d after %v", code, sig)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(out)
			if st.Mode().Perm() != 0o640 {
				t.Errorf("output file mode %v, want 0640", st.Mode().Perm())
			}
			got := countTypes(t, data)
			// The default output: one timeline per socket (client, child;
			// the listener), no per-transition records.
			if got["transition"] != 0 || got["connection"] != conns*2+1 || got["stats"] != 1 || got["lost"] != 0 {
				t.Errorf("record counts %v, want no transitions, %d connections, 1 stats, 0 lost", got, conns*2+1)
			}
			if got["histogram"] == 0 {
				t.Error("no histogram records at exit")
			}
		})
	}
}

// | head -1: the reader goes away after one line; the tracer must notice
// and exit 0 promptly.
func TestClosedStdout(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, w, "--netns", fmt.Sprint(ns.Inode), "--flush", "10ms")
	w.Close()
	first := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(r).ReadString('\n')
		r.Close()
		first <- l
	}()
	traffic(t, ns, 1)
	select {
	case l := <-first:
		if !strings.HasPrefix(l, `{"type":`) {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no line")
	}
	// More traffic makes the tracer write into the closed pipe.
	traffic(t, ns, 3)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("still running 3 s after its stdout closed")
	}
}

// | head -1 with no traffic: nothing is ever written, so no write meets
// EPIPE; the tracer must still notice the reader has gone, and exit 0.
func TestClosedStdoutIdle(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// Transitions only, in an idle namespace: not one record.
	p := start(t, w, "--netns", fmt.Sprint(ns.Inode), "--emit", "transitions")
	w.Close()
	r.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v; stderr %q", err, p.log.String())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("still running 3 s after the reader of its stdout went away")
	}
}

func TestNotPrivileged(t *testing.T) {
	nettest.RequirePrivileges(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	cmd := exec.Command(setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", binary(t))
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("unprivileged run: %v, output %q", err, out)
	}
	msg := string(out)
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "CAP_BPF") || !strings.Contains(msg, "CAP_PERFMON") {
		t.Errorf("message %q: want one line naming CAP_BPF and CAP_PERFMON", msg)
	}
}

func TestOutputNotWritable(t *testing.T) {
	nettest.RequirePrivileges(t)
	out, err := exec.Command(binary(t), "-o", "/nonexistent-dir/out.ndjson", "--duration", "1s").CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, output %q", err, out)
	}
	if !strings.Contains(string(out), "cannot open output file") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("message %q", out)
	}
}

func TestUnknownCgroup(t *testing.T) {
	nettest.RequirePrivileges(t)
	out, err := exec.Command(binary(t), "--cgroup", "/no-such-cgroup-here", "--duration", "1s").CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || strings.Count(string(out), "\n") != 1 || !strings.Contains(string(out), "no such cgroup") {
		t.Fatalf("exit %v, output %q: want exit 1 and one line naming the cgroup", err, out)
	}
}

func TestTextFormatAndDuration(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	outPath := filepath.Join(t.TempDir(), "out.txt")
	cmd := exec.Command(binary(t), "--netns", fmt.Sprint(ns.Inode), "--format", "text", "--utc", "--emit", "all", "--duration", "3s", "-o", outPath)
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l, _ := bufio.NewReader(errPipe).ReadString('\n')
	if !strings.HasPrefix(l, "tcptrace-bpf: tracing") {
		t.Fatalf("stderr %q", l)
	}
	go io.Copy(io.Discard, errPipe)
	traffic(t, ns, 2)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("--duration run: %v", err)
	}
	data, _ := os.ReadFile(outPath)
	s := string(data)
	if !strings.HasPrefix(s, "ZONE UTC\n") {
		t.Errorf("text output with --utc does not start by naming the zone:\n%s", s)
	}
	for _, want := range []string{"TIME ", "SYN_SENT    -> ESTABLISHED", "CONN ", "Dwell time per state", "ESTABLISHED: count"} {
		if !strings.Contains(s, want) {
			t.Errorf("text output lacks %q:\n%s", want, s)
		}
	}
}

// A full device: one clear error, a non-zero exit, and the programs gone.
func TestOutputDeviceFull(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cmd := exec.Command(binary(t), "--netns", fmt.Sprint(ns.Inode), "-o", "/dev/full", "--flush", "50ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(500 * time.Millisecond)
	traffic(t, ns, 1)
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want 1; stderr %q", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 10 s after writing to /dev/full; stderr %q", stderr.String())
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		// Losses elsewhere on the host are reported, not errors.
		lost := strings.HasPrefix(l, "tcptrace-bpf: warning:") && strings.Contains(l, "transitions lost")
		if strings.HasPrefix(l, "tcptrace-bpf: done") {
			t.Errorf("a run that could not write its records says %q", l)
		}
		if !strings.HasPrefix(l, "tcptrace-bpf: tracing") && !lost {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || !strings.Contains(errLines[0], "no space left on device") {
		t.Errorf("error lines %q, want one naming the full device", errLines)
	}
}

// SIGKILL gives the tracer no chance to clean up: the kernel must free
// every program, map and link with its file descriptors.
func TestKillLeavesNothingBehind(t *testing.T) {
	nettest.RequirePrivileges(t)
	p := start(t, io.Discard, "--port", "1")
	ids := bpfObjects(t, p.cmd.Process.Pid)
	if len(ids["prog_id"]) < 2 || len(ids["map_id"]) < 3 || len(ids["link_id"]) < 2 {
		t.Fatalf("BPF objects held by the tracer: %v; expected programs, maps and links", ids)
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for _, id := range ids["prog_id"] {
			if prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				prog.Close()
				left++
			}
		}
		for _, id := range ids["map_id"] {
			if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
				m.Close()
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d BPF programs or maps still exist 10 s after SIGKILL", left)
		}
		time.Sleep(100 * time.Millisecond) // freed after an RCU grace period
	}
}

// bpfObjects reads the ids of the BPF programs, maps and links a process
// holds, from /proc/PID/fdinfo.
func bpfObjects(t *testing.T, pid int) map[string][]uint32 {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string][]uint32{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, key := range []string{"prog_id", "map_id", "link_id"} {
				if v, ok := strings.CutPrefix(line, key+":"); ok {
					var id uint32
					fmt.Sscan(strings.TrimSpace(v), &id)
					ids[key] = append(ids[key], id)
				}
			}
		}
	}
	return ids
}

// logrotate: rename the file, SIGHUP, and the tracer goes on in a new file
// at the old path; no record is lost or split between the two.
func TestSighupReopens(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "trace.ndjson")
	p := start(t, io.Discard, "--netns", fmt.Sprint(ns.Inode), "--port", "8080", "-o", out, "--flush", "20ms", "--emit", "all")
	traffic(t, ns, 5)
	time.Sleep(200 * time.Millisecond)
	if err := os.Rename(out, out+".1"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(out); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new output file 5 s after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	traffic(t, ns, 5)
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d", code)
	}
	total := map[string]int{}
	for _, f := range []string{out + ".1", out} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 || data[len(data)-1] != '\n' {
			t.Fatalf("%s does not end with a whole record", f)
		}
		got := countTypes(t, data)
		if got["transition"] == 0 {
			t.Errorf("%s has no transitions: the rotation split the run wrongly (%v)", f, got)
		}
		for k, v := range got {
			total[k] += v
		}
	}
	// Two batches of 5 connections: 10 transitions each, 2 per listener.
	if total["transition"] != 2*(5*10+2) || total["stats"] != 1 {
		t.Errorf("records over both files %v, want %d transitions and one stats", total, 2*(5*10+2))
	}
}

// After attach the tracer keeps only CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN
// and CAP_SYS_PTRACE, on every thread, with an emptied bounding set and
// no_new_privs, and still works.
func TestDropsPrivilegesAfterAttach(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	out := filepath.Join(t.TempDir(), "out.ndjson")
	p := start(t, io.Discard, "--netns", fmt.Sprint(ns.Inode), "-o", out, "--flush", "20ms", "--emit", "all")
	const want = 1<<39 | 1<<38 | 1<<21 | 1<<19
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", p.cmd.Process.Pid, task.Name()))
		if err != nil {
			continue
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
			v, _ := strconv.ParseUint(fields[k], 16, 64)
			if v != want {
				t.Errorf("thread %s: %s = %#x, want %#x", task.Name(), k, v, uint64(want))
			}
		}
		if fields["CapInh"] != "0000000000000000" || fields["NoNewPrivs"] != "1" {
			t.Errorf("thread %s: CapInh %s NoNewPrivs %s", task.Name(), fields["CapInh"], fields["NoNewPrivs"])
		}
	}
	traffic(t, ns, 3)
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after dropping privileges", code)
	}
	data, _ := os.ReadFile(out)
	if got := countTypes(t, data); got["transition"] != 3*10+2 || got["states"] < 2 {
		t.Errorf("records %v: the tracer must keep working (transitions, socket walks) without the dropped capabilities", got)
	}
}

// A log agent tailing the file sees a record within --flush (plus the
// poll) of the transition, as whole lines.
func TestRecordsReachTheFileWithinFlush(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	out := filepath.Join(t.TempDir(), "out.ndjson")
	start(t, io.Discard, "--netns", fmt.Sprint(ns.Inode), "--port", "8080", "-o", out, "--flush", "200ms", "--emit", "transitions")
	time.Sleep(300 * time.Millisecond) // the start-up records are out
	before, _ := os.ReadFile(out)
	began := time.Now()
	traffic(t, ns, 1)
	for {
		data, _ := os.ReadFile(out)
		if bytes.Contains(data[len(before):], []byte(`"new":"SYN_SENT"`)) {
			if data[len(data)-1] != '\n' {
				t.Fatal("the file ends in a partial record")
			}
			if d := time.Since(began); d > time.Second {
				t.Errorf("first transition in the file after %v, want within --flush 200ms plus the poll", d)
			}
			return
		}
		if time.Since(began) > 5*time.Second {
			t.Fatal("no transition in the file after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logrotate gone wrong: the output's directory renamed away, then
// SIGHUP. The reopen fails; the tracer warns, keeps writing to the file
// it has open, and goes on.
func TestSighupReopenFails(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "logs", "trace.ndjson")
	if err := os.Mkdir(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	p := start(t, io.Discard, "--netns", fmt.Sprint(ns.Inode), "--port", "8080", "-o", out, "--flush", "20ms", "--emit", "all")
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(filepath.Dir(out), moved); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		p.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(p.log.String(), "SIGHUP") < i {
			if time.Now().After(deadline) {
				t.Fatalf("no warning %d s after SIGHUP %d; stderr %q", 5, i, p.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	traffic(t, ns, 3)
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after a failed reopen; stderr %q", code, p.log.String())
	}
	warnings := strings.Count(p.log.String(), "tcptrace-bpf: warning: SIGHUP: cannot open output file")
	if warnings != 2 || !strings.Contains(p.log.String(), "still writing to the file opened before") {
		t.Errorf("stderr %q: want one warning per failed SIGHUP (2)", p.log.String())
	}
	data, err := os.ReadFile(filepath.Join(moved, "trace.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if got := countTypes(t, data); got["transition"] != 3*10+2 || got["stats"] != 1 {
		t.Errorf("records in the old file %v, want %d transitions and the stats", got, 3*10+2)
	}
}

// --emit none --metrics is the pure exporter: the output gets the closing
// stats record only (and lost records, had anything been lost).
func TestEmitNoneWritesOnlyStats(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	out := filepath.Join(t.TempDir(), "out.ndjson")
	p := start(t, io.Discard, "--netns", fmt.Sprint(ns.Inode), "--emit", "none", "--metrics", "127.0.0.1:0", "--interval", "200ms", "-o", out, "--flush", "20ms")
	traffic(t, ns, 3)
	time.Sleep(500 * time.Millisecond) // two intervals: no states records either
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d", code)
	}
	data, _ := os.ReadFile(out)
	got := countTypes(t, data)
	if got["lost"] > 0 && onlyHostWideLosses(t, data) {
		delete(got, "lost") // other sockets' skips, labelled so (the run is filtered)
	}
	if len(got) != 1 || got["stats"] != 1 {
		t.Errorf("records %v, want the stats record only", got)
	}
}

// onlyHostWideLosses reports whether every lost record in data is the
// kernel's recursion skips of the whole host on a filtered run, which may
// concern other tests' sockets: recursion_host_wide, and nothing else.
func onlyHostWideLosses(t *testing.T, data []byte) bool {
	t.Helper()
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var l struct {
			Type              string
			Count, Recursion  uint64
			RecursionHostWide bool `json:"recursion_host_wide"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == "lost" && (!l.RecursionHostWide || l.Count != l.Recursion) {
			return false
		}
	}
	return true
}

// Inside a time namespace (unshare -T) the process's CLOCK_MONOTONIC is
// shifted; the kernel's timestamps are not. Every record's time must
// still be the wall time of the transition.
func TestTimeNamespace(t *testing.T) {
	nettest.RequirePrivileges(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("needs unshare (util-linux)")
	}
	ns := nettest.NewNetns(t)
	out := filepath.Join(t.TempDir(), "out.ndjson")
	cmd := exec.Command("unshare", "--time", "--monotonic", "1000", "--fork", binary(t),
		"--netns", fmt.Sprint(ns.Inode), "--emit", "all", "--duration", "3s", "-o", out)
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if l, _ := bufio.NewReader(errPipe).ReadString('\n'); !strings.HasPrefix(l, "tcptrace-bpf: tracing") {
		t.Fatalf("stderr %q", l)
	}
	go io.Copy(io.Discard, errPipe)
	before := time.Now()
	traffic(t, ns, 1)
	after := time.Now()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	data, _ := os.ReadFile(out)
	var n int
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r struct{ Type, TS string }
		json.Unmarshal([]byte(line), &r)
		if r.Type != "transition" {
			continue
		}
		n++
		ts, err := time.Parse(time.RFC3339Nano, r.TS)
		if err != nil || ts.Before(before.Add(-time.Second)) || ts.After(after.Add(time.Second)) {
			t.Errorf("transition at %s, the traffic ran %s to %s: %s", r.TS, before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano), line)
		}
	}
	if n == 0 {
		t.Fatal("no transitions")
	}
}

// The README says what per-transition records cost beside the default
// connection records ("X to Y times the bytes"): two tracers on the same
// traffic, one writing connections, one transitions, must land in that
// range.
func TestTransitionsCostAsTheREADMESays(t *testing.T) {
	nettest.RequirePrivileges(t)
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(\d+\.\d+) to (\d+\.\d+)\s+times the bytes`).FindSubmatch(readme)
	if m == nil {
		t.Fatal(`README.md does not say "X to Y times the bytes" of --emit transitions`)
	}
	lo, _ := strconv.ParseFloat(string(m[1]), 64)
	hi, _ := strconv.ParseFloat(string(m[2]), 64)
	ns := nettest.NewNetns(t)
	var conns, trans lockedBuffer
	a := start(t, &conns, "--netns", fmt.Sprint(ns.Inode), "--emit", "connections")
	b := start(t, &trans, "--netns", fmt.Sprint(ns.Inode), "--emit", "transitions")
	traffic(t, ns, 200)
	time.Sleep(time.Second) // the closes' hold (TIME_WAIT inference) ends
	a.stop(t, syscall.SIGINT)
	b.stop(t, syscall.SIGINT)
	if countTypes(t, []byte(conns.String()))["connection"] < 400 {
		t.Fatalf("want 400 connection records, got %v", countTypes(t, []byte(conns.String())))
	}
	ratio := float64(len(trans.String())) / float64(len(conns.String()))
	t.Logf("transitions %d bytes, connections %d bytes: %.2f times", len(trans.String()), len(conns.String()), ratio)
	if ratio < lo || ratio > hi {
		t.Errorf("transitions cost %.2f times the bytes of connections; README.md says %.1f to %.1f", ratio, lo, hi)
	}
}

// --netns self gives the tally ss shows in the user's own namespace, and
// the states record says which namespace that is; unfiltered, the tally
// says how many namespaces it spans.
func TestNetnsSelfMatchesSS(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	ns.LeakCloseWait(t, 3)
	// The tracer run from a shell in that namespace, as a user would.
	out, err := exec.Command("ip", "netns", "exec", ns.Name, binary(t), "--netns", "self", "--emit", "states", "--duration", "1s").Output()
	if err != nil {
		t.Fatalf("--netns self: %v", err)
	}
	want := map[string]uint64{}
	for st, n := range ns.SSStates(t) {
		want[strings.NewReplacer("FIN-WAIT-1", "FIN_WAIT1", "FIN-WAIT-2", "FIN_WAIT2", "-", "_", "ESTAB", "ESTABLISHED", "SYN_RECV", "NEW_SYN_RECV").Replace(st)] += n
	}
	var last *record.States
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if v, err := record.DecodeStrict([]byte(l)); err == nil {
			if s, ok := v.(*record.States); ok {
				last = s
			}
		}
	}
	if last == nil {
		t.Fatalf("no states record:\n%s", out)
	}
	got := map[string]uint64{}
	for st, n := range last.Counts {
		if n > 0 {
			got[event.State(st).String()] = n
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || want["CLOSE_WAIT"] != 3 {
		t.Errorf("--netns self counts %v, ss in that namespace %v", got, want)
	}
	if last.Namespaces == nil || *last.Namespaces != 1 || last.Netns == nil || *last.Netns != ns.Inode {
		t.Errorf("the states record does not name the one namespace %d: %+v", ns.Inode, last)
	}
	// Unfiltered, from the host: at least the test's namespace and this one.
	out, err = exec.Command(binary(t), "--emit", "states", "--duration", "1s").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`"namespaces":([2-9]|\d\d+)[,}]`).Match(out) {
		t.Errorf("an unfiltered tally does not say it spans several namespaces:\n%s", out)
	}
}
