//go:build linux

// Package vmtest runs tcptrace-bpf on another kernel than the host's: it
// boots a kernel image under qemu (software emulation works; no KVM
// needed) from an initramfs holding the static binary, busybox and this
// test binary as the traffic peers, and checks the transitions of one
// client/server exchange in both attach modes, and the histograms the
// kernel keeps in the histogram-only mode. `make test-vm`, run by
// .ci/run (a boot under emulation takes a minute or more).
package vmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

func TestMain(m *testing.M) { nettest.Main(m) }

const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
ip link set lo up
echo "VMTEST-KERNEL $(/bin/busybox uname -r)"
for run in tp_btf:all tracepoint:all tp_btf:histograms tp_btf:default; do
  attach=${run%%:*}
  mode=$attach-${run##*:}
  emit=${run##*:}
  [ "$emit" = default ] && emit=connections,histograms,states,stuck
  /tcptrace-bpf --attach $attach --emit $emit --port 8080 --flush 20ms -o /tmp/$mode.ndjson 2>/tmp/$mode.err &
  tracer=$!
  # Traffic only once the tracer says it is attached: under emulation the
  # load takes seconds, and a fixed sleep raced it (the listener's
  # CLOSE->LISTEN was then before the attach).
  i=0
  until grep -q "tcptrace-bpf: tracing" /tmp/$mode.err || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
  TCPTRACE_TEST_PEER=1 /peer server 127.0.0.1:8080 1 300ms > /tmp/$mode.server &
  server=$!
  i=0
  until grep -q ready /tmp/$mode.server || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
  TCPTRACE_TEST_PEER=1 /peer client 127.0.0.1:8080 1 > /dev/null
  wait $server
  sleep 0.5
  kill -INT $tracer
  wait $tracer
  echo VMTEST-BEGIN $mode
  cat /tmp/$mode.err /tmp/$mode.ndjson
  echo VMTEST-END $mode
done
poweroff -f
`

func TestOnOtherKernel(t *testing.T) {
	kernel := os.Getenv("TCPTRACE_VM_KERNEL")
	if kernel == "" {
		t.Skip("set TCPTRACE_VM_KERNEL to a kernel image (make test-vm does)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "busybox", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s", tool)
		}
	}
	root := t.TempDir()
	build := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v: %s", args, err, b)
		}
	}
	build("build", "-o", filepath.Join(root, "tcptrace-bpf"), "../../cmd/tcptrace-bpf")
	self, _ := os.Executable()
	copyFile(t, self, filepath.Join(root, "peer"))
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	bb, _ := exec.LookPath("busybox")
	copyFile(t, bb, filepath.Join(root, "bin", "busybox"))
	os.WriteFile(filepath.Join(root, "init"), []byte(initScript), 0o755)

	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	cpio := exec.Command("sh", "-c", "find . | cpio -o -H newc > "+initrd)
	cpio.Dir = root
	if b, err := cpio.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v: %s", err, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	began := time.Now()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", "-m", "1024", "-smp", "2", "-cpu", "max",
		"-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 rdinit=/init panic=-1 quiet")
	out, err := qemu.CombinedOutput()
	if err != nil && ctx.Err() != nil {
		t.Fatalf("the VM did not finish in 8 minutes:\n%s", tail(out))
	}
	console := string(out)
	t.Logf("VM run took %s; %s", time.Since(began).Round(time.Second), firstLine(console, "VMTEST-KERNEL"))
	for _, mode := range []string{"tp_btf-all", "tracepoint-all", "tp_btf-histograms", "tp_btf-default"} {
		t.Run(mode, func(t *testing.T) {
			section := between(console, "VMTEST-BEGIN "+mode, "VMTEST-END "+mode)
			if !strings.Contains(section, "tcptrace-bpf: tracing") {
				t.Fatalf("the tracer did not start:\n%s\nconsole tail:\n%s", section, tail(out))
			}
			switch {
			case strings.HasSuffix(mode, "-histograms"):
				checkHistograms(t, section)
				return
			case strings.HasSuffix(mode, "-default"):
				// The connection records (the kernel holds each
				// connection's transitions, and on 6.1 an accepted
				// child's cookie is its listener's at its birth): the
				// timelines the transitions of tp_btf-all make.
				checkHistograms(t, section)
				want := timelines(between(console, "VMTEST-BEGIN tp_btf-all", "VMTEST-END tp_btf-all"))
				if got := timelines(section); !slices.Equal(got, want) || len(got) != 3 {
					t.Errorf("connections %v, want those of the transitions %v", got, want)
				}
				return
			}
			paths := map[uint64][]string{}
			netnsCookies := map[uint64]bool{} // one namespace: one cookie, read through CO-RE
			for _, line := range strings.Split(section, "\n") {
				if r, ok := decode(line).(*record.Transition); ok {
					netnsCookies[r.NetnsCookie] = true
					if len(paths[r.Cookie]) == 0 {
						paths[r.Cookie] = []string{r.Old}
					}
					paths[r.Cookie] = append(paths[r.Cookie], r.New)
				}
			}
			if len(netnsCookies) != 1 || netnsCookies[0] {
				t.Errorf("netns_cookie of the transitions: %v, want the namespace's one, not 0", netnsCookies)
			}
			var got []string
			for _, p := range paths {
				got = append(got, strings.Join(p, ">"))
			}
			for _, want := range []string{
				"CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE",
				"LISTEN>SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE",
				"CLOSE>LISTEN>CLOSE",
			} {
				if !contains(got, want) {
					t.Errorf("no socket went %s; saw %v", want, got)
				}
			}
		})
	}
}

// timelines lists the states of each connection record, sorted.
func timelines(section string) []string {
	var out []string
	for _, line := range strings.Split(section, "\n") {
		if c, ok := decode(line).(*record.Connection); ok {
			var sts []string
			for _, sp := range c.States {
				sts = append(sts, sp.State)
			}
			out = append(out, strings.Join(sts, ">"))
		}
	}
	slices.Sort(out)
	return out
}

// checkHistograms: one exchange gives one stay in each state the two
// ends pass through (two in ESTABLISHED; the listener's LISTEN stay ends
// when it closes), every socket's state found in the kernel's table. On
// 6.1 an accepted child carries its listener's cookie at its birth
// (KERNEL-NOTES), the case the slot table must not confuse with the
// listener.
func checkHistograms(t *testing.T, section string) {
	want := map[string]uint64{"LISTEN": 1, "SYN_SENT": 1, "SYN_RECV": 1, "ESTABLISHED": 2,
		"FIN_WAIT1": 1, "FIN_WAIT2": 1, "CLOSE_WAIT": 1, "LAST_ACK": 1}
	got := map[string]uint64{}
	var stats *record.Stats
	for _, line := range strings.Split(section, "\n") {
		switch r := decode(line).(type) {
		case *record.Histogram:
			got[r.State] = r.Count
		case *record.Stats:
			stats = r
		}
	}
	for state, n := range want {
		if got[state] != n {
			t.Errorf("%s: %d stays, want %d (all: %v)", state, got[state], n, got)
		}
	}
	if stats == nil || stats.StorageFail != 0 {
		t.Errorf("stats %+v, want storage_fail 0", stats)
	}
}

func decode(line string) any {
	v, err := record.Decode([]byte(strings.TrimSpace(line)))
	if err != nil {
		return nil
	}
	return v
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	j := strings.Index(s, to)
	if i < 0 || j < i {
		return ""
	}
	return s[i+len(from) : j]
}

func firstLine(s, prefix string) string {
	i := strings.Index(s, prefix)
	if i < 0 {
		return "(no kernel line)"
	}
	l, _, _ := strings.Cut(s[i:], "\n")
	return strings.TrimSpace(l)
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(bytes.ReplaceAll(b, []byte("\r"), nil))
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
