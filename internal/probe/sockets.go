//go:build linux

package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/sockowner"
)

// startWalker attaches the socket iterator and runs its first walk, which
// gives the sockets that exist their owner (from owners) so that their
// later transitions, which mostly run in softirq where the current task is
// not the owner, and the children accepted from existing listeners are
// attributed right. It returns the walk's records. The tracepoint mode
// has no socket storage, hence no iterator: it returns nil.
func (p *Probe) startWalker(owners sockowner.Table, netns []string) ([]byte, error) {
	prog := p.coll.Programs[tcptraceProgWalkSockets]
	if prog == nil {
		return nil, nil
	}
	m := p.coll.Maps[tcptraceMapSeedInodes]
	if HistogramOnly(p.opts) {
		owners = nil // it keeps no entries: nothing reads the seed
	}
	// In batches: one system call for all, not one an owner (a host with
	// 200,000 sockets spent most of its start-up here).
	keys := make([]uint64, 0, len(owners))
	vals := make([]tcptraceSockInfo, 0, len(owners))
	for ino, o := range owners {
		v := tcptraceSockInfo{Pid: o.PID}
		for i, b := range o.Comm {
			v.Comm[i] = int8(b)
		}
		keys, vals = append(keys, ino), append(vals, v)
	}
	defer clearMap(m, keys)
	if len(keys) > 0 {
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			return nil, fmt.Errorf("filling seed map: %w", err)
		}
	}
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attaching TCP socket iterator: %w", err)
	}
	p.iter = it
	recs, err := p.Sockets(netns, event.WalkAll)
	if err != nil {
		p.walkWarning = err // seeding of those namespaces failed; go on
	}
	if err := p.coll.Variables[tcptraceVarIterSeed].Set(uint8(0)); err != nil {
		return nil, fmt.Errorf("ending seeding: %w", err)
	}
	return recs, nil
}

// siClosed is SI_CLOSED of bpf/tcptrace.h: an entry kept past its CLOSE
// for the reset an abortive close sends next.
const siClosed = 0x02

// UnseenCloses walks the sockets like Sockets (and returns the walk) and
// finds the sockets that are gone while their entry stays: their CLOSE
// (at least) was not seen. The walk marks the entries of the sockets it
// finds; the entries left unmarked, not SI_CLOSED and with no transition
// since the walk began, are removed and counted (Health.Gone: its CLOSE;
// Health.Unsent: with conn_records, each transition it held). The walk
// also sends the transitions held for the sockets that exist (they are
// then written as open connections). Nothing is
// counted when a namespace could not be walked (the error is returned
// with the others' records): its sockets' entries would look gone.
// tp_btf only (the walker needs it).
func (p *Probe) UnseenCloses(netns []string) ([]byte, error) {
	if p.iter == nil {
		return nil, nil
	}
	p.walkGen++
	if p.walkGen == 0 { // 0: the entries no walk marked yet
		p.walkGen = 1
	}
	if err := p.coll.Variables[tcptraceVarWalkGen].Set(p.walkGen); err != nil {
		return nil, fmt.Errorf("marking walk: %w", err)
	}
	start := uint64(MonotonicNow())
	// conn_records: the transitions held for the sockets still open go
	// out now, so that they are written as open.
	walk, err := p.Sockets(netns, event.WalkDetail{States: event.WalkAll.States, Flush: event.WalkAll.States})
	if err != nil {
		return walk, err
	}
	m := p.coll.Maps[tcptraceMapSockTable]
	var (
		key  uint64
		v    tcptraceSockInfo
		gone []uint64
		held []uint64 // the transitions each gone entry held (conn_records), never sent
	)
	it := m.Iterate()
	for it.Next(&key, &v) {
		if v.Flags&siClosed == 0 && v.Walked != p.walkGen && v.TsNs < start {
			gone = append(gone, key)
			held = append(held, uint64(v.Held.N))
		}
	}
	if err := it.Err(); err != nil {
		return walk, fmt.Errorf("reading the socket table: %w", err)
	}
	for i, k := range gone {
		if m.Delete(k) == nil {
			p.gone++              // its unseen CLOSE
			p.heldGone += held[i] // and what it held, never sent
		}
	}
	return walk, nil
}

// FlushHeld sends what the kernel still holds of each socket's
// transitions (ConnRecords), once the programs are detached: a transition
// made after the closing walk passed its socket would otherwise stay
// held. What it cannot send (a socket it no longer finds) is counted
// lost (Health.Unsent).
func (p *Probe) FlushHeld(netns []string) error {
	if p.iter == nil || !p.ConnRecords() {
		return nil
	}
	every := event.WalkAll.States
	_, err := p.Sockets(netns, event.WalkDetail{States: every, Flush: every})
	var (
		key uint64
		v   tcptraceSockInfo
	)
	it := p.coll.Maps[tcptraceMapSockTable].Iterate()
	for it.Next(&key, &v) {
		p.heldGone += uint64(v.Held.N)
	}
	return errors.Join(err, it.Err())
}

// HasWalker reports whether Sockets works (tp_btf mode).
func (p *Probe) HasWalker() bool { return p.iter != nil }

