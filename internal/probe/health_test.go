//go:build linux

package probe

import (
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
)

// A connection record's held transitions were seen; the recursion skips
// never were. Figures of a burst the ftrace oracle caught (2,000 closes;
// five clients' FIN_WAIT1 -> FIN_WAIT2 -> CLOSE skipped, a server child's
// LAST_ACK -> CLOSE too): 30 transitions made and not delivered, of which
// the kernel counted 11 recursion skips, the closing walk found 6 entries
// gone (6 unseen CLOSEs, inferred) holding 19 transitions never sent.
// Netting the held ones against the recursion skips reported 25.
func TestUnsentIsNotNettedAgainstRecursion(t *testing.T) {
	h := Health{Recursion: 11, Gone: 6, Unsent: 19}
	if got := h.Lost() + h.Inferred(); got != 30 {
		t.Errorf("lost %d + inferred %d = %d, want 30 (11 skipped, 19 held and never sent)", h.Lost(), h.Inferred(), got)
	}
	// The unseen CLOSEs may be the skipped ones: only the excess counts.
	h = Health{Recursion: 2, Gone: 6, Unsent: 19}
	if got := h.Lost() + h.Inferred(); got != 2+19+4 {
		t.Errorf("lost %d + inferred %d, want 25", h.Lost(), h.Inferred())
	}
}

// A socket first seen with a cookie is a reclaimed entry only while the
// table may have been full, and from then on; before, its birth was
// missed and its transitions since are inferred lost.
func TestFirstSightsSortedByTheTablesOccupancy(t *testing.T) {
	p := &Probe{opts: Options{Config: config.Config{MaxConns: 10000}}, cpus: 2}
	p.firstSights(3, 7, 100) // a table far from full: three missed births
	if p.reclaimed != 0 || p.seenGap != 7 {
		t.Fatalf("reclaimed %d, inferred %d; want 0 and 7", p.reclaimed, p.seenGap)
	}
	p.firstSights(5, 11, 10000-2*128*2) // may have reclaimed: two sockets
	if p.reclaimed != 2 || p.seenGap != 7 {
		t.Fatalf("reclaimed %d, inferred %d; want 2 and 7", p.reclaimed, p.seenGap)
	}
	p.firstSights(6, 12, 50) // emptied since: still taken as full
	if p.reclaimed != 3 || p.seenGap != 7 {
		t.Fatalf("reclaimed %d, inferred %d; want 3 and 7", p.reclaimed, p.seenGap)
	}
	if !tableMayReclaim(0, 100, 2) {
		t.Error("a table of 100 on 2 CPUs may always reclaim (512 free nodes may sit in per-CPU lists)")
	}
}
