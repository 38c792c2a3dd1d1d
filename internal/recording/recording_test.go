package recording

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

func golden(t testing.TB) []byte {
	b, err := os.ReadFile("../output/testdata/records.ndjson.golden")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The rebuilt histograms say what they could not time, as the live ones
// do: the golden file's connection accepted through a SYN cookie is an
// untimed SYN_RECV stay; and in a recording of connections alone (whose
// histograms are rebuilt from the spans, by the same rule), the stays
// without a dwell (begun before the tracer, or entered unseen) are
// untimed ESTABLISHED ones.
func TestReplayCountsUntimedStays(t *testing.T) {
	histogram := func(rec []byte, state string) string {
		t.Helper()
		var out, warn bytes.Buffer
		if _, err := Replay(bytes.NewReader(rec), Filter{}, output.NewNDJSON(&out, Clock), &warn); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, `"type":"histogram"`) && strings.Contains(l, `"state":"`+state+`"`) {
				return l
			}
		}
		return ""
	}
	if h := histogram(golden(t), "SYN_RECV"); !strings.Contains(h, `"syncookie":1}`) {
		t.Errorf("SYN_RECV histogram %q: want one stay untimed for a SYN cookie", h)
	}
	var conns []byte
	for _, l := range bytes.SplitAfter(golden(t), []byte("\n")) {
		if bytes.Contains(l, []byte(`"type":"connection"`)) {
			conns = append(conns, l...)
		}
	}
	if h := histogram(conns, "ESTABLISHED"); !strings.Contains(h, `"untimed_reasons":{"no_start":1,"gap":1,`) {
		t.Errorf("ESTABLISHED histogram %q: want one untimed stay with no start and one entered unseen", h)
	}
}

func TestReplayFiltersAndBadLines(t *testing.T) {
	input := string(golden(t)) +
		"not json\n" +
		`{"type":"transition","ts":"2026-11-30T12:00:00Z","old":"OPEN","new":"CLOSE","saddr":"1.2.3.4","daddr":"1.2.3.5"}` + "\n" +
		`{"type":"mystery"}` + "\n" +
		`{"type":"transition","saddr":"x"}` + "\n"
	tests := []struct {
		name        string
		f           Filter
		trans, conn uint64
	}{
		{"all", Filter{}, 10, 6},
		{"port 443", Filter{Ports: map[uint16]bool{443: true}}, 0, 2},
		{"state CLOSE_WAIT", Filter{States: statesOf(event.CloseWait)}, 2, 3},
		{"until before everything", Filter{Until: time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)}, 0, 0},
		{"since 12:00:01", Filter{Since: time.Date(2026, 11, 30, 12, 0, 1, 0, time.UTC)}, 0, 4},
	}
	n := uint64(bytes.Count(golden(t), []byte("\n"))) // the bad lines follow
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, warn bytes.Buffer
			s, err := Replay(strings.NewReader(input), tc.f, output.NewNDJSON(&out, Clock), &warn)
			if err != nil {
				t.Fatal(err)
			}
			if s.Transitions != tc.trans || s.Connections != tc.conn {
				t.Errorf("selected %d transitions, %d connections; want %d, %d", s.Transitions, s.Connections, tc.trans, tc.conn)
			}
			if s.Bad != 4 || s.Lines != n+4 || s.Lost != 12 {
				t.Errorf("summary %+v: want %d lines, 4 bad, 12 lost", s, n+4)
			}
			for i := n + 1; i <= n+4; i++ {
				if want := fmt.Sprintf("line %d:", i); !strings.Contains(warn.String(), want) {
					t.Errorf("warnings %q lack %q", warn.String(), want)
				}
			}
		})
	}
}

