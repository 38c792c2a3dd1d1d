//go:build linux

package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// The systemd unit's exact command line, started the way systemd starts
// it (root, the unit's capability bounding set, Group=, no_new_privs, the
// LogsDirectory= it creates), writes its records 0640 root:tcptrace in a
// 0750 root:tcptrace directory; the shipped logrotate configuration
// rotates that file, and after the unit's ExecReload (SIGHUP) the tracer,
// holding only its kept capabilities, writes to the file logrotate
// created.
//
// systemd itself is not run: the machines this runs on have no systemd
// as PID 1. The test runs in a mount namespace of its own, with tmpfs on
// /var/log and /usr/local/bin and an /etc/group that has the group, and a
// network namespace of its own, so nothing on the host changes.
func TestUnitWithLogrotate(t *testing.T) {
	nettest.RequirePrivileges(t)
	for _, tool := range []string{"setpriv", "unshare", "nsenter", "logrotate"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv(nettest.RequireEnv) == "1" {
				t.Fatalf("needs %s (Debian packages util-linux, logrotate)", tool)
			}
			t.Skipf("needs %s", tool)
		}
	}
	keys := unitKeys(t, "systemd/tcptrace-bpf.service")
	execStart := strings.Fields(keys["ExecStart"])
	group, logsDir := keys["Group"], keys["LogsDirectory"]
	dirMode, err := strconv.ParseUint(keys["LogsDirectoryMode"], 8, 32)
	if err != nil || group == "" || logsDir == "" || keys["NoNewPrivileges"] != "yes" {
		t.Fatalf("unit: Group=%q LogsDirectory=%q LogsDirectoryMode=%q NoNewPrivileges=%q",
			group, logsDir, keys["LogsDirectoryMode"], keys["NoNewPrivileges"])
	}
	var bounding []string
	for _, c := range strings.Fields(keys["CapabilityBoundingSet"]) {
		bounding = append(bounding, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	var out, metricsAddr string
	for i, a := range execStart[:len(execStart)-1] {
		switch a {
		case "-o":
			out = execStart[i+1]
		case "--metrics":
			metricsAddr = execStart[i+1]
		}
	}
	if out != filepath.Join("/var/log", logsDir, "trace.ndjson") {
		t.Fatalf("ExecStart writes %q, not a file in LogsDirectory=%s", out, logsDir)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "tcptrace-bpf")
	build := exec.Command("go", "build", "-o", bin, "../cmd/tcptrace-bpf")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile and the Dockerfile build it
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, b)
	}
	const gid = 64917
	etcGroup, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	etcGroup = append(etcGroup, fmt.Sprintf("%s:x:%d:\n", group, gid)...)
	if err := os.WriteFile(filepath.Join(dir, "group"), etcGroup, 0o644); err != nil {
		t.Fatal(err)
	}
	// What systemd does before ExecStart, then ExecStart under the unit's
	// credentials. unshare(1) makes the mount namespace's propagation
	// private, so the mounts stay in it.
	script := fmt.Sprintf(`set -e
mount -t tmpfs -o mode=0755 tmpfs /var/log
mount -t tmpfs -o mode=0755 tmpfs /usr/local/bin
cp %[1]s %[2]s
mount --bind %[3]s /etc/group
install -d -o root -g %[4]s -m %[5]o /var/log/%[6]s
ip link set lo up
exec setpriv --bounding-set=-all,%[7]s --regid=%[4]s --clear-groups --no-new-privs -- "$@"`,
		bin, execStart[0], filepath.Join(dir, "group"), group, dirMode, logsDir, strings.Join(bounding, ","))
	cmd := exec.Command("unshare", append([]string{"--mount", "--net", "--", "sh", "-c", script, "sh"}, execStart...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errLog bytes.Buffer
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			errLog.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "tcptrace-bpf: tracing") {
				ready <- true
			}
		}
		close(ready)
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("the unit's command line did not start:\n%s", errLog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no ready line in 30 s:\n%s", errLog.String())
	}
	pid := cmd.Process.Pid
	root := fmt.Sprintf("/proc/%d/root", pid)
	logDir := filepath.Join(root, "/var/log", logsDir)
	checkOwner(t, logDir, os.ModeDir|os.FileMode(dirMode), gid)
	checkOwner(t, filepath.Join(root, out), 0o640, gid)
	// The tracer kept only the bounding set.
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(string(status), "CapEff:\t000000c000280000") {
		t.Errorf("the tracer's capabilities:\n%s", status)
	}

	connect(t, pid, metricsAddr) // a connection before rotation
	waitFor(t, filepath.Join(root, out), `"type":"connection"`)

	// logrotate as the package installs it (full root), with the shipped
	// configuration; its postrotate (systemctl) fails here and is ignored,
	// so the test sends what the unit's ExecReload sends.
	conf := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(conf, []byte(read(t, "logging/logrotate")), 0o644); err != nil {
		t.Fatal(err)
	}
	rot := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--mount", "--",
		"logrotate", "--force", "--state", filepath.Join(dir, "logrotate.state"), conf)
	if b, err := rot.CombinedOutput(); err != nil {
		t.Fatalf("logrotate: %v: %s", err, b)
	}
	checkOwner(t, filepath.Join(root, out), 0o640, gid) // logrotate's create
	if keys["ExecReload"] != "/bin/kill -HUP $MAINPID" {
		t.Fatalf("ExecReload=%q", keys["ExecReload"])
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the reopen happens in the tracer's loop
	connect(t, pid, metricsAddr)
	waitFor(t, filepath.Join(root, out), `"type":"connection"`)
	rotated, err := os.ReadFile(filepath.Join(root, out+".1"))
	if err != nil || !bytes.HasSuffix(rotated, []byte("\n")) {
		t.Errorf("rotated file: %v, %d bytes, not ending in a whole line", err, len(rotated))
	}
	for _, f := range []string{out, out + ".1"} {
		b, _ := os.ReadFile(filepath.Join(root, f))
		t.Logf("%s: %d bytes", f, len(b))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	stopped = true
	if err != nil {
		t.Errorf("tracer: %v", err)
	}
	// The reopen worked, and the tracer dropped what it does not keep
	// without complaint (it holds no CAP_SETPCAP under this bounding set).
	// (Other tests' namespaces coming and going may draw a walk warning
	// from this host-wide tracer: not what is checked here.)
	log := errLog.String()
	if !strings.Contains(log, "SIGHUP: reopened") || strings.Contains(log, "warning: running with all capabilities") ||
		strings.Contains(log, "warning: SIGHUP") {
		t.Errorf("tracer's stderr:\n%s", log)
	}
}

func checkOwner(t *testing.T, path string, mode os.FileMode, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || st.Uid != 0 || int(st.Gid) != gid {
		t.Errorf("%s: %v %d:%d, want %v 0:%d", path, fi.Mode(), st.Uid, st.Gid, mode, gid)
	}
}

// connect makes one TCP connection inside the network namespace of pid,
// to addr, the tracer's metrics endpoint there, from a thread that never leaves
// that namespace (the thread ends with the goroutine).
func connect(t *testing.T, pid int, addr string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		// A refused connect is tried again for a few seconds: on a loaded
		// machine the tracer may still be starting its metrics server.
		var c net.Conn
		for try := 0; ; try++ {
			if c, err = net.Dial("tcp", addr); err == nil || try == 30 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errc <- err
			return
		}
		fmt.Fprint(c, "GET /metrics HTTP/1.0\r\n\r\n")
		_, err = io.Copy(io.Discard, c)
		c.Close()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("connecting in the unit's network namespace: %v", err)
	}
}

// waitFor waits until path holds a line containing s.
func waitFor(t *testing.T, path, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(s)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no %s after 5 s: %q", path, s, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
