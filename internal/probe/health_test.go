//go:build linux

package probe

import "testing"

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
