//go:build linux

// Package probe loads the BPF programs of bpf/tcptrace.bpf.c, attaches them
// to the inet_sock_set_state tracepoint, and reads their ring buffer and
// health counters, and walks the sockets that exist. With the bpf2go
// output beside it, it is the only package of the binary that imports
// cilium/ebpf (the benchmark command, cmd/tcptrace-bench, is the other).
package probe

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/sockowner"
)

// Options configure the programs before they are loaded. Filters given
// here run in the kernel.
type Options struct {
	// Config is the run's: the filters, sizes, attach mode and what the
	// kernel aggregates are read from it (config.Defaults has the
	// defaults).
	config.Config
	// CgroupID and CgroupLevel are --cgroup resolved: the cgroup v2 id
	// whose sockets (and its descendants') pass, and its depth (0: the
	// root).
	CgroupID    uint64
	CgroupLevel uint32
	// Owners and NetnsPaths (from sockowner.Scan) seed the sockets that
	// exist already with their owner; see Seed.
	Owners     sockowner.Table
	NetnsPaths []string
}

// histOnlyRing is the ring's size when nothing is written to it: one
// page, the kernel's smallest.
const histOnlyRing = 4096

// minDwell is --min-dwell for the kernel (ns), where it may apply it: it
// breaks timelines, so only when transitions alone are written.
func (o *Options) minDwell() uint64 {
	if o.MinDwellInKernel() {
		return uint64(o.MinDwell)
	}
	return 0
}

// Probe is the loaded and attached set of programs.
type Probe struct {
	opts  Options
	coll  *ebpf.Collection
	links []link.Link
	ring  *ring
	// primary is the program whose recursion misses count as potential loss.
	primary  *ebpf.Program
	attached []*ebpf.Program
	iter     *link.Iter
	initial  []byte // the first socket walk's records
	// walkWarning: namespaces the first walk could not enter.
	walkWarning error
	// walkGen: the last marking walk's walk_gen; gone: the entries of
	// sockets found gone so far (UnseenCloses); heldGone: the
	// transitions they (and FlushHeld's leftovers) held, never sent.
	walkGen  uint8
	gone     uint64
	heldGone uint64
	// The first sights of sockets with a cookie (firstSights): the
	// last readings of the kernel's counts, and what they came to.
	cpus                     int
	tableFull                bool
	lastSeen, lastSeenUnseen uint64
	reclaimed, seenGap       uint64
	walkCPU                  time.Duration // the walks' CPU time (WalkCPU)
	groupGen                 uint32        // the last walk's group_gen (setDetail)
}

// WalkWarning returns what the first socket walk could not do, if anything.
func (p *Probe) WalkWarning() error { return p.walkWarning }

// Load checks the kernel, loads the programs with opts and attaches them.
// The caller must Close the Probe.
func Load(opts Options) (p *Probe, err error) {
	if err := checkKernel(opts.Attach); err != nil {
		return nil, err
	}
	spec, err := loadTcptrace()
	if err != nil {
		return nil, fmt.Errorf("reading embedded BPF object: %w", err)
	}
	if err := configure(spec, opts); err != nil {
		return nil, err
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading BPF programs: %+v", verr)
		}
		return nil, fmt.Errorf("loading BPF programs: %w", err)
	}
	p = &Probe{opts: opts, coll: coll}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.cpus, err = ebpf.PossibleCPU(); err != nil {
		return nil, fmt.Errorf("counting CPUs: %w", err)
	}

	// The reader exists before the programs run, so nothing reserved
	// between attach and read is at risk.
	if p.ring, err = newRing(coll.Maps[tcptraceMapEvents]); err != nil {
		return nil, fmt.Errorf("opening ring buffer: %w", err)
	}
	if err := p.attach(); err != nil {
		return nil, err
	}
	// Seeding after the attach leaves no window in which a socket is
	// neither seeded nor traced.
	if p.initial, err = p.startWalker(opts.Owners, opts.NetnsPaths); err != nil {
		return nil, err
	}
	return p, nil
}

