// Package sockowner finds which process owns each socket that exists now,
// by reading /proc/PID/fd, and which network namespaces are in use.
package sockowner

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Owner is the process holding a socket open.
type Owner struct {
	PID  uint32
	Comm [16]byte
}

// Table maps socket inode numbers to their owner. When several processes
// share a socket (a forked server), the lowest PID wins: usually the
// parent that created it.
type Table map[uint64]Owner

// Scan reads /proc under root (normally "/proc"). It returns the socket
// owners and one /proc/PID/ns/net path for each distinct network
// namespace. Processes that vanish or cannot be read are skipped.
func Scan(root string) (Table, []string, error) {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, err
	}
	owners := Table{}
	seenNetns := map[string]bool{}
	var netns []string
	for _, d := range dirs {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil || !d.IsDir() {
			continue
		}
		base := filepath.Join(root, d.Name())
		if ns, err := os.Readlink(filepath.Join(base, "ns", "net")); err == nil && !seenNetns[ns] {
			seenNetns[ns] = true
			netns = append(netns, filepath.Join(base, "ns", "net"))
		}
		fds, err := os.ReadDir(filepath.Join(base, "fd"))
		if err != nil {
			continue
		}
		var comm [16]byte
		haveComm := false
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(base, "fd", fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := socketInode(target)
			if !ok {
				continue
			}
			if prev, dup := owners[ino]; dup && prev.PID < uint32(pid) {
				continue
			}
			if !haveComm {
				comm = readComm(base)
				haveComm = true
			}
			owners[ino] = Owner{PID: uint32(pid), Comm: comm}
		}
	}
	return owners, netns, nil
}

// socketInode parses "socket:[12345]".
func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(s, 10, 64)
	return ino, err == nil
}

func readComm(procDir string) [16]byte {
	var c [16]byte
	b, err := os.ReadFile(filepath.Join(procDir, "comm"))
	if err == nil {
		copy(c[:15], strings.TrimSuffix(string(b), "\n"))
	}
	return c
}
