//go:build linux

package tracer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

func TestPathLevel(t *testing.T) {
	for p, want := range map[string]int{"/": 0, "": 0, "/a": 1, "/a/b/": 2, "/../..": -2, "/../x": 0} {
		if got := pathLevel(p); got != want {
			t.Errorf("pathLevel(%q) = %d, want %d", p, got, want)
		}
	}
}

// The last cgroup2 mount on a mount point is the visible one, with its
// root relative to the namespace's root.
func TestCgroup2Mount(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte(`22 1 0:21 / /proc rw - proc proc rw
30 22 0:26 /../.. /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
31 30 0:26 / /sys/fs/cgroup rw - cgroup2 none rw
40 22 0:26 /a /mnt rw - cgroup2 none rw
`), 0o644)
	mount, root, err := cgroup2Mount(mi)
	if err != nil || mount != "/sys/fs/cgroup" || root != "/" {
		t.Errorf("cgroup2Mount = %q %q %v, want /sys/fs/cgroup /", mount, root, err)
	}
}

const cgroupHelperEnv = "TCPTRACE_CGROUP_LEVEL_OF"

// --cgroup inside a cgroup namespace with a cgroup2 mount of its own
// (unshare -C, as in a container): the level given to the kernel is the
// cgroup's level in the host's hierarchy, not its depth below the mount.
func TestCgroupLevelInNamespace(t *testing.T) {
	if p := os.Getenv(cgroupHelperEnv); p != "" {
		id, level, err := cgroupID(p)
		fmt.Printf("%d %d %v\n", id, level, err)
		return
	}
	nettest.RequirePrivileges(t)
	mount, _, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	top := filepath.Join(mount, fmt.Sprintf("tcptrace-cgns-%d", os.Getpid()))
	outer, inner := filepath.Join(top, "a"), filepath.Join(top, "a", "b")
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(inner); os.Remove(outer); os.Remove(top) })
	var st unix.Stat_t
	if err := unix.Stat(inner, &st); err != nil {
		t.Fatal(err)
	}
	_, wantLevel, err := cgroupID(inner) // from the initial namespace
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(mount, inner)
	if want := uint32(pathLevel(rel)); wantLevel != want {
		t.Fatalf("level from the host %d, want %d", wantLevel, want)
	}
	// Join a, then a new cgroup namespace rooted there, and a mount
	// namespace with only a cgroup2 mount of its own: a sees itself as
	// "/" and b as "/b".
	script := fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec unshare -C -m sh -c 'umount -l /sys/fs/cgroup 2>/dev/null; mount -t cgroup2 none /sys/fs/cgroup && cat /proc/self/cgroup >&2 && exec "$0" -test.run=^TestCgroupLevelInNamespace$' "$0"`, outer)
	cmd := exec.Command("sh", "-c", script)
	cmd.Args = append(cmd.Args, os.Args[0])
	cmd.Env = append(os.Environ(), cgroupHelperEnv+"=/b")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s %s", err, out, stderr.String())
	}
	if !strings.Contains(stderr.String(), "0::/\n") {
		t.Fatalf("the helper is not at its namespace's root: %s", stderr.String())
	}
	f := strings.Fields(string(out))
	if len(f) < 3 || f[2] != "<nil>" {
		t.Fatalf("helper: %s", out)
	}
	id, _ := strconv.ParseUint(f[0], 10, 64)
	level, _ := strconv.ParseUint(f[1], 10, 32)
	if id != st.Ino || uint32(level) != wantLevel {
		t.Errorf("inside the namespace: id %d level %d, want %d and %d (depth below its mount: 1)", id, level, st.Ino, wantLevel)
	}
}
