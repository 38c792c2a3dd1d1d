//go:build linux

package top

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// t0 is the wall time of kernel monotonic 0 in these tests.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mono(d time.Duration) event.Mono { return event.Mono(d) }

func comm(s string) (c [16]byte) {
	copy(c[:], s)
	return c
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// step is one thing the tracer does to the model, at t0+at.
type step struct {
	at    time.Duration
	trans *event.Event
	walk  []event.Socket // States (counted from it) then Sockets
	stuck *pipeline.Stuck
	lost  *pipeline.Lost
}

func play(m *Model, steps []step) {
	for _, s := range steps {
		ts := t0.Add(s.at)
		switch {
		case s.trans != nil:
			e := *s.trans
			e.Mono = mono(s.at)
			m.Transition(&e)
		case s.walk != nil:
			var counts [event.NumStates]uint64
			for i := range s.walk {
				counts[s.walk[i].State]++
			}
			m.States(ts, &counts)
			m.Sockets(ts, s.walk)
		case s.stuck != nil:
			st := *s.stuck
			st.TS = ts
			m.Stuck(&st)
		case s.lost != nil:
			m.Lost(s.lost)
		}
	}
}

var (
	leakSrc, leakDst = ap("10.0.0.1:8080"), ap("10.0.0.2:40000")
	leak             = event.Socket{Cookie: 7, Src: leakSrc, Dst: leakDst, Netns: 1, PID: 42, Comm: comm("leaky"),
		OwnerKnown: true, State: event.CloseWait}
	walkOnlyEmpty = []event.Socket{}
)

func TestModel(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		at    time.Duration
		opts  Options
		check func(t *testing.T, v *View)
	}{{
		name: "a CLOSE_WAIT entered while traced: its owner and exact age",
		steps: []step{
			{at: 1 * time.Second, trans: &event.Event{Cookie: 7, Src: leakSrc, Dst: leakDst, Netns: 1, PID: 42, Comm: comm("leaky"),
				Flags: event.OwnerKnown | event.DwellKnown, Old: event.Established, New: event.CloseWait, Dwell: time.Millisecond}},
			{at: 2 * time.Second, walk: []event.Socket{leak}},
		},
		at: 11 * time.Second,
		check: func(t *testing.T, v *View) {
			if len(v.Processes) != 1 || v.Processes[0].Name != "42/leaky" || v.Processes[0].Counts[0] != 1 {
				t.Fatalf("processes %+v", v.Processes)
			}
			if p := v.Processes[0]; p.Oldest != 10*time.Second || p.AtLeast {
				t.Errorf("oldest %v at least %v, want 10s exactly", p.Oldest, p.AtLeast)
			}
			if len(v.Remotes) != 1 || v.Remotes[0].Name != "10.0.0.2:40000" {
				t.Errorf("remotes %+v", v.Remotes)
			}
			if v.Counts[event.CloseWait] != 1 || len(v.History) != 1 {
				t.Errorf("counts %v history %d", v.Counts[event.CloseWait], len(v.History))
			}
			if len(v.Dwell) != 1 || v.Dwell[0].State != event.Established || v.Dwell[0].Last != 1 || v.Dwell[0].LastQ[0] < time.Millisecond {
				t.Errorf("dwell %+v", v.Dwell)
			}
		},
	}, {
		name: "a socket older than the tracer: age from the first walk, marked at least",
		steps: []step{
			{at: 1 * time.Second, walk: []event.Socket{leak}},
			{at: 2 * time.Second, walk: []event.Socket{leak}},
		},
		at: 4 * time.Second,
		check: func(t *testing.T, v *View) {
			if p := v.Processes[0]; p.Oldest != 3*time.Second || !p.AtLeast {
				t.Errorf("oldest %v at least %v, want >=3s", p.Oldest, p.AtLeast)
			}
		},
	}, {
		name: "a socket older than the tracer with the kernel's figure of its age: that, marked at least",
		steps: []step{
			{at: 1 * time.Second, walk: []event.Socket{func() event.Socket {
				s := leak
				s.StateAge, s.AgeSource = uint64(600*time.Second), event.AgeRcvTstamp
				return s
			}()}},
			{at: 2 * time.Second, walk: []event.Socket{leak}},
		},
		at: 4 * time.Second,
		check: func(t *testing.T, v *View) {
			if p := v.Processes[0]; p.Oldest != 603*time.Second || !p.AtLeast {
				t.Errorf("oldest %v at least %v, want >=10m3s", p.Oldest, p.AtLeast)
			}
		},
	}, {
		name: "TIME_WAIT keeps the closer as owner and its close time",
		steps: []step{
			{at: 1 * time.Second, trans: &event.Event{Cookie: 9, Src: ap("10.0.0.1:5000"), Dst: ap("10.0.0.3:80"), Netns: 1, PID: 50,
				Comm: comm("curl"), Flags: event.OwnerKnown, Old: event.FinWait2, New: event.Close, TW: event.TWTimeWait}},
			{at: 3 * time.Second, walk: []event.Socket{{Src: ap("10.0.0.1:5000"), Dst: ap("10.0.0.3:80"), Netns: 1, State: event.TimeWait}}},
		},
		at: 5 * time.Second,
		check: func(t *testing.T, v *View) {
			if len(v.Processes) != 1 || v.Processes[0].Name != "50/curl" || v.Processes[0].Counts[4] != 1 || v.Processes[0].Oldest != 4*time.Second {
				t.Errorf("processes %+v", v.Processes)
			}
		},
	}, {
		name: "request sockets count as SYN_RECV, aged from their first SYN-ACK",
		steps: []step{
			{at: 5 * time.Second, walk: []event.Socket{{Src: ap("10.0.0.1:80"), Dst: ap("10.0.0.9:1234"), State: event.NewSynRecv,
				SynAck: mono(2 * time.Second)}}},
		},
		at: 6 * time.Second,
		check: func(t *testing.T, v *View) {
			if len(v.Processes) != 1 || v.Processes[0].Name != "?" || v.Processes[0].Counts[2] != 1 || v.Processes[0].Oldest != 4*time.Second {
				t.Errorf("processes %+v", v.Processes)
			}
		},
	}, {
		name: "a request socket is the listener owner's; an orphan keeps the owner it had",
		steps: []step{
			{at: 1 * time.Second, trans: &event.Event{Cookie: 11, Src: ap("10.0.0.1:6000"), Dst: ap("10.0.0.3:80"), Netns: 1, PID: 60,
				Comm: comm("closer"), Flags: event.OwnerKnown, Old: event.FinWait1, New: event.FinWait2}},
			{at: 2 * time.Second, walk: []event.Socket{
				{Cookie: 10, Src: ap("10.0.0.1:80"), Netns: 1, PID: 8, Comm: comm("nginx"), OwnerKnown: true, State: event.Listen},
				{Src: ap("10.0.0.1:80"), Dst: ap("10.0.0.9:1234"), Netns: 1, State: event.NewSynRecv, SynAck: mono(time.Second)},
				{Cookie: 11, Src: ap("10.0.0.1:6000"), Dst: ap("10.0.0.3:80"), Netns: 1, State: event.FinWait2},
			}},
		},
		at: 3 * time.Second,
		check: func(t *testing.T, v *View) {
			var names []string
			for _, p := range v.Processes {
				names = append(names, p.Name)
			}
			if strings.Join(names, " ") != "60/closer 8/nginx" {
				t.Errorf("processes %+v", v.Processes)
			}
		},
	}, {
		name: "the filter keeps one troubled state; sorting by age puts the oldest first",
		steps: []step{
			{at: 0, walk: []event.Socket{
				{Cookie: 1, Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.5:80"), PID: 1, Comm: comm("a"), OwnerKnown: true, State: event.SynSent},
			}},
			{at: 5 * time.Second, walk: []event.Socket{
				{Cookie: 1, Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.5:80"), PID: 1, Comm: comm("a"), OwnerKnown: true, State: event.SynSent},
				{Cookie: 2, Src: ap("10.0.0.1:2"), Dst: ap("10.0.0.5:80"), PID: 2, Comm: comm("b"), OwnerKnown: true, State: event.SynSent},
				{Cookie: 3, Src: ap("10.0.0.1:3"), Dst: ap("10.0.0.5:80"), PID: 2, Comm: comm("b"), OwnerKnown: true, State: event.SynSent},
				leak,
			}},
		},
		at:   6 * time.Second,
		opts: Options{Sort: SortAge, Filter: event.SynSent},
		check: func(t *testing.T, v *View) {
			var names []string
			for _, p := range v.Processes {
				names = append(names, p.Name)
			}
			if strings.Join(names, " ") != "1/a 2/b" {
				t.Errorf("processes by age, SYN_SENT only: %v", names)
			}
			if len(v.Remotes) != 1 || v.Remotes[0].Total != 3 || v.Remotes[0].Name != "10.0.0.5:80" {
				t.Errorf("remotes %+v", v.Remotes)
			}
		},
	}, {
		name: "stuck rows newest first; one still in its state ages on, a closed one does not",
		steps: []step{
			{at: 1 * time.Second, stuck: &pipeline.Stuck{Conn: &timeline.Conn{Cookie: 5, PID: 3, Comm: comm("gone"), OwnerKnown: true},
				State: event.SynSent, Age: uint64(3 * time.Second)}},
			{at: 2 * time.Second, stuck: &pipeline.Stuck{Conn: &timeline.Conn{Cookie: 7}, State: event.CloseWait, Age: uint64(30 * time.Second),
				HoldersKnown: true, Holders: []pipeline.Holder{{PID: 42, Comm: comm("leaky")}}}},
			{at: 3 * time.Second, walk: []event.Socket{leak}},
		},
		at: 12 * time.Second,
		check: func(t *testing.T, v *View) {
			if len(v.Stuck) != 2 {
				t.Fatalf("stuck %+v", v.Stuck)
			}
			a, b := v.Stuck[0], v.Stuck[1]
			if a.State != event.CloseWait || a.Owner != "42/leaky" || !a.Still || a.Now != 40*time.Second {
				t.Errorf("newest %+v, want CLOSE_WAIT 42/leaky still, 40s", a)
			}
			if b.State != event.SynSent || b.Owner != "3/gone" || b.Still {
				t.Errorf("oldest %+v", b)
			}
		},
	}, {
		name: "lost events are kept as totals",
		steps: []step{
			{lost: &pipeline.Lost{RingbufFull: 3, TotalRingbufFull: 5, TotalRecursion: 1, TotalUnread: 2}},
			{at: time.Second, walk: walkOnlyEmpty},
		},
		at: 2 * time.Second,
		check: func(t *testing.T, v *View) {
			if v.Lost.Total() != 8 {
				t.Errorf("lost %d, want 8", v.Lost.Total())
			}
			// Every cause is named: the parts add up to the count.
			s := Render(v, 160, 40)
			m := regexp.MustCompile(`LOST (\d+) \(([^;]*);`).FindStringSubmatch(s)
			if m == nil {
				t.Fatalf("lost not shown:\n%s", s)
			}
			sum := 0
			for _, n := range regexp.MustCompile(`\d+`).FindAllString(m[2], -1) {
				k, _ := strconv.Atoi(n)
				sum += k
			}
			if m[1] != "8" || sum != 8 {
				t.Errorf("lost not shown with parts adding up to 8:\n%s", s)
			}
		},
	}, {
		name: "a socket gone from the walk leaves the tables",
		steps: []step{
			{at: 1 * time.Second, walk: []event.Socket{leak}},
			{at: 2 * time.Second, walk: walkOnlyEmpty},
		},
		at: 3 * time.Second,
		check: func(t *testing.T, v *View) {
			if len(v.Processes) != 0 || v.Counts[event.CloseWait] != 0 || len(v.History) != 2 {
				t.Errorf("processes %+v counts %v", v.Processes, v.Counts)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(event.NewClock(t0, 0), t0)
			play(m, tt.steps)
			tt.check(t, m.Snapshot(t0.Add(tt.at), tt.opts))
		})
	}
}

func TestCycles(t *testing.T) {
	var got []string
	f := event.State(0)
	for range len(event.Troubled) + 1 {
		f = NextFilter(f)
		got = append(got, f.String())
	}
	if want := "CLOSE_WAIT SYN_SENT SYN_RECV FIN_WAIT2 TIME_WAIT STATE_0"; strings.Join(got, " ") != want {
		t.Errorf("filters %v, want %s", got, want)
	}
	if SortCount.Next().Next().Next() != SortCount {
		t.Error("sort keys do not cycle")
	}
}

func TestSparkline(t *testing.T) {
	tests := []struct {
		counts []uint64
		width  int
		want   string
	}{
		{[]uint64{0, 4, 8}, 10, " ▄█"},
		{[]uint64{1, 1}, 10, "██"},
		{[]uint64{0, 8, 0, 2}, 2, "█▂"}, // two walks a cell, the peak of each
		{nil, 10, ""},
	}
	for _, tt := range tests {
		h := make([][event.NumStates]uint64, len(tt.counts))
		for i, c := range tt.counts {
			h[i][event.TimeWait] = c
		}
		if got := sparkline(h, event.TimeWait, tt.width); got != tt.want {
			t.Errorf("sparkline(%v, %d) = %q, want %q", tt.counts, tt.width, got, tt.want)
		}
	}
}

func TestRenderFits(t *testing.T) {
	m := New(event.NewClock(t0, 0), t0)
	var walk []event.Socket
	for i := range 50 {
		s := leak
		s.Cookie, s.Dst = uint64(100+i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 9)
		s.PID = uint32(1000 + i)
		walk = append(walk, s)
	}
	play(m, []step{{at: time.Second, walk: walk}})
	s := Render(m.Snapshot(t0.Add(2*time.Second), Options{}), 80, 24)
	lines := strings.Split(s, "\n")
	if len(lines) > 24 {
		t.Errorf("%d lines for a 24-line screen", len(lines))
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 80 {
			t.Errorf("line of %d cells: %q", n, l)
		}
	}
	if !strings.Contains(s, "CLOSE_WAIT") || !strings.Contains(s, "more") {
		t.Errorf("screen:\n%s", s)
	}
}

// At 80x24 the trouble comes first: the STUCK and PROCESS sections are on
// screen whatever else there is, the header says what the view spans, and
// a state filter narrows every section.
func TestRenderLeadsWithTrouble(t *testing.T) {
	m := New(event.NewClock(t0, 0), t0)
	m.Filters = "port 8080"
	var walk []event.Socket
	for i := range 30 {
		s := leak
		s.Cookie, s.Dst = uint64(100+i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 9)
		walk = append(walk, s)
		e := event.Socket{Cookie: uint64(500 + i), State: event.Established, Netns: 1, Src: ap("10.0.0.1:22"), Dst: s.Dst}
		walk = append(walk, e)
	}
	m.Span([]uint32{1, 2, 3})
	play(m, []step{{at: time.Second, walk: walk}})
	for i := range 4 {
		c := &timeline.Conn{Cookie: uint64(100 + i), Src: leakSrc, Dst: walk[2*i].Dst, PID: 42, Comm: comm("leaky"), OwnerKnown: true}
		m.Stuck(&pipeline.Stuck{TS: t0.Add(time.Second), Conn: c, State: event.CloseWait, Age: uint64(30 * time.Second)})
	}
	s := Render(m.Snapshot(t0.Add(2*time.Second), Options{}), 80, 24)
	lines := strings.Split(s, "\n")
	if len(lines) > 24 {
		t.Errorf("%d lines", len(lines))
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 80 {
			t.Errorf("line of %d cells: %q", n, l)
		}
	}
	stuck, proc := strings.Index(s, "STUCK"), strings.Index(s, "PROCESS")
	if stuck < 0 || proc < 0 || stuck > proc || !strings.Contains(s, "CLOSE_WAIT 42/leaky") || !strings.Contains(s, "42/leaky                      30") {
		t.Errorf("STUCK then PROCESS, with their rows, not first on the screen:\n%s", s)
	}
	if !strings.Contains(lines[1], "3 namespaces; filters: port 8080") {
		t.Errorf("header %q does not say what the view spans", lines[1])
	}
	f := Render(m.Snapshot(t0.Add(2*time.Second), Options{Filter: event.CloseWait}), 80, 40)
	if strings.Contains(f, "ESTABLISHED") || strings.Contains(f, "LISTENER") {
		t.Errorf("the CLOSE_WAIT filter leaves other states on screen:\n%s", f)
	}
	// A half-open pile whose listener has none left at the last walk is
	// not still stuck.
	m.Stuck(&pipeline.Stuck{TS: t0.Add(time.Second), Conn: &timeline.Conn{Src: ap("10.0.0.1:443"), PID: 5, Comm: comm("srv"), OwnerKnown: true},
		State: event.SynRecv, Age: uint64(3 * time.Second), HalfOpen: 2})
	sum := Summary(m.Snapshot(t0.Add(2*time.Second), Options{}))
	if strings.Contains(sum, "SYN_RECV") {
		t.Errorf("a cleared half-open pile is said still stuck:\n%s", sum)
	}
	for _, want := range []string{"3 namespaces", "CLOSE_WAIT=30", "still stuck: 4 CLOSE_WAIT by 42/leaky", "most troubled sockets: 42/leaky, 30", "lost 0"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	if n := strings.Count(sum, "\n"); n > 6 {
		t.Errorf("summary of %d lines", n)
	}
}
