//go:build linux

package probe

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/sockowner"
)

// Seed gives the sockets that exist already their owner, so that their
// later transitions (which mostly run in softirq, where the current task
// is not the owner) and the children accepted from existing listeners are
// attributed right. owners comes from sockowner.Scan; netns lists one
// /proc/PID/ns/net path per namespace to walk. Only the tp_btf mode has
// socket storage; in the tracepoint mode Seed does nothing.
func (p *Probe) Seed(owners sockowner.Table, netns []string) error {
	prog := p.coll.Programs[tcptraceProgSeedOwners]
	if prog == nil {
		return nil
	}
	m := p.coll.Maps[tcptraceMapSeedInodes]
	defer clearMap(m)
	for ino, o := range owners {
		v := tcptraceSockInfo{Pid: o.PID}
		for i, b := range o.Comm {
			v.Comm[i] = int8(b)
		}
		if err := m.Update(ino, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("filling seed map: %w", err)
		}
	}
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attaching TCP socket iterator: %w", err)
	}
	defer it.Close()
	for _, ns := range netns {
		if err := runIterIn(it, ns); err != nil {
			return fmt.Errorf("seeding sockets of %s: %w", ns, err)
		}
	}
	return nil
}

// runIterIn runs the iterator in the network namespace at nsPath: a TCP
// iterator walks the namespace of the thread that opens it. The work runs
// on a locked thread that is thrown away after, so no other goroutine
// ever runs in that namespace.
func runIterIn(it *link.Iter, nsPath string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		errc <- func() error {
			f, err := os.Open(nsPath)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("entering network namespace: %w", err)
			}
			r, err := it.Open()
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(io.Discard, r)
			return err
		}()
	}()
	return <-errc
}

// seedSize is the size given to the seed map at load.
func seedSize(n int) uint32 {
	if n < 1 {
		return 1
	}
	return uint32(n)
}

func clearMap(m *ebpf.Map) {
	var k uint64
	var keys []uint64
	iter := m.Iterate()
	var v tcptraceSockInfo
	for iter.Next(&k, &v) {
		keys = append(keys, k)
	}
	for _, k := range keys {
		_ = m.Delete(k)
	}
}
