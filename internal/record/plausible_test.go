package record

import (
	"strings"
	"testing"
	"time"
)

// The rule reaches every record type's times and *_ns durations, nested
// ones included, by the schema's names: a field added later is covered.
func TestPlausible(t *testing.T) {
	huge := MaxDuration + 1
	ok := MaxDuration
	year1 := time.Date(1, 2, 3, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    any
		want string // "" when plausible
	}{
		{&Stuck{TS: MinTime, AgeNs: ok}, ""},
		{&Stuck{TS: MinTime, AgeNs: huge}, "age_ns"},
		{&Stuck{TS: MaxTime}, "ts"},
		{&Connection{End: MinTime, States: []Span{{}, {DwellNs: &huge}}}, "states[1].dwell_ns"},
		{&Connection{End: MinTime, Start: year1}, "start"},
		{&Transition{TS: MinTime, HandshakeNs: &huge}, "handshake_ns"},
		{&Histogram{TS: MinTime, Since: MinTime, SumNs: 1<<64 - 1}, ""}, // a sum of durations
		{&Histogram{TS: MinTime, Since: MinTime, Buckets: []Bucket{{LeNs: huge}}}, "buckets[0].le_ns"},
		{&Stats{TS: MinTime, BPFStats: &BPFStats{RunTimeNs: huge}}, "bpf_run_time_ns"},
	} {
		err := Plausible(tc.v)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.want+" ")) {
			t.Errorf("%T %+v: %v, want %q", tc.v, tc.v, err, tc.want)
		}
	}
}