// Replaying a recording gives back its transitions, connections, states
// and stuck records byte for byte: no field is lost on the way through
// the record types and the domain ones.
func TestReplayRoundTrip(t *testing.T) {
	var out bytes.Buffer
	if _, err := Replay(bytes.NewReader(golden(t)), Filter{}, output.NewNDJSON(&out, Clock), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	replayed := func(s string) (lines []string) {
		for _, l := range strings.Split(s, "\n") {
			for _, typ := range []string{record.TypeTransition, record.TypeConnection, record.TypeStates, record.TypeStuck} {
				if strings.HasPrefix(l, `{"type":"`+typ+`"`) {
					lines = append(lines, l)
				}
			}
		}
		return lines
	}
	got, want := replayed(out.String()), replayed(string(golden(t)))
	if len(got) != len(want) {
		t.Fatalf("%d records replayed, want %d", len(got), len(want))
	}
	// The replay is a run of its own: its records carry its run, not
	// the recording's, and are numbered from 1 in the order written.
	replayRun := ""
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		_, s := splitStream(t, l)
		if replayRun == "" {
			replayRun = s.Run
		}
		if s.Run != replayRun {
			t.Errorf("replayed record of run %q, others of %q: %s", s.Run, replayRun, l)
		}
	}
	for i := range got {
		g, gs := splitStream(t, got[i])
		w, ws := splitStream(t, want[i])
		if g != w {
			t.Errorf("replayed record differs:\n got %s\nwant %s", got[i], want[i])
		}
		if gs.Run == ws.Run {
			t.Errorf("replayed record keeps the recording's run %q: %s", ws.Run, got[i])
		}
	}
}

// splitStream returns line without its run and seq, and them.
func splitStream(t *testing.T, line string) (string, record.Stream) {
	t.Helper()
	var s record.Stream
	if err := json.Unmarshal([]byte(line), &s); err != nil || s.Run == "" || s.Seq == 0 {
		t.Fatalf("no run and seq (%v): %s", err, line)
	}
	return strings.Replace(line, fmt.Sprintf(`,"run":%q,"seq":%d`, s.Run, s.Seq), "", 1), s
}

func statesOf(ss ...event.State) (set [event.NumStates]bool) {
	for _, s := range ss {
		set[s] = true
	}
	return set
}

func FuzzReplay(f *testing.F) {
	f.Add(golden(f))
	f.Add([]byte(`{"type":"connection","end":"2026-11-30T12:00:00Z","saddr":"::1","daddr":"::1","states":[{"state":"SYN_RECV"},{"state":"ESTABLISHED"}],"handshake_ns":5}`))
	f.Add([]byte("{}\n\n\x00"))
	// Damage (TestReplaySkipsDamage): zero bytes a crash left before a
	// record, a line longer than MaxLine, implausible times and durations.
	f.Add(append(append(bytes.Repeat([]byte{0}, 64), golden(f)...), 0, 0))
	f.Add(append(bytes.Repeat([]byte("x"), MaxLine+1), "\n{}\n"...))
	f.Add([]byte(`{"type":"transition","ts":"2026-11-30T12:00:03Z","family":"inet","saddr":"::1","daddr":"::1","old":"ESTABLISHED","new":"CLOSE_WAIT","dwell_ns":9223372036854775808}`))
	f.Add([]byte(`{"type":"connection","start":"0001-01-01T00:00:00Z","end":"9999-12-31T23:59:59Z","saddr":"::1","daddr":"::1","states":[{"state":"ESTABLISHED","ts":"0000-12-31T23:00:00-01:00","dwell_ns":4611686018427387904},{"state":"CLOSE"}]}`))
	f.Add([]byte(`{"type":"stuck","ts":"2199-12-31T23:59:59.999999999Z","state":"CLOSE_WAIT","age_ns":6311433600000000000,"saddr":"::1","daddr":"::1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out, warn bytes.Buffer
		s, err := Replay(bytes.NewReader(b), Filter{}, output.NewText(&out, Clock, time.UTC), &warn)
		if err == nil && s.Bad > s.Lines {
			t.Fatalf("summary %+v", s)
		}
	})
}