// Sockets walks the TCP sockets of each network namespace in netns (one
// /proc/PID/ns/net path each) and returns their struct sock_snap records,
// filtered like the transitions: the sockets of the states detail writes
// one by one, then a record for each group the kernel counted the others
// in (event.Socket.Count). Decode them with event.DecodeSocket.
// Namespaces that fail are skipped and their errors returned with the
// records of the others.
func (p *Probe) Sockets(netns []string, detail event.WalkDetail) ([]byte, error) {
	if p.iter == nil {
		return nil, nil
	}
	if err := p.setDetail(detail); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	var errs []error
	for _, ns := range netns {
		var one bytes.Buffer
		cpu, err := runIterIn(p.iter, ns, &one)
		p.walkCPU += cpu
		if err != nil {
			if os.IsNotExist(err) {
				continue // the namespace's last process exited
			}
			// Skip it: one namespace that cannot be entered must not
			// cost the others their counts.
			errs = append(errs, fmt.Errorf("walking the sockets of %s: %w", ns, err))
			continue
		}
		out.Write(one.Bytes())
	}
	if detail.States != event.WalkAll.States {
		if err := p.readGroups(&out); err != nil {
			errs = append(errs, err)
		}
	}
	return out.Bytes(), errors.Join(errs...)
}

// setDetail tells the walker which sockets the next walk writes, and
// starts its groups' count afresh (group_gen).
func (p *Probe) setDetail(d event.WalkDetail) error {
	p.groupGen++
	if p.groupGen == 0 { // 0: a group no walk counted yet
		p.groupGen = 1
	}
	vars := p.coll.Variables
	if err := vars[tcptraceVarWalkDetail].Set(d.States); err != nil {
		return fmt.Errorf("setting the walk's detail: %w", err)
	}
	if err := vars[tcptraceVarGroupPastNs].Set(d.HalfOpenPast); err != nil {
		return fmt.Errorf("setting the walk's detail: %w", err)
	}
	if err := vars[tcptraceVarGroupGen].Set(p.groupGen); err != nil {
		return fmt.Errorf("setting the walk's detail: %w", err)
	}
	if err := vars[tcptraceVarWalkFlush].Set(d.Flush); err != nil {
		return fmt.Errorf("setting the walk's detail: %w", err)
	}
	return nil
}

// readGroups appends a struct sock_snap record for each group this walk
// counted (walk_groups entries of its group_gen), and deletes the groups
// it found no socket of (an older gen): the map holds only the groups
// that exist, and each is read once per walk.
func (p *Probe) readGroups(out *bytes.Buffer) error {
	m := p.coll.Maps[tcptraceMapWalkGroups]
	var (
		k     tcptraceWalkGroupKey
		g     tcptraceWalkGroup
		stale []tcptraceWalkGroupKey
	)
	it := m.Iterate()
	for it.Next(&k, &g) {
		if g.Gen != p.groupGen || g.Count == 0 {
			stale = append(stale, k)
			continue
		}
		snap := tcptraceSockSnap{Netns: k.Netns, NetnsCookie: k.NetnsCookie, Family: k.Family,
			State: k.State, Ifindex: k.Ifindex, Count: g.Count, AgeNs: g.Oldest, AgeSrc: g.AgeSrc}
		if event.State(k.State) == event.TimeWait {
			snap.Daddr, snap.Dport = k.Addr, k.Port
		} else {
			snap.Sport = k.Port
		}
		if err := binary.Write(out, binary.NativeEndian, &snap); err != nil {
			return fmt.Errorf("writing a socket group: %w", err)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading the walk's socket groups: %w", err)
	}
	for i := range stale {
		_ = m.Delete(&stale[i]) // a walk may have taken it meanwhile: no matter
	}
	return nil
}

// WalkCPU is the CPU time the socket walks took so far: the walking
// threads' own, the kernel's iterator program and copies included.
func (p *Probe) WalkCPU() time.Duration { return p.walkCPU }

// runIterIn runs the iterator in the network namespace at nsPath: a TCP
// iterator walks the namespace of the thread that opens it. The work runs
// on a locked thread that is thrown away after, so no other goroutine
// ever runs in that namespace. It returns the thread's CPU time.
func runIterIn(it *link.Iter, nsPath string, out io.Writer) (time.Duration, error) {
	type result struct {
		cpu time.Duration
		err error
	}
	errc := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		var t0, t1 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t0)
		err := func() error {
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
			_, err = io.Copy(out, r)
			return err
		}()
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t1)
		errc <- result{time.Duration(t1.Nano() - t0.Nano()), err}
	}()
	r := <-errc
	return r.cpu, r.err
}

// seedSize is the size given to the seed map at load.
func seedSize(n int) uint32 {
	if n < 1 {
		return 1
	}
	return uint32(n)
}

// clearMap deletes keys from m: the seed map, emptied once the first walk
// has read it.
func clearMap(m *ebpf.Map, keys []uint64) {
	if len(keys) > 0 {
		_, _ = m.BatchDelete(keys, nil)
	}
}
