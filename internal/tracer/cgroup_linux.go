//go:build linux

package tracer

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// initCgroupNS is the inode of the initial cgroup namespace
// (PROC_CGROUP_INIT_INO, fixed by the kernel).
const initCgroupNS = 0xEFFFFFFB

// cgroupID resolves --cgroup: a directory in the cgroup v2 hierarchy,
// given as its path or relative to the cgroup2 mount (as /proc/PID/cgroup
// shows it: "/system.slice/nginx.service"). It returns the cgroup's id
// (its inode number) and its level: its depth below the root of the whole
// hierarchy, which is what the kernel compares (cgroup->level), not its
// depth below the mount this process sees. Inside a cgroup namespace (a
// container) the mount's root is the namespace's root, somewhere below
// the real one.
func cgroupID(path string) (uint64, uint32, error) {
	mount, mountRoot, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		return 0, 0, err
	}
	full := path
	if !strings.HasPrefix(filepath.Clean(path)+"/", mount+"/") {
		full = filepath.Join(mount, path)
	}
	var st unix.Stat_t
	if err := unix.Stat(full, &st); err != nil {
		return 0, 0, fmt.Errorf("--cgroup %s: no such cgroup under %s (give a path like /system.slice/nginx.service): %w", path, mount, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, 0, fmt.Errorf("--cgroup %s: %s is not a cgroup directory", path, full)
	}
	nsLevel, err := cgroupNSLevel()
	if err != nil {
		return 0, 0, fmt.Errorf("--cgroup %s: %w", path, err)
	}
	rel, _ := filepath.Rel(mount, full)
	level := nsLevel + pathLevel(mountRoot) + pathLevel("/"+rel)
	if level < 0 {
		return 0, 0, fmt.Errorf("--cgroup %s: cannot place %s in the cgroup hierarchy", path, full)
	}
	return st.Ino, uint32(level), nil
}

// pathLevel is the depth of a cgroup path relative to a namespace root:
// "/" is 0, "/a/b" 2, "/../.." -2.
func pathLevel(p string) int {
	n := 0
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			n--
		default:
			n++
		}
	}
	return n
}

// cgroupNSLevel is the level of this process's cgroup namespace root in
// the whole hierarchy: 0 in the initial namespace. Elsewhere the kernel
// thread kthreadd (PID 2), which lives in the root cgroup, shows as
// "0::/../.." in /proc/2/cgroup: one ".." per level. That needs the
// host's PID namespace (hostPID: true in Kubernetes).
func cgroupNSLevel() (int, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/cgroup", &st); err != nil || st.Ino == initCgroupNS {
		return 0, nil // no cgroup namespaces (before 4.6), or the initial one
	}
	comm, _ := os.ReadFile("/proc/2/comm")
	line, err := os.ReadFile("/proc/2/cgroup")
	if err != nil || strings.TrimSpace(string(comm)) != "kthreadd" {
		return 0, fmt.Errorf("inside a cgroup namespace, the cgroup's level in the host's hierarchy comes from kthreadd (PID 2), which this PID namespace does not show: run in the host's PID namespace (hostPID)")
	}
	for _, l := range strings.Split(string(line), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return -pathLevel(p), nil
		}
	}
	return 0, fmt.Errorf("no cgroup v2 line in /proc/2/cgroup")
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts), and the
// mount's root relative to this process's cgroup namespace root ("/"
// unless a subtree was bind-mounted or the mount predates the namespace).
// A later mount on the same mount point hides an earlier one.
func cgroup2Mount(mountinfo string) (mount, root string, err error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mount-point ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fields := strings.Fields(post); len(fields) > 0 && fields[0] == "cgroup2" {
			if pf := strings.Fields(pre); len(pf) >= 5 && (mount == "" || pf[4] == mount) {
				mount, root = pf[4], pf[3]
			}
		}
	}
	if mount == "" {
		return "", "", fmt.Errorf("--cgroup needs the cgroup v2 hierarchy, and none is mounted")
	}
	return mount, root, nil
}
