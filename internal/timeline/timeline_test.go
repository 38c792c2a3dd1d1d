package timeline

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// ev builds a transition of socket cookie at time ms (milliseconds).
func ev(cookie uint64, ms uint64, old, new event.State, dwellMs int64, flags event.Flags) event.Event {
	e := event.Event{
		Mono: event.Mono(ms * 1e6), Cookie: cookie, Old: old, New: new, Flags: flags,
		Src: netip.MustParseAddrPort("10.0.0.1:80"), Dst: netip.MustParseAddrPort("10.0.0.2:4000"),
		Family: event.IPv4, PID: 42, Netns: 7,
	}
	copy(e.Comm[:], "nginx")
	if dwellMs >= 0 {
		e.Dwell = time.Duration(dwellMs) * time.Millisecond
		e.Flags |= event.DwellKnown
	}
	return e
}

type span struct {
	state     event.State
	enterMs   uint64 // 0 = unknown
	dwellMs   uint64
	dwellKnow bool
}

func spansOf(c *Conn) []span {
	var out []span
	for _, s := range c.States {
		out = append(out, span{s.State, uint64(s.Enter) / 1e6, s.Dwell / 1e6, s.DwellKnown})
	}
	return out
}

const own = event.OwnerKnown

func TestTimelines(t *testing.T) {
	tests := []struct {
		name        string
		events      []event.Event
		flushAt     uint64 // ms; 0 = no flush
		want        [][]span
		wantPartial []bool
		wantOpen    []bool
		wantStats   Stats
	}{
		{
			name: "client closes first",
			events: []event.Event{
				ev(1, 100, event.Close, event.SynSent, -1, own|event.Birth),
				ev(1, 101, event.SynSent, event.Established, 1, own),
				ev(1, 600, event.Established, event.FinWait1, 499, own),
				ev(1, 601, event.FinWait1, event.FinWait2, 1, own),
				ev(1, 602, event.FinWait2, event.Close, 1, own),
			},
			want: [][]span{{
				{event.SynSent, 100, 1, true}, {event.Established, 101, 499, true},
				{event.FinWait1, 600, 1, true}, {event.FinWait2, 601, 1, true}, {event.Close, 602, 0, false},
			}},
			wantPartial: []bool{false}, wantOpen: []bool{false},
		},
		{
			name: "accepted child, passive close",
			events: []event.Event{
				ev(2, 10, event.Listen, event.SynRecv, -1, own|event.Birth|event.Inherited),
				ev(2, 10, event.SynRecv, event.Established, 0, own),
				ev(2, 20, event.Established, event.CloseWait, 10, own),
				ev(2, 1020, event.CloseWait, event.LastAck, 1000, own),
				ev(2, 1021, event.LastAck, event.Close, 1, own),
			},
			want: [][]span{{
				{event.SynRecv, 10, 0, true}, {event.Established, 10, 10, true},
				{event.CloseWait, 20, 1000, true}, {event.LastAck, 1020, 1, true}, {event.Close, 1021, 0, false},
			}},
			wantPartial: []bool{false}, wantOpen: []bool{false},
		},
		{
			name: "missing start: socket older than the tracer",
			events: []event.Event{
				ev(3, 50, event.Established, event.CloseWait, -1, 0),
				ev(3, 80, event.CloseWait, event.LastAck, 30, own),
				ev(3, 81, event.LastAck, event.Close, 1, own),
			},
			want: [][]span{{
				{event.Established, 0, 0, false}, {event.CloseWait, 50, 30, true},
				{event.LastAck, 80, 1, true}, {event.Close, 81, 0, false},
			}},
			wantPartial: []bool{true}, wantOpen: []bool{false},
		},
		{
			name: "the kernel saw the gap: its dwell is no stay of the unseen state",
			events: []event.Event{
				ev(5, 1, event.Close, event.SynSent, -1, own|event.Birth),
				ev(5, 2, event.SynSent, event.Established, 1, own),
				// ESTABLISHED -> CLOSE_WAIT lost: the kernel's dwell runs
				// from 2, across ESTABLISHED and CLOSE_WAIT
				ev(5, 30, event.CloseWait, event.LastAck, 28, own|event.Gap),
				ev(5, 31, event.LastAck, event.Close, 1, own),
			},
			want: [][]span{{
				{event.SynSent, 1, 1, true}, {event.Established, 2, 0, false},
				{event.CloseWait, 0, 0, false}, {event.LastAck, 30, 1, true}, {event.Close, 31, 0, false},
			}},
			wantPartial: []bool{true}, wantOpen: []bool{false},
			wantStats: Stats{Gaps: 1},
		},
		{
			name: "lost transition leaves a gap",
			events: []event.Event{
				ev(4, 1, event.Close, event.SynSent, -1, own|event.Birth),
				ev(4, 2, event.SynSent, event.Established, 1, own),
				// ESTABLISHED -> FIN_WAIT1 lost
				ev(4, 9, event.FinWait1, event.FinWait2, 3, own),
				ev(4, 10, event.FinWait2, event.Close, 1, own),
			},
			want: [][]span{{
				{event.SynSent, 1, 1, true}, {event.Established, 2, 0, false},
				{event.FinWait1, 6, 3, true}, {event.FinWait2, 9, 1, true}, {event.Close, 10, 0, false},
			}},
			wantPartial: []bool{true}, wantOpen: []bool{false},
			wantStats: Stats{Gaps: 1},
		},
		{
			name: "out of order arrival is put in place",
			events: []event.Event{
				ev(5, 1, event.Close, event.SynSent, -1, own|event.Birth),
				ev(5, 5, event.Established, event.CloseWait, 3, own),
				ev(5, 2, event.SynSent, event.Established, 1, own),
				ev(5, 9, event.CloseWait, event.LastAck, 4, own),
				ev(5, 10, event.LastAck, event.Close, 1, own),
			},
			want: [][]span{{
				{event.SynSent, 1, 1, true}, {event.Established, 2, 3, true},
				{event.CloseWait, 5, 4, true}, {event.LastAck, 9, 1, true}, {event.Close, 10, 0, false},
			}},
			wantPartial: []bool{false}, wantOpen: []bool{false},
			wantStats: Stats{Gaps: 1, Reordered: 1},
		},
		{
			name: "repeated set stays one span",
			events: []event.Event{
				ev(7, 1, event.Close, event.SynSent, -1, own|event.Birth),
				ev(7, 2, event.SynSent, event.Established, 1, own),
				ev(7, 5, event.Established, event.FinWait1, 3, own),
				ev(7, 6, event.FinWait1, event.FinWait1, 1, own),
				ev(7, 9, event.FinWait1, event.FinWait2, 4, own),
				ev(7, 10, event.FinWait2, event.Close, 1, own),
			},
			want: [][]span{{
				{event.SynSent, 1, 1, true}, {event.Established, 2, 3, true},
				{event.FinWait1, 5, 4, true}, {event.FinWait2, 9, 1, true}, {event.Close, 10, 0, false},
			}},
			wantPartial: []bool{false}, wantOpen: []bool{false},
		},
		{
			name: "open at exit: dwell so far",
			events: []event.Event{
				ev(6, 100, event.Close, event.SynSent, -1, own|event.Birth),
				ev(6, 110, event.SynSent, event.Established, 10, own),
			},
			flushAt: 1110,
			want: [][]span{{
				{event.SynSent, 100, 10, true}, {event.Established, 110, 1000, true},
			}},
			wantPartial: []bool{false}, wantOpen: []bool{true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]span
			var partial, open []bool
			tr := New(100, func(c *Conn) {
				got = append(got, spansOf(c))
				partial = append(partial, c.Partial)
				open = append(open, c.Open)
				if c.PID != 42 || string(event.CommBytes(&c.Comm)) != "nginx" {
					t.Errorf("owner = %d %q", c.PID, event.CommBytes(&c.Comm))
				}
			})
			for i := range tc.events {
				tr.Observe(&tc.events[i])
			}
			if tc.flushAt != 0 {
				tr.Flush(event.Mono(tc.flushAt * 1e6))
			} else {
				tr.ReleaseClosed(1 << 62)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d connections, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range tc.want {
				if len(got[i]) != len(tc.want[i]) {
					t.Fatalf("conn %d: spans\n got %+v\nwant %+v", i, got[i], tc.want[i])
				}
				for j := range tc.want[i] {
					if got[i][j] != tc.want[i][j] {
						t.Errorf("conn %d span %d: got %+v want %+v", i, j, got[i][j], tc.want[i][j])
					}
				}
				if partial[i] != tc.wantPartial[i] || open[i] != tc.wantOpen[i] {
					t.Errorf("conn %d: partial=%v open=%v, want %v %v", i, partial[i], open[i], tc.wantPartial[i], tc.wantOpen[i])
				}
			}
			if tr.Stats() != tc.wantStats {
				t.Errorf("stats = %+v, want %+v", tr.Stats(), tc.wantStats)
			}
			if len(tr.conns) != 0 || tr.open != 0 {
				t.Errorf("%d connections left in the table, %d open", len(tr.conns), tr.open)
			}
		})
	}
}

