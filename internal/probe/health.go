//go:build linux

package probe

import (
	"fmt"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
)

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
	// Gap and Reused are transitions inferred lost from the sockets'
	// states, for which the kernel counts nothing (docs/reliability.md:
	// this host's kernel skips every tracing program, uncounted, while
	// PID 1 is on the CPU). Gap: the fewest transitions a socket must have
	// made between the state it was last seen entering and the old state
	// of its next transition seen, or since its birth for a socket first
	// seen mid-life. Reused: one unseen CLOSE for each entry found to be
	// another socket's (the kernel reused the struct sock). Both may
	// include transitions already counted in Recursion: see Inferred.
	Gap, Reused uint64
	// Gone: entries of sockets found gone by a socket walk (UnseenCloses):
	// one unseen CLOSE each.
	Gone uint64
	// Reclaimed: sockets found without an entry in mid-life that had
	// been seen: the full table (--max-conns) reclaimed their entry, and
	// what it held of their timeline is lost, in a number not known.
	Reclaimed uint64
	// Unsent: transitions the programs saw and held for a connection
	// record (ConnRecords) that was never sent: the entry was another
	// socket's by then, or its socket was gone at exit. Exact, and apart
	// from Recursion (those were never seen): not in Inferred's overlap.
	Unsent uint64
	// StorageFail counts transitions recorded without owner and dwell
	// because no per-socket storage could be allocated.
	StorageFail uint64
	// Filtered counts TCP transitions the kernel-side filters dropped.
	Filtered uint64
	// Aggregated counts transitions counted into the kernel's
	// histograms instead of being sent (aggregate mode).
	Aggregated uint64
	// Submitted counts the records the programs submitted to the ring:
	// at the end of a run, every one of them must have been read.
	Submitted uint64
	// SynAckLate counts SYN-ACKs retransmitted for a handshake older than
	// the --stuck SYN_RECV limit: half-open handshakes piling up.
	SynAckLate uint64
	// Runs is the primary program's run count (every TCP transition on
	// the host), PrimaryRunTimeNs its run time: its own cost per event is
	// PrimaryRunTimeNs/Runs. RunTimeNs is the run time of all attached
	// programs (backup and trouble counters too): the whole kernel-side
	// cost is RunTimeNs/Runs per transition. Non-zero only with
	// kernel.bpf_stats_enabled=1.
	Runs             uint64
	PrimaryRunTimeNs uint64
	RunTimeNs        uint64
}

// Lost is the number of transitions the kernel counted as never reaching
// user space.
func (h Health) Lost() uint64 { return h.RingbufFull + h.Recursion + h.Unsent }

// Inferred is how many transitions at least were lost beyond those the
// kernel counted: the ones seen missing from sockets' states, less the
// recursion skips, which may be the same ones. (Ring buffer drops leave
// no gap in the kernel's entries: they happen after them.)
func (h Health) Inferred() uint64 {
	if n := h.Gap + h.Reused + h.Gone; n > h.Recursion {
		return n - h.Recursion
	}
	return 0
}

// Health reads the counters.
func (p *Probe) Health() (Health, error) {
	var per []tcptraceCounters
	if err := p.coll.Maps[tcptraceMapHealth].Lookup(uint32(0), &per); err != nil {
		return Health{}, fmt.Errorf("reading health counters: %w", err)
	}
	var (
		h                         Health
		seen, seenUnseen, in, out uint64
	)
	for _, c := range per {
		h.RingbufFull += c.RingbufDrops
		h.Rescued += c.Rescued
		h.StorageFail += c.StorageFail
		h.Filtered += c.Filtered
		h.Aggregated += c.Aggregated
		h.SynAckLate += c.SynackLate
		h.Submitted += c.Submitted
		h.Gap += c.GapLost
		h.Reused += c.ReusedLost
		h.Unsent += c.HeldLost
		seen += c.SeenFirst
		seenUnseen += c.SeenFirstUnseen
		in += c.EntriesIn
		out += c.EntriesOut
	}
	p.firstSights(seen, seenUnseen, in-out)
	h.Gap += p.seenGap
	h.Reclaimed = p.reclaimed
	h.Gone = p.gone
	h.Unsent += p.heldGone
	st, err := p.primary.Stats()
	if err != nil {
		return Health{}, fmt.Errorf("reading program stats: %w", err)
	}
	h.Runs = st.RunCount
	h.PrimaryRunTimeNs = uint64(st.Runtime.Nanoseconds())
	if st.RecursionMisses > h.Rescued {
		h.Recursion = st.RecursionMisses - h.Rescued
	}
	for _, prog := range p.attached {
		st, err := prog.Stats()
		if err != nil {
			return Health{}, fmt.Errorf("reading program stats: %w", err)
		}
		h.RunTimeNs += uint64(st.Runtime.Nanoseconds())
	}
	return h, nil
}

// firstSights sorts the sockets first seen mid-life with a cookie
// (count_first_sight in bpf/sockets.h) since the last reading: while the
// socket table may have been full, the LRU may have reclaimed their
// entries, and each is a reclaimed socket (what its entry held is not
// known); else nothing could have reclaimed them, their births were not
// seen, and their transitions since birth are inferred lost. Once the
// table may have been full, it is taken as such for the rest of the run.
func (p *Probe) firstSights(seen, unseen, occupancy uint64) {
	if !p.tableFull && tableMayReclaim(occupancy, uint64(p.opts.MaxConns), uint64(p.cpus)) {
		p.tableFull = true
	}
	if p.tableFull {
		p.reclaimed += seen - p.lastSeen
	} else {
		p.seenGap += unseen - p.lastSeenUnseen
	}
	p.lastSeen, p.lastSeenUnseen = seen, unseen
}

// tableMayReclaim tells whether an LRU hash of maxEntries holding
// occupancy entries may have reclaimed one: the kernel's LRU keeps free
// nodes in per-CPU lists (up to 128 each, and as many pending), so it
// may evict before every node is in use.
func tableMayReclaim(occupancy, maxEntries, cpus uint64) bool {
	return occupancy+2*128*cpus >= maxEntries
}

// DwellHistograms adds the kernel's per-CPU dwell-time histograms
// (aggregate mode) to dst, and its untimed stays to untimed, both
// indexed by state.
func (p *Probe) DwellHistograms(dst []histogram.Histogram, untimed []event.UntimedStays) error {
	m := p.coll.Maps[tcptraceMapDwellHists]
	var per []tcptraceStateHist
	for state := 1; state < len(dst); state++ {
		if err := m.Lookup(uint32(state), &per); err != nil {
			return fmt.Errorf("reading kernel histograms: %w", err)
		}
		for i := range per {
			h := &per[i]
			if err := dst[state].MergeRaw(h.Buckets[:histogram.NumBuckets], h.Count, h.Sum, h.Min, h.Max); err != nil {
				return err
			}
			if state < len(untimed) {
				for r, n := range h.Untimed {
					untimed[state].ByReason[r] += n
				}
				untimed[state].Evicted += h.Evicted
			}
		}
	}
	return nil
}