// configure sets the filters and sizes on the spec and removes the
// programs the chosen attach mode does not use, so that a kernel without
// tp_btf can still load the fallback.
func configure(spec *ebpf.CollectionSpec, o Options) error {
	set := func(name string, v any) error {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
		return nil
	}
	var bitmap [8192]uint8
	for _, port := range o.Ports {
		bitmap[port>>3] |= 1 << (port & 7)
	}
	filterPorts, aggregate := uint8(0), uint8(0)
	if len(o.Ports) > 0 {
		filterPorts = 1
	}
	if o.Aggregate() {
		aggregate = 1
	}
	conn := uint8(0)
	if connRecords(o) {
		conn = 1
	}
	for name, v := range map[string]any{
		tcptraceVarFilterFamily:      uint8(o.Family),
		tcptraceVarFilterPorts:       filterPorts,
		tcptraceVarFilterNetns:       o.Netns,
		tcptraceVarFilterPid:         o.PID,
		tcptraceVarWakeupBytes:       uint64(cmp.Or(o.WakeupBytes, o.RingSize/8)),
		tcptraceVarPortBitmap:        bitmap,
		tcptraceVarAggregateOnly:     aggregate,
		tcptraceVarConnRecords:       conn,
		tcptraceVarFilterCgroup:      o.CgroupID,
		tcptraceVarFilterCgroupLevel: o.CgroupLevel,
		tcptraceVarMinDwellNs:        o.minDwell(),
		tcptraceVarSynRecvStuckNs:    uint64(o.Stuck[event.SynRecv]),
		tcptraceVarKernelHz:          KernelHZ(),
	} {
		if err := set(name, v); err != nil {
			return err
		}
	}
	delete(spec.Programs, tcptraceProgHistIndexTest) // test hooks only
	delete(spec.Programs, tcptraceProgRetransCountTest)
	delete(spec.Programs, tcptraceProgHistStayTest)
	delete(spec.Programs, tcptraceProgEntryRulesTest)
	spec.Maps[tcptraceMapEvents].MaxEntries = uint32(o.RingSize)
	if HistogramOnly(o) {
		// Its programs write no record: the ring is the smallest one.
		spec.Maps[tcptraceMapEvents].MaxEntries = histOnlyRing
	}
	spec.Maps[tcptraceMapSeedInodes].MaxEntries = seedSize(len(o.Owners))

	if err := sizeSocketTable(spec, o, set); err != nil {
		return err
	}
	switch o.Attach {
	case config.AttachBTF:
		for _, tp := range classicPrograms {
			delete(spec.Programs, tp.prog)
		}
		if HistogramOnly(o) {
			// No backup program: a transition the kernel skips loses
			// one sample of a statistical profile, counted (recursion),
			// and the next one of that socket times nothing (bpf/hist.h:
			// a gap), so nothing is counted in the wrong state. A second
			// dispatch on every transition (~36 ns) is not worth it.
			delete(spec.Programs, tcptraceProgOnStateBackup)
		}
	case config.AttachTracepoint:
		for _, name := range btfPrograms {
			delete(spec.Programs, name) // tp_btf, and socket storage
		}
		// Without socket storage there is no iterator seeding either.
		delete(spec.Programs, tcptraceProgWalkSockets)
	default:
		return fmt.Errorf("unknown attach mode %q", o.Attach)
	}
	return nil
}

// sizeSocketTable sizes the one per-socket table the mode uses by
// --max-conns: in the histogram-only mode hist_slots on tp_btf (see
// HistSlots) or
// hist_socks on the tracepoint fallback; sock_table in the others.
func sizeSocketTable(spec *ebpf.CollectionSpec, o Options, set func(string, any) error) error {
	if !HistogramOnly(o) {
		spec.Maps[tcptraceMapSockTable].MaxEntries = uint32(o.MaxConns)
		return nil
	}
	if o.Attach == config.AttachTracepoint {
		spec.Maps[tcptraceMapHistSocks].MaxEntries = uint32(o.MaxConns)
		return nil
	}
	slots := HistSlots(o.MaxConns)
	spec.Maps[tcptraceMapHistSlots].MaxEntries = slots
	return set(tcptraceVarHistSlotMask, slots-1)
}

// HistogramOnly reports whether o is the histogram-only mode (--emit
// histograms without --pid): the kernel keeps each socket's entry time
// and nothing else (HIST_ONLY in bpf/settings.h).
func HistogramOnly(o Options) bool { return o.Aggregate() && o.PID == 0 }

// HistSlots is the size of the histogram-only mode's slot table for
// --max-conns n: the smallest power of two >= 2n, so that the table is
// at most half full with n sockets alive and a birth almost always finds
// one of its two slots free.
func HistSlots(n int) uint32 {
	slots := uint32(1)
	for slots < 2*uint32(n) {
		slots <<= 1
	}
	return slots
}

func (p *Probe) attach() error {
	switch p.opts.Attach {
	case config.AttachBTF:
		p.primary = p.coll.Programs[tcptraceProgOnState]
		for _, name := range btfPrograms {
			prog, ok := p.coll.Programs[name]
			if !ok {
				continue // left out by configure
			}
			l, err := link.AttachTracing(link.TracingOptions{Program: prog})
			if err != nil {
				return fmt.Errorf("attaching %s (tp_btf): %w", name, err)
			}
			p.links = append(p.links, l)
			p.attached = append(p.attached, prog)
		}
	case config.AttachTracepoint:
		p.primary = p.coll.Programs[tcptraceProgOnStateTp]
		return inPrivateTracefs(func() error {
			for _, tp := range classicPrograms {
				prog := p.coll.Programs[tp.prog]
				l, err := link.Tracepoint(tp.group, tp.name, prog, nil)
				if err != nil {
					return fmt.Errorf("attaching to tracepoint %s/%s: %w", tp.group, tp.name, err)
				}
				p.links = append(p.links, l)
				p.attached = append(p.attached, prog)
			}
			return nil
		})
	}
	return nil
}

