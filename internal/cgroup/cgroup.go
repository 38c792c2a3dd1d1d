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

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// Parse reads a cgroup v2 path. Container IDs are recognised in the shapes
// the runtimes create with the systemd cgroup driver
// (".../cri-containerd-ID.scope", ".../crio-ID.scope", ".../docker-ID.scope")
// and the cgroupfs one ("/docker/ID", "/kubepods/.../podUID/ID").
func Parse(p string) event.Identity {
	id := event.Identity{Path: p}
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

// Cache remembers each process's identity, up to a bound; past it, the
// oldest half is forgotten. A process is read from /proc once: a process
// that could not be read (it has exited) is remembered as unknown too, so
// a busy PID never costs a read per connection. A lookup names the
// process by PID and command: a PID reused by another program is another
// entry; one reused by the same program (a restart) may report its
// predecessor's cgroup until it is evicted.
type Cache struct {
	procRoot string
	max      int
	m        map[procKey]*event.Identity // nil: could not be read
	order    []procKey
	reads    uint64
}

type procKey struct {
	pid  uint32
	comm [16]byte
}

// NewCache makes a cache of at most limit processes reading procRoot
// (/proc).
func NewCache(procRoot string, limit int) *Cache {
	return &Cache{procRoot: procRoot, max: max(limit, 2), m: map[procKey]*event.Identity{}}
}

// Lookup returns the identity of process pid, whose command is comm; nil
// when it cannot be read (the process has exited, or has no cgroup v2
// path). The result is shared: do not modify it. A process seen before
// costs a map lookup and no allocation.
func (c *Cache) Lookup(pid uint32, comm [16]byte) *event.Identity {
	k := procKey{pid, comm}
	if id, ok := c.m[k]; ok {
		return id
	}
	c.reads++
	var id *event.Identity
	if p, err := OfPID(c.procRoot, pid); err == nil {
		v := Parse(p)
		id = &v
	}
	if len(c.m) >= c.max {
		half := len(c.order)/2 + 1
		for _, old := range c.order[:half] {
			delete(c.m, old)
		}
		c.order = append(c.order[:0], c.order[half:]...)
	}
	c.m[k] = id
	c.order = append(c.order, k)
	return id
}

// Reads counts the /proc reads made so far.
func (c *Cache) Reads() uint64 { return c.reads }
