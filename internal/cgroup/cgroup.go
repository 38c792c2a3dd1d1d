// Package cgroup names who a socket belongs to beyond its process: the
// owner's cgroup v2 path, and from it the container ID (containerd,
// CRI-O, Docker) or the systemd unit. Kubernetes pod, namespace and
// container names are not here: they need the kubelet's CRI socket or the
// API server.
package cgroup

import (
	"fmt"
	"os"
	"path"
	"strings"
)

// Identity is what a cgroup path says about its processes.
type Identity struct {
	Path        string // as /proc/PID/cgroup shows it: "/system.slice/nginx.service"
	ContainerID string // 64 hex digits, or "" when the path is not a container's
	Unit        string // the innermost systemd service or scope, or ""
}

// Parse reads a cgroup v2 path. Container IDs are recognised in the shapes
// the runtimes create with the systemd cgroup driver
// (".../cri-containerd-ID.scope", ".../crio-ID.scope", ".../docker-ID.scope")
// and the cgroupfs one ("/docker/ID", "/kubepods/.../podUID/ID").
func Parse(p string) Identity {
	id := Identity{Path: p}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		c := parts[i]
		if id.Unit == "" && (strings.HasSuffix(c, ".service") || strings.HasSuffix(c, ".scope")) {
			id.Unit = c
		}
		if id.ContainerID == "" {
			id.ContainerID = containerID(c, i > 0 && (parts[i-1] == "docker" || strings.HasPrefix(parts[i-1], "pod")))
		}
	}
	return id
}

// containerID is the ID in one path component, if it names a container:
// "<runtime>-ID.scope", or a bare ID under a runtime's directory.
func containerID(c string, bareAllowed bool) string {
	if s, ok := strings.CutSuffix(c, ".scope"); ok {
		for _, prefix := range []string{"cri-containerd-", "crio-", "docker-"} {
			if id, ok := strings.CutPrefix(s, prefix); ok && isID(id) {
				return id
			}
		}
		return ""
	}
	if bareAllowed && isID(c) {
		return c
	}
	return ""
}

func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// OfPID reads a process's cgroup v2 path from procRoot/PID/cgroup.
func OfPID(procRoot string, pid uint32) (string, error) {
	b, err := os.ReadFile(path.Join(procRoot, fmt.Sprint(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %d has no cgroup v2 path", pid)
}

// Cache remembers each PID's identity, up to a bound; past it, the oldest
// half is forgotten. PIDs are reused, so an entry can outlive its process:
// Forget a PID when the tracer learns it is gone, or accept that a reused
// PID reports its predecessor's cgroup until evicted.
type Cache struct {
	procRoot string
	max      int
	m        map[uint32]Identity
	order    []uint32
}

// NewCache makes a cache of at most max PIDs reading procRoot (/proc).
func NewCache(procRoot string, max int) *Cache {
	return &Cache{procRoot: procRoot, max: max, m: map[uint32]Identity{}}
}

// Lookup returns pid's identity; ok is false when it cannot be read (the
// process has exited).
func (c *Cache) Lookup(pid uint32) (Identity, bool) {
	if id, ok := c.m[pid]; ok {
		return id, true
	}
	p, err := OfPID(c.procRoot, pid)
	if err != nil {
		return Identity{}, false
	}
	if len(c.m) >= c.max {
		for _, old := range c.order[:len(c.order)/2+1] {
			delete(c.m, old)
		}
		c.order = append(c.order[:0], c.order[len(c.order)/2+1:]...)
	}
	id := Parse(p)
	c.m[pid] = id
	c.order = append(c.order, pid)
	return id, true
}