// btfPrograms are attached in the tp_btf mode; the first is the primary.
var btfPrograms = []string{tcptraceProgOnState, tcptraceProgOnStateBackup,
	tcptraceProgOnRetransmit, tcptraceProgOnRetransmitSynack,
	tcptraceProgOnSendReset, tcptraceProgOnReceiveReset}

// classicPrograms are attached in the tracepoint mode; the first is the
// primary.
var classicPrograms = []struct{ prog, group, name string }{
	{tcptraceProgOnStateTp, "sock", "inet_sock_set_state"},
	{tcptraceProgOnRetransmitTp, "tcp", "tcp_retransmit_skb"},
	{tcptraceProgOnRetransmitSynackTp, "tcp", "tcp_retransmit_synack"},
	{tcptraceProgOnSendResetTp, "tcp", "tcp_send_reset"},
	{tcptraceProgOnReceiveResetTp, "tcp", "tcp_receive_reset"},
}

// Attach returns the attach mode in use.
func (p *Probe) Attach() config.Attach { return p.opts.Attach }

// RingFill returns the fraction of the ring buffer waiting to be read.
func (p *Probe) RingFill() float64 {
	return float64(p.ring.available()) / float64(p.ring.size)
}

// ConnRecords reports whether the kernel sends each connection's
// transitions together (config.ConnRecords): the records are then
// event.ConnSize, and the histograms the kernel's (DwellHistograms).
func (p *Probe) ConnRecords() bool { return connRecords(p.opts) }

// connRecords: config.ConnRecords on a kernel whose socket walk holds
// each socket's lock while the program runs (5.15, the batching TCP
// iterator): the walk that sends what a socket holds must not race its
// transitions.
func connRecords(o Options) bool { return o.ConnRecords() && kernelAtLeast(5, 15) }

// RingSize returns the ring buffer's size in bytes.
func (p *Probe) RingSize() int { return p.ring.size }

// SetDeadline bounds the next Next calls: once it passes, Next returns
// what is left in the ring, then os.ErrDeadlineExceeded. Not safe while
// Next runs.
func (p *Probe) SetDeadline(t time.Time) { p.ring.deadline = t }

// Flush makes a blocked Next return: the records still in the ring
// first, then an error IsFlushed reports. Safe from another goroutine.
func (p *Probe) Flush() error { return p.ring.flush() }

// Detach stops the programs; records already in the ring stay readable.
func (p *Probe) Detach() {
	for _, l := range p.links {
		l.Close()
	}
	p.links = nil
}

// InitialSockets returns the struct sock_snap records of the sockets that
// existed when the probes were attached (nil in the tracepoint mode).
func (p *Probe) InitialSockets() []byte { return p.initial }

// Close detaches the programs and frees every map and program.
func (p *Probe) Close() {
	p.Detach()
	if p.iter != nil {
		p.iter.Close()
	}
	if p.ring != nil {
		p.ring.close()
	}
	if p.coll != nil {
		p.coll.Close()
	}
}

// IsDeadline reports whether err is the deadline set by SetDeadline.
func IsDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// IsFlushed reports whether err marks the end of a Flush.
func IsFlushed(err error) bool { return errors.Is(err, errRingFlushed) }

// Next returns the next raw record, blocking until one arrives or the
// deadline passes. The slice is the ring's memory, valid until the
// following call (which may hand that space back to the kernel).
func (p *Probe) Next() ([]byte, error) { return p.ring.next() }

// KernelMemory is the kernel memory the maps hold: the sum of each map's
// memlock as the kernel reports it (/proc/self/fdinfo), the ring buffer
// and the preallocated socket tables included. Socket storage (on
// SO_REUSEPORT listeners and their children, freed with the socket) and
// the programs are not maps and are not in it.
func (p *Probe) KernelMemory() (uint64, error) {
	var sum uint64
	for name, m := range p.coll.Maps {
		n, err := memlock(m.FD())
		if err != nil {
			return 0, fmt.Errorf("map %s: %w", name, err)
		}
		sum += n
	}
	return sum, nil
}

// memlock reads the memlock line of a map's fdinfo.
func memlock(fd int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "memlock:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no memlock in its fdinfo")
}
