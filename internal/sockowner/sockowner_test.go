//go:build linux

package sockowner

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeProc lays out /proc/PID/{comm,fd/N,ns/net} for each process.
func fakeProc(t *testing.T, procs map[string]struct {
	comm  string
	netns string
	fds   map[string]string
}) string {
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, pid)
		for _, d := range []string{"fd", "ns"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644)
		os.Symlink(p.netns, filepath.Join(dir, "ns", "net"))
		for fd, target := range p.fds {
			os.Symlink(target, filepath.Join(dir, "fd", fd))
		}
	}
	os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644)
	return root
}

func TestScan(t *testing.T) {
	root := fakeProc(t, map[string]struct {
		comm  string
		netns string
		fds   map[string]string
	}{
		"100": {"nginx", "net:[4026531840]", map[string]string{"3": "socket:[555]", "4": "/dev/null", "5": "socket:[556]"}},
		"101": {"nginx-worker", "net:[4026531840]", map[string]string{"3": "socket:[555]", "7": "socket:[700]"}},
		"200": {"a-very-long-command-name", "net:[4026532000]", map[string]string{"0": "pipe:[1]", "9": "socket:[bad"}},
	})
	owners, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	check := func(ino uint64, pid uint32, comm string) {
		t.Helper()
		o, ok := owners[ino]
		if !ok || o.PID != pid || string(trimNUL(o.Comm[:])) != comm {
			t.Errorf("inode %d: %+v (found %v), want %d %q", ino, o, ok, pid, comm)
		}
	}
	check(555, 100, "nginx") // shared: the lowest PID (the parent) wins
	check(556, 100, "nginx")
	check(700, 101, "nginx-worker")
	if len(owners) != 3 {
		t.Errorf("owners %v, want 3 sockets", owners)
	}
	if netns := Netns(root, t.TempDir()); len(netns) != 2 {
		t.Errorf("netns paths %v, want one per namespace (2)", netns)
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// Holders names every process holding a socket, once each, lowest PID
// first; a socket no process holds has no entry.
func TestHolders(t *testing.T) {
	root := fakeProc(t, map[string]struct {
		comm  string
		netns string
		fds   map[string]string
	}{
		"300": {"server", "net:[1]", map[string]string{"3": "socket:[900]", "4": "socket:[901]"}},
		"301": {"worker", "net:[1]", map[string]string{"3": "socket:[900]", "5": "socket:[900]"}},
		"302": {"other", "net:[1]", map[string]string{"3": "socket:[902]"}},
	})
	got := Holders(root, map[uint64]bool{900: true, 903: true})
	hs := got[900]
	if len(got) != 1 || len(hs) != 2 || hs[0].PID != 300 || hs[1].PID != 301 || string(trimNUL(hs[1].Comm[:])) != "worker" {
		t.Fatalf("holders %+v, want socket 900 held by 300 then 301, and nothing else", got)
	}
}
