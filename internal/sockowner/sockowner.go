//go:build linux

// Package sockowner finds which process owns each socket that exists now,
// by reading /proc/PID/fd, and which network namespaces are in use.
package sockowner

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// Scan reads /proc under root (normally "/proc") and returns the owner of
// every socket open in a process. Processes that vanish or cannot be read
// are skipped.
func Scan(root string) (Table, error) {
	owners := Table{}
	err := eachSocket(root, func(pid uint32, comm func() [16]byte, ino uint64) {
		if prev, dup := owners[ino]; dup && prev.PID < pid {
			return
		}
		owners[ino] = Owner{PID: pid, Comm: comm()}
	})
	if err != nil {
		return nil, err
	}
	return owners, nil
}

// Holders returns, for each socket inode of want, every process that
// holds it open now, lowest PID first: after a fork-per-connection server
// accepted and forked, the child (and the parent, until it closes its
// copy). An inode no process holds (an orphan, or a connection not yet
// accept()ed) has no entry. It reads every process's fd table: for the
// rare moments that need it, such as a stuck record.
func Holders(root string, want map[uint64]bool) map[uint64][]Owner {
	out := map[uint64][]Owner{}
	if len(want) == 0 {
		return out
	}
	_ = eachSocket(root, func(pid uint32, comm func() [16]byte, ino uint64) {
		if !want[ino] {
			return
		}
		if hs := out[ino]; len(hs) > 0 && hs[len(hs)-1].PID == pid {
			return // the same socket on two fds of one process
		}
		out[ino] = append(out[ino], Owner{PID: pid, Comm: comm()})
	})
	for _, o := range out {
		slices.SortFunc(o, func(a, b Owner) int { return int(a.PID) - int(b.PID) })
	}
	return out
}

// eachSocket calls fn for every socket fd of every process under root;
// comm reads the process's command once, when first asked.
func eachSocket(root string, fn func(pid uint32, comm func() [16]byte, ino uint64)) error {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil || !d.IsDir() {
			continue
		}
		base := filepath.Join(root, d.Name())
		fds, err := os.ReadDir(filepath.Join(base, "fd"))
		if err != nil {
			continue
		}
		var c [16]byte
		haveComm := false
		comm := func() [16]byte {
			if !haveComm {
				c, haveComm = readComm(base), true
			}
			return c
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(base, "fd", fd.Name()))
			if err != nil {
				continue
			}
			if ino, ok := socketInode(target); ok {
				fn(uint32(pid), comm, ino)
			}
		}
	}
	return nil
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

// Netns returns one path for each network namespace in use: a
// /proc/PID/ns/net of a process in it, and the namespaces ip-netns(8)
// keeps under named (normally "/run/netns"; they may have no process).
// root is normally "/proc".
func Netns(root, named string) []string {
	seen := map[string]bool{}
	var paths []string
	add := func(p, id string) {
		if !seen[id] {
			seen[id] = true
			paths = append(paths, p)
		}
	}
	if dirs, err := os.ReadDir(root); err == nil {
		for _, d := range dirs {
			if _, err := strconv.ParseUint(d.Name(), 10, 32); err != nil {
				continue
			}
			p := filepath.Join(root, d.Name(), "ns", "net")
			if ns, err := os.Readlink(p); err == nil {
				add(p, ns)
			}
		}
	}
	bound, _ := filepath.Glob(filepath.Join(named, "*"))
	for _, p := range bound {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			add(p, fmt.Sprintf("net:[%d]", st.Ino))
		}
	}
	return paths
}
