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

// cgroupID resolves --cgroup: a directory in the cgroup v2 hierarchy,
// given as its path or relative to the cgroup2 mount (as /proc/PID/cgroup
// shows it: "/system.slice/nginx.service"). It returns the cgroup's id
// (its inode number) and its depth below the root.
func cgroupID(path string) (uint64, uint32, error) {
	mount, err := cgroup2Mount()
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
	rel, _ := filepath.Rel(mount, full)
	level := uint32(0)
	if rel != "." {
		level = uint32(len(strings.Split(rel, "/")))
	}
	return st.Ino, level, nil
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fields := strings.Fields(post); len(fields) > 0 && fields[0] == "cgroup2" {
			if pf := strings.Fields(pre); len(pf) >= 5 {
				return pf[4], nil
			}
		}
	}
	return "", fmt.Errorf("--cgroup needs the cgroup v2 hierarchy, and none is mounted")
}
