package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	for _, tc := range []struct{ path, id, unit string }{
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c.slice/cri-containerd-" + hex64 + ".scope", hex64, "cri-containerd-" + hex64 + ".scope"},
		{"/kubepods.slice/kubepods-pod1b2c.slice/crio-" + hex64 + ".scope", hex64, "crio-" + hex64 + ".scope"},
		{"/kubepods.slice/kubepods-pod1b2c.slice/crio-conmon-" + hex64 + ".scope", "", "crio-conmon-" + hex64 + ".scope"},
		{"/system.slice/docker-" + hex64 + ".scope", hex64, "docker-" + hex64 + ".scope"},
		{"/docker/" + hex64, hex64, ""},
		{"/kubepods/burstable/pod1b2c-33/" + hex64, hex64, ""},
		{"/system.slice/nginx.service", "", "nginx.service"},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope", "", "app-firefox-1234.scope"},
		{"/system.slice/docker-" + hex64 + ".scope/init.scope", hex64, "init.scope"},
		{"/", "", ""},
		{"/docker/notanid", "", ""},
		{"/system.slice/" + hex64, "", ""},
	} {
		got := Parse(tc.path)
		if got.ContainerID != tc.id || got.Unit != tc.unit || got.Path != tc.path {
			t.Errorf("Parse(%q) = %+v, want container %q unit %q", tc.path, got, tc.id, tc.unit)
		}
	}
}

// A real cgroup: a process moved into a cgroup named like a systemd
// service is read back through /proc with its unit. (These machines run
// no systemd, so the cgroup is made by the test; as root only.)
func TestRealCgroup(t *testing.T) {
	self, err := OfPID("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Skipf("no cgroup v2 path for this process: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	mount := ""
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if pre, post, ok := strings.Cut(l, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
			mount = strings.Fields(pre)[4]
		}
	}
	if mount == "" {
		t.Skip("no cgroup2 mount")
	}
	dir := filepath.Join(mount, self, fmt.Sprintf("tcptrace-test-%d.service", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup below this process's (%s): %v", self, err)
	}
	defer os.Remove(dir)
	cmd := exec.Command("sh", "-c", "echo $$ > "+dir+"/cgroup.procs && exec sleep 5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The shell moves itself, then becomes sleep: wait for the move.
	want := filepath.Base(dir)
	var id *event.Identity
	for i := 0; i < 50; i++ {
		id = NewCache("/proc", 2).Lookup(uint32(cmd.Process.Pid), [16]byte{})
		if id != nil && id.Unit == want {
			t.Logf("%+v", id)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("Lookup = %+v, want unit %s", id, want)
}

func TestCacheBounded(t *testing.T) {
	proc := t.TempDir()
	for pid := 1; pid <= 10; pid++ {
		os.MkdirAll(filepath.Join(proc, fmt.Sprint(pid)), 0o755)
		os.WriteFile(filepath.Join(proc, fmt.Sprint(pid), "cgroup"), []byte(fmt.Sprintf("0::/system.slice/s%d.service\n", pid)), 0o644)
	}
	c := NewCache(proc, 4)
	for pid := uint32(1); pid <= 10; pid++ {
		if id := c.Lookup(pid, [16]byte{}); id == nil || id.Unit != fmt.Sprintf("s%d.service", pid) {
			t.Errorf("pid %d: %+v", pid, id)
		}
		if len(c.m) > 4 || len(c.order) != len(c.m) {
			t.Fatalf("cache holds %d (order %d), bound 4", len(c.m), len(c.order))
		}
	}
	if id := c.Lookup(99, [16]byte{}); id != nil {
		t.Error("a missing process was found")
	}
}

// One /proc read per process, also for one that cannot be read; a hit
// allocates nothing; a PID reused by another command is read again.
func TestCacheReadsOnce(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "7"), 0o755)
	os.WriteFile(filepath.Join(proc, "7", "cgroup"), []byte("0::/system.slice/a.service\n"), 0o644)
	c := NewCache(proc, 16)
	var nginx, curl [16]byte
	copy(nginx[:], "nginx")
	copy(curl[:], "curl")
	for range 3 {
		c.Lookup(7, nginx)
		c.Lookup(8, nginx) // gone
	}
	if c.Reads() != 2 {
		t.Errorf("%d reads for two processes looked up three times, want 2", c.Reads())
	}
	if allocs := testing.AllocsPerRun(100, func() { c.Lookup(7, nginx) }); allocs != 0 {
		t.Errorf("a cached lookup allocates %v times", allocs)
	}
	c.Lookup(7, curl)
	if c.Reads() != 3 {
		t.Errorf("a PID reused by another command was not read again")
	}
}
