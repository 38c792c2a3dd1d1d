//go:build linux

package probe

import "fmt"

// Health is the kernel side's account of what it did not deliver, summed
// over CPUs since load. Every field only grows.
type Health struct {
	// RingbufFull counts records dropped because the ring buffer was full.
	RingbufFull uint64
	// Recursion counts transitions the kernel skipped because a program
	// was already running on that CPU, after the backup program's rescues
	// (the primary's recursion_misses minus Rescued).
	Recursion uint64
	// Rescued counts transitions the backup program recorded.
	Rescued uint64
	// StorageFail counts transitions recorded without owner and dwell
	// because no per-socket storage could be allocated.
	StorageFail uint64
	// Filtered counts TCP transitions the kernel-side filters dropped.
	Filtered uint64
	// Runs and RunTimeNs are the primary program's run count and total
	// run time (non-zero only with kernel.bpf_stats_enabled=1).
	Runs      uint64
	RunTimeNs uint64
}

// Lost is the number of transitions that never reached user space.
func (h Health) Lost() uint64 { return h.RingbufFull + h.Recursion }

// Health reads the counters.
func (p *Probe) Health() (Health, error) {
	var per []tcptraceCounters
	if err := p.coll.Maps[tcptraceMapHealth].Lookup(uint32(0), &per); err != nil {
		return Health{}, fmt.Errorf("reading health counters: %w", err)
	}
	var h Health
	for _, c := range per {
		h.RingbufFull += c.RingbufDrops
		h.Rescued += c.Rescued
		h.StorageFail += c.StorageFail
		h.Filtered += c.Filtered
	}
	st, err := p.primary.Stats()
	if err != nil {
		return Health{}, fmt.Errorf("reading program stats: %w", err)
	}
	h.Runs = st.RunCount
	h.RunTimeNs = uint64(st.Runtime.Nanoseconds())
	if st.RecursionMisses > h.Rescued {
		h.Recursion = st.RecursionMisses - h.Rescued
	}
	return h, nil
}
