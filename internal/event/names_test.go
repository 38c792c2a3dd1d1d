package event

import "testing"

// The names are a contract (docs/ndjson.md, the metrics' labels), and
// each parses back to what it names.
func TestNames(t *testing.T) {
	for r, want := range map[uint8]string{0: "", ResetSent: "sent", ResetReceived: "received", ResetSent | ResetReceived: "sent_and_received"} {
		if got := ResetName(r); got != want {
			t.Errorf("ResetName(%d) = %q, want %q", r, got, want)
		}
		if back, err := ParseReset(want); err != nil || back != r {
			t.Errorf("ParseReset(%q) = %d, %v; want %d", want, back, err, r)
		}
	}
	if _, err := ParseReset("maybe"); err == nil {
		t.Error(`ParseReset("maybe") gave no error`)
	}
	for _, tc := range []struct {
		tw                 TW
		timeWait, finWait2 bool
	}{{TWNone, false, false}, {TWTimeWait, true, false}, {TWFinWait2, false, true}} {
		if tc.tw.TimeWait() != tc.timeWait || tc.tw.FinWait2() != tc.finWait2 || TWOf(tc.timeWait, tc.finWait2) != tc.tw {
			t.Errorf("TW %d: time_wait %v, fin_wait2_timewait %v do not map both ways", tc.tw, tc.timeWait, tc.finWait2)
		}
	}
	for _, f := range []Family{IPv4, IPv6} {
		if back, err := ParseFamily(f.String()); err != nil || back != f {
			t.Errorf("ParseFamily(%q) = %v, %v", f, back, err)
		}
	}
	for _, n := range []uint16{111, 104, 300} {
		if back := ErrnoByName(ErrnoName(n)); back != n {
			t.Errorf("ErrnoByName(%q) = %d, want %d", ErrnoName(n), back, n)
		}
	}
}