func TestEvictsLeastRecentlyActive(t *testing.T) {
	var evicted []uint64
	tr := New(2, func(c *Conn) {
		if !c.Evicted || !c.Open {
			t.Errorf("cookie %d emitted without evicted/open", c.Cookie)
		}
		evicted = append(evicted, c.Cookie)
	})
	for _, e := range []event.Event{
		ev(1, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(2, 2, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 3, event.SynSent, event.Established, 2, own), // 1 is now the most recent
		ev(3, 4, event.Close, event.SynSent, -1, own|event.Birth),
	} {
		tr.Observe(&e)
	}
	if len(evicted) != 1 || evicted[0] != 2 {
		t.Fatalf("evicted %v, want [2]", evicted)
	}
	if len(tr.conns) != 2 || tr.open != 2 || tr.Stats().Evictions != 1 {
		t.Fatalf("len=%d open=%d evictions=%d", len(tr.conns), tr.open, tr.Stats().Evictions)
	}
}

// A closed connection is written as soon as the records read reach
// CloseHold past its CLOSE, not at the next poll: then it is still in the
// CPU's caches. A reset sent right after the CLOSE is read before that.
func TestHeldCloseReleasedByTheRecordsAfterIt(t *testing.T) {
	var got []Conn
	tr := New(10, func(c *Conn) { got = append(got, *c) })
	for _, e := range []event.Event{
		ev(1, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 2, event.SynSent, event.Established, 1, own),
		ev(1, 3, event.Established, event.Close, 1, own|event.CloseInfo),
	} {
		tr.Observe(&e)
	}
	tr.ResetAfterClose(1, event.ResetSent)
	// Another socket's records: the first 1 ns short of the hold.
	e := ev(2, 0, event.Close, event.SynSent, -1, own|event.Birth)
	e.Mono = 3e6 + CloseHold - 1
	tr.Observe(&e)
	if len(got) != 0 {
		t.Fatalf("emitted before CloseHold: %+v", got)
	}
	e = ev(2, 0, event.SynSent, event.Established, 1, own)
	e.Mono = 3e6 + CloseHold
	tr.Observe(&e)
	if len(got) != 1 || got[0].Cookie != 1 || got[0].Ending.Reset != event.ResetSent {
		t.Fatalf("got %+v, want connection 1 with its reset, written without a poll", got)
	}
	if len(tr.conns) != 1 || tr.open != 1 {
		t.Fatalf("%d in the table, %d open; want connection 2 alone", len(tr.conns), tr.open)
	}
}

// An abortive close: the kernel sets CLOSE, then sends the reset. The
// connection is held for CloseHold, so the reset is on its record.
func TestResetAfterCloseJoinsTheConnection(t *testing.T) {
	var got []Conn
	tr := New(10, func(c *Conn) { got = append(got, *c) })
	for _, e := range []event.Event{
		ev(1, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 2, event.SynSent, event.Established, 1, own),
		ev(1, 3, event.Established, event.Close, 1, own|event.CloseInfo),
	} {
		tr.Observe(&e)
	}
	tr.ReleaseClosed(3e6 + CloseHold - 1)
	if len(got) != 0 {
		t.Fatalf("emitted before CloseHold: %+v", got)
	}
	tr.ResetAfterClose(1, event.ResetSent)
	tr.ResetAfterClose(99, event.ResetSent) // unknown: ignored
	tr.ReleaseClosed(3e6 + CloseHold)
	if len(got) != 1 || got[0].Ending.Reset != event.ResetSent || got[0].Open {
		t.Fatalf("got %+v, want one closed connection with reset sent", got)
	}
	tr.ResetAfterClose(1, event.ResetReceived) // released: nothing to change
	tr.Flush(10e6)
	if len(got) != 1 {
		t.Fatalf("emitted %d connections, want 1", len(got))
	}
}

// A socket reconnected after its CLOSE gets a timeline of its own at once.
func TestReconnectAfterCloseReleasesTheHeldOne(t *testing.T) {
	var n int
	tr := New(10, func(c *Conn) { n++ })
	for _, e := range []event.Event{
		ev(1, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 2, event.SynSent, event.Close, 1, own|event.CloseInfo),
		ev(1, 3, event.Close, event.SynSent, -1, own|event.Birth),
	} {
		tr.Observe(&e)
	}
	if n != 1 || len(tr.conns) != 1 || tr.open != 1 {
		t.Fatalf("emitted %d, open %d; want the first emitted and the second held", n, tr.open)
	}
}

// The SYN_RECV stay of an accepted socket is its handshake, in the
// timeline as in the histogram: it starts when the first SYN-ACK left.
func TestHandshakeSpan(t *testing.T) {
	var got []span
	var start event.Mono
	tr := New(10, func(c *Conn) { got, start = spansOf(c), c.Start })
	birth := ev(1, 5000, event.Listen, event.SynRecv, -1, own|event.Birth|event.Inherited)
	done := ev(1, 5000+1, event.SynRecv, event.Established, 1, own|event.Handshake) // 24 µs... of the full socket
	done.HandshakeMicros = 2_020_000                                                // 2.02 s since the first SYN-ACK
	tr.Observe(&birth)
	tr.Observe(&done)
	tr.Flush(6000e6)
	want := []span{{event.SynRecv, 5001 - 2020, 2020, true}, {event.Established, 5001, 999, true}}
	if fmt.Sprint(got) != fmt.Sprint(want) || start != (5001-2020)*1e6 {
		t.Fatalf("spans %+v start %d, want %+v start %d", got, start, want, uint64((5001-2020)*1e6))
	}
	// Simultaneous open: SYN_RECV of a connecting socket is a real stay.
	got = nil
	tr = New(10, func(c *Conn) { got = spansOf(c) })
	for _, e := range []event.Event{
		ev(2, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(2, 2, event.SynSent, event.SynRecv, 1, own),
		ev(2, 5, event.SynRecv, event.Established, 3, own),
	} {
		tr.Observe(&e)
	}
	tr.Flush(6e6)
	if got[1] != (span{event.SynRecv, 2, 3, true}) {
		t.Fatalf("simultaneous open spans %+v", got)
	}
}

// A leak evicted from a full table stays on the stuck watch.
func TestEvictedLeakStillReportedStuck(t *testing.T) {
	var stuck []uint64
	var records int
	tr := New(3, func(c *Conn) { records++ })
	var after [event.NumStates]uint64
	after[event.CloseWait] = 3_000e6
	tr.WatchStuck(after, func(c *Conn, s event.State, age uint64, src event.AgeSource) {
		if s != event.CloseWait || c.PID != 42 || !c.Src.IsValid() {
			t.Errorf("stuck %d in %v owner %d src %v", c.Cookie, s, c.PID, c.Src)
		}
		stuck = append(stuck, c.Cookie)
	})
	leak := []event.Event{
		ev(1, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 2, event.SynSent, event.Established, 1, own),
		ev(1, 3, event.Established, event.CloseWait, 1, own),
	}
	for i := range leak {
		tr.Observe(&leak[i])
	}
	for c := uint64(10); c < 20; c++ { // others churn through the table
		e := ev(c, 10+c, event.Close, event.SynSent, -1, own|event.Birth)
		tr.Observe(&e)
	}
	tr.CheckStuck(3_003e6)
	if fmt.Sprint(stuck) != "[1]" {
		t.Fatalf("stuck %v, want [1]: the evicted leak", stuck)
	}
	tr.CheckStuck(10_000e6) // once per stay
	if len(stuck) != 1 || len(tr.stubs) != 0 {
		t.Fatalf("stuck %v, stubs %d", stuck, len(tr.stubs))
	}
}

func TestReusedSocketStartsNewTimeline(t *testing.T) {
	var n int
	tr := New(10, func(c *Conn) { n++ })
	for _, e := range []event.Event{
		ev(1, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 5, event.Close, event.SynSent, -1, own|event.Birth), // CLOSE never seen
	} {
		tr.Observe(&e)
	}
	if n != 1 || len(tr.conns) != 1 || tr.open != 1 {
		t.Fatalf("emitted %d, open %d; want the first timeline emitted as open and a new one held", n, tr.open)
	}
}

func BenchmarkObserveConnection(b *testing.B) {
	tr := New(1<<16, func(*Conn) {})
	seq := []event.Event{
		ev(0, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(0, 2, event.SynSent, event.Established, 1, own),
		ev(0, 3, event.Established, event.FinWait1, 1, own),
		ev(0, 4, event.FinWait1, event.FinWait2, 1, own),
		ev(0, 5, event.FinWait2, event.Close, 1, own),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j := range seq {
			seq[j].Cookie = uint64(i)
			tr.Observe(&seq[j])
		}
		if i%64 == 63 {
			tr.ReleaseClosed(1 << 62) // a poll: the held closes go
		}
	}
}

func TestStuckOncePerStay(t *testing.T) {
	type hit struct {
		cookie  uint64
		state   event.State
		ageMs   uint64
		atLeast bool
	}
	var hits []hit
	tr := New(10, func(*Conn) {})
	var after [event.NumStates]uint64
	after[event.CloseWait] = 30_000e6
	after[event.SynSent] = 3_000e6
	tr.WatchStuck(after, func(c *Conn, s event.State, age uint64, src event.AgeSource) {
		hits = append(hits, hit{c.Cookie, s, age / 1e6, src != event.AgeTraced})
	})
	for _, e := range []event.Event{
		ev(1, 1000, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 1100, event.SynSent, event.Established, 100, own),
		ev(1, 2000, event.Established, event.CloseWait, 900, own),
		ev(2, 2500, event.Close, event.SynSent, -1, own|event.Birth), // hangs in SYN_SENT
	} {
		tr.Observe(&e)
	}
	tr.Seed(&event.Socket{Cookie: 3, State: event.CloseWait, Family: event.IPv4}, 500e6)
	tr.Seed(&event.Socket{Cookie: 0, State: event.TimeWait}, 500e6) // mini socket: ignored
	tr.CheckStuck(20_000e6)
	want := []hit{{2, event.SynSent, 17500, false}}
	if fmt.Sprint(hits) != fmt.Sprint(want) {
		t.Fatalf("at 20 s: %v, want %v", hits, want)
	}
	hits = nil
	tr.CheckStuck(33_000e6)
	tr.CheckStuck(40_000e6) // each stay is reported once
	want = []hit{{3, event.CloseWait, 32500, true}, {1, event.CloseWait, 31000, false}}
	if fmt.Sprint(hits) != fmt.Sprint(want) {
		t.Fatalf("at 33 s: %v, want %v", hits, want)
	}
	// Leaving and re-entering a watched state starts a new stay.
	hits = nil
	e := ev(2, 41000, event.SynSent, event.Close, 38500, own)
	tr.Observe(&e)
	tr.CheckStuck(100_000e6)
	if len(hits) != 0 {
		t.Fatalf("closed connection reported stuck: %v", hits)
	}
}

// A record that arrives after its connection's CLOSE (reordered) joins the
// held timeline instead of starting a phantom open one; records without a
// cookie (no kernel entry) make no timeline.
func TestLateRecordJoinsTheHeldConnection(t *testing.T) {
	var got [][]span
	tr := New(10, func(c *Conn) { got = append(got, spansOf(c)) })
	for _, e := range []event.Event{
		ev(1, 1, event.Close, event.SynSent, -1, own|event.Birth),
		ev(1, 2, event.SynSent, event.Established, 1, own),
		ev(1, 5, event.FinWait1, event.FinWait2, 1, own), // FIN_WAIT1 entry not seen yet
		ev(1, 6, event.FinWait2, event.Close, 1, own|event.CloseInfo),
		ev(1, 4, event.Established, event.FinWait1, 2, own), // arrives late
		ev(0, 7, event.Close, event.SynSent, -1, own|event.Birth),
	} {
		tr.Observe(&e)
	}
	tr.Flush(1000e6)
	if len(got) != 1 {
		t.Fatalf("%d connections, want the one: %+v", len(got), got)
	}
	want := []span{{event.SynSent, 1, 1, true}, {event.Established, 2, 2, true}, {event.FinWait1, 4, 1, true},
		{event.FinWait2, 5, 1, true}, {event.Close, 6, 0, false}}
	if fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Fatalf("spans %+v, want %+v", got[0], want)
	}
}

// A socket older than the tracer is watched from the kernel's figure of
// its age in the state, not from when the tracer found it: a CLOSE_WAIT
// leak 10 minutes old is stuck at the first check, its age a lower bound
// from that field; the span's start is that bound, marked with it.
func TestSeedWithKernelAge(t *testing.T) {
	type hit struct {
		cookie uint64
		ageS   uint64
		src    event.AgeSource
	}
	var hits []hit
	var written []Span
	tr := New(10, func(c *Conn) { written = append(written, c.States...) })
	var after [event.NumStates]uint64
	after[event.CloseWait] = 30_000e6
	tr.WatchStuck(after, func(c *Conn, s event.State, age uint64, src event.AgeSource) {
		hits = append(hits, hit{c.Cookie, age / 1e9, src})
	})
	const seen = 1000_000e6
	tr.Seed(&event.Socket{Cookie: 5, State: event.CloseWait, StateAge: 600_000e6, AgeSource: event.AgeRcvTstamp}, seen)
	tr.Seed(&event.Socket{Cookie: 6, State: event.CloseWait, AgeSource: event.AgeFirstSeen}, seen)
	tr.CheckStuck(seen + 100e6)
	if want := []hit{{5, 600, event.AgeRcvTstamp}}; fmt.Sprint(hits) != fmt.Sprint(want) {
		t.Fatalf("right after the seed: %v, want %v", hits, want)
	}
	hits = nil
	tr.CheckStuck(seen + 30_000e6)
	if want := []hit{{6, 30, event.AgeFirstSeen}}; fmt.Sprint(hits) != fmt.Sprint(want) {
		t.Fatalf("30 s later: %v, want %v", hits, want)
	}
	tr.Flush(seen + 31_000e6)
	if len(written) != 2 || written[0].Enter != seen-600_000e6 || written[0].AgeSource != event.AgeRcvTstamp ||
		written[1].Enter != 0 || written[1].AgeSource != event.AgeTraced {
		t.Fatalf("spans written: %+v", written)
	}
}
