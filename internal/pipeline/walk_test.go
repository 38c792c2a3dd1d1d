package pipeline_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// walkerSource is a kernel side whose walk the test sets.
type walkerSource struct {
	walk    []byte
	sysctls pipeline.Sysctls
	details []event.WalkDetail // what each walk was asked for
}

// ownersSource is a walkerSource that knows the owners of the sockets
// that existed at its start, and counts its scans for holders.
type ownersSource struct {
	walkerSource
	start   map[uint64]pipeline.Holder
	holders map[uint64][]pipeline.Holder
	scans   int
}

func (o *ownersSource) StartOwner(ino uint64) (pipeline.Holder, bool) {
	h, ok := o.start[ino]
	return h, ok
}

func (o *ownersSource) Holders(want map[uint64]bool) map[uint64][]pipeline.Holder {
	o.scans++
	out := map[uint64][]pipeline.Holder{}
	for ino := range want {
		if hs, ok := o.holders[ino]; ok {
			out[ino] = hs
		}
	}
	return out
}

func (w *walkerSource) HasWalker() bool { return true }
func (w *walkerSource) Walk(d event.WalkDetail) ([]byte, error) {
	w.details = append(w.details, d)
	return w.walk, nil
}
func (w *walkerSource) Holders(map[uint64]bool) map[uint64][]pipeline.Holder { return nil }
func (w *walkerSource) Now() event.Mono                                      { return 1000e9 }
func (w *walkerSource) Sysctls(uint32) (pipeline.Sysctls, error)             { return w.sysctls, nil }
func (w *walkerSource) Identity(uint32, [16]byte) *event.Identity            { return nil }
func (w *walkerSource) Recorded() bool                                       { return false }

// snap encodes IPv4 sockets as struct sock_snap records (bpf/tcptrace.h),
// the layout event.DecodeSocket reads.
func snap(socks ...event.Socket) []byte {
	var out []byte
	ne := binary.NativeEndian
	for _, s := range socks {
		b := make([]byte, event.SocketSize)
		ne.PutUint64(b[0:], s.Cookie)
		src, dst := s.Src.Addr().As4(), s.Dst.Addr().As4()
		copy(b[8:], src[:])
		copy(b[24:], dst[:])
		ne.PutUint32(b[40:], s.Netns)
		ne.PutUint16(b[48:], s.Src.Port())
		ne.PutUint16(b[50:], s.Dst.Port())
		b[52], b[53] = 2, byte(s.State) // AF_INET
		ne.PutUint32(b[76:], s.AcceptQueueMax)
		ne.PutUint64(b[96:], s.Inode)
		if s.Count > 1 {
			ne.PutUint32(b[116:], s.Count)
		}
		ne.PutUint64(b[144:], s.StateAge)
		b[160] = byte(s.AgeSource)
		out = append(out, b...)
	}
	return out
}

// The walk's pile watches: a listener's half-open handshakes past the
// SYN_RECV limit are one stuck record with the namespace's settings, and
// a cleared record when they are gone; TIME_WAIT toward one destination
// past half the local port range is one pile record, cleared below a
// quarter.
func TestWalkPilesAndTheirEnd(t *testing.T) {
	listener := event.Socket{Cookie: 1, Netns: 7, Src: netip.MustParseAddrPort("0.0.0.0:8080"),
		Dst: netip.MustParseAddrPort("0.0.0.0:0"), State: event.Listen, AcceptQueueMax: 511}
	halfOpen := func(age time.Duration) event.Socket {
		return event.Socket{Netns: 7, Src: netip.MustParseAddrPort("10.0.0.1:8080"), Dst: netip.MustParseAddrPort("10.0.0.9:5000"),
			State: event.NewSynRecv, StateAge: uint64(age), AgeSource: event.AgeSynAck}
	}
	tw := func(n int) []event.Socket {
		var out []event.Socket
		for i := range n {
			out = append(out, event.Socket{Netns: 7, Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+i)),
				Dst: netip.MustParseAddrPort("10.0.0.5:80"), State: event.TimeWait, StateAge: uint64(time.Second), AgeSource: event.AgeTwTimer})
		}
		return out
	}
	src := &walkerSource{sysctls: pipeline.Sysctls{Somaxconn: 4096, TCPMaxSynBacklog: 256, TCPSyncookies: 1,
		PortLo: 40000, PortHi: 40039, TCPTwReuse: 2}}
	cfg := config.Defaults()
	cfg.Emit = config.EmitStuck
	cfg.MaxConns = 16
	var buf bytes.Buffer
	sink := output.NewNDJSON(&buf, event.NewClock(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC), 0))
	p := pipeline.New(cfg, src, sink, nil, func(err error) { t.Error(err) })
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		socks []event.Socket
		want  []string // record types written by this walk
	}{
		{append([]event.Socket{listener, halfOpen(4 * time.Second), halfOpen(5 * time.Second), halfOpen(time.Second)}, tw(30)...),
			[]string{"stuck", "pile"}},
		{append([]event.Socket{listener, halfOpen(5 * time.Second)}, tw(20)...), nil}, // still there: said once
		{append([]event.Socket{listener, halfOpen(time.Second)}, tw(9)...), []string{"cleared", "cleared"}},
		{[]event.Socket{listener, halfOpen(4 * time.Second)}, []string{"stuck"}}, // a new episode
	}
	var recs []any
	for i, st := range steps {
		buf.Reset()
		src.walk = snap(st.socks...)
		if err := p.WalkDue(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := sink.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []string
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			v, err := record.DecodeStrict(sc.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			var typ string
			switch v.(type) {
			case *record.Stuck:
				typ = "stuck"
			case *record.Pile:
				typ = "pile"
			case *record.Cleared:
				typ = "cleared"
			}
			got = append(got, typ)
			recs = append(recs, v)
		}
		if len(got) != len(st.want) || !sameSet(got, st.want) {
			t.Fatalf("walk %d wrote %v, want %v", i, got, st.want)
		}
	}
	for _, v := range recs[:2] {
		switch r := v.(type) {
		case *record.Stuck:
			if r.State != "SYN_RECV" || r.HalfOpen != 2 || r.AgeNs != uint64(5*time.Second) || r.AgeSource != "snt_synack" ||
				r.Sport != 8080 || r.Limits == nil || *r.Limits.ListenBacklog != 511 || *r.Limits.Somaxconn != 4096 ||
				*r.Limits.TCPMaxSynBacklog != 256 || *r.Limits.TCPSyncookies != 1 {
				t.Errorf("half-open stuck record %+v", r)
			}
		case *record.Pile:
			if r.State != "TIME_WAIT" || r.Count != 30 || r.Daddr != "10.0.0.5" || r.Dport != 80 || r.Limits == nil ||
				*r.Limits.LocalPortRange != [2]uint32{40000, 40039} || *r.Limits.TCPTwReuse != 2 {
				t.Errorf("pile record %+v", r)
			}
		}
	}
}

func sameSet(a, b []string) bool {
	n := map[string]int{}
	for _, x := range a {
		n[x]++
	}
	for _, x := range b {
		n[x]--
	}
	for _, c := range n {
		if c != 0 {
			return false
		}
	}
	return true
}

// The walk's groups (sockets the kernel counted, event.Socket.Count) count
// as the sockets they stand for: a TIME_WAIT group of 30 is a pile of 30,
// request sockets past the limit in a group of 2 a stuck record of 2, and
// the states record counts them all.
func TestWalkGroupsCountAsTheirSockets(t *testing.T) {
	src := &walkerSource{sysctls: pipeline.Sysctls{Somaxconn: 4096, TCPMaxSynBacklog: 256, TCPSyncookies: 1,
		PortLo: 40000, PortHi: 40039, TCPTwReuse: 2}}
	listener := event.Socket{Cookie: 1, Netns: 7, Src: netip.MustParseAddrPort("0.0.0.0:8080"),
		Dst: netip.MustParseAddrPort("0.0.0.0:0"), State: event.Listen, AcceptQueueMax: 511}
	group := func(st event.State, n uint32, src, dst string, age time.Duration, as event.AgeSource) event.Socket {
		return event.Socket{Netns: 7, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst),
			State: st, Count: n, StateAge: uint64(age), AgeSource: as}
	}
	src.walk = snap(listener,
		group(event.NewSynRecv, 2, "0.0.0.0:8080", "0.0.0.0:0", 5*time.Second, event.AgeSynAck),
		group(event.NewSynRecv, 3, "0.0.0.0:8080", "0.0.0.0:0", time.Second, event.AgeSynAck),
		group(event.TimeWait, 30, "0.0.0.0:0", "10.0.0.5:80", time.Second, event.AgeTwTimer),
		group(event.Established, 1000, "0.0.0.0:0", "0.0.0.0:0", 0, event.AgeFirstSeen))
	cfg := config.Defaults()
	cfg.Emit = config.EmitStuck | config.EmitStates
	cfg.MaxConns = 16
	var buf bytes.Buffer
	sink := output.NewNDJSON(&buf, event.NewClock(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC), 0))
	p := pipeline.New(cfg, src, sink, nil, func(err error) { t.Error(err) })
	if err := p.WriteSockets(src.walk, time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC), src.Now()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	var stuck, pile, states, listeners int
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		v, err := record.DecodeStrict(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		switch r := v.(type) {
		case *record.Stuck:
			stuck++
			if r.HalfOpen != 2 || r.AgeNs != uint64(5*time.Second) {
				t.Errorf("half-open stuck record: %d past the limit, oldest %d ns; want 2, 5 s", r.HalfOpen, r.AgeNs)
			}
		case *record.Pile:
			pile++
			if r.Count != 30 || r.Daddr != "10.0.0.5" || r.Dport != 80 {
				t.Errorf("pile record %+v, want 30 toward 10.0.0.5:80", r)
			}
		case *record.States:
			states++
			want := map[event.State]uint64{event.Listen: 1, event.NewSynRecv: 5, event.TimeWait: 30, event.Established: 1000}
			for st, n := range want {
				if r.Counts[st] != n {
					t.Errorf("states: %v %d, want %d (%v)", st, r.Counts[st], n, r.Counts)
				}
			}
		case *record.Listener:
			listeners++
			if r.HalfOpen != 5 {
				t.Errorf("listener half_open %d, want 5", r.HalfOpen)
			}
		}
	}
	if stuck != 1 || pile != 1 || states != 1 || listeners != 1 {
		t.Errorf("%d stuck, %d pile, %d states, %d listener records; want one each", stuck, pile, states, listeners)
	}
}

// A listener whose owner the kernel does not know (the histogram-only
// mode keeps none) is named from the owners found at the start, without
// a scan of /proc; one that no process holds is looked for once, not at
// every walk (each look reads every descriptor of every process: 1.5 s
// of CPU with 200,000 sockets open).
func TestListenerOwnersWithoutRescans(t *testing.T) {
	src := &ownersSource{start: map[uint64]pipeline.Holder{42: {PID: 7, Comm: [16]byte{'n', 'g', 'i', 'n', 'x'}}}}
	known := event.Socket{Netns: 7, Src: netip.MustParseAddrPort("0.0.0.0:8080"), Dst: netip.MustParseAddrPort("0.0.0.0:0"),
		State: event.Listen, Inode: 42}
	orphan := known
	orphan.Src, orphan.Inode = netip.MustParseAddrPort("0.0.0.0:8081"), 43
	src.walk = snap(known, orphan)
	cfg := config.Defaults()
	cfg.Emit = config.EmitStates
	var buf bytes.Buffer
	sink := output.NewNDJSON(&buf, event.NewClock(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC), 0))
	p := pipeline.New(cfg, src, sink, nil, func(err error) { t.Error(err) })
	for i := range 3 {
		if err := p.WriteSockets(src.walk, time.Date(2026, 12, 2, 12, 0, i, 0, time.UTC), src.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	if src.scans != 1 {
		t.Errorf("%d scans of /proc for the listeners' holders over 3 walks, want 1 (the one no start owner names)", src.scans)
	}
	named := 0
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		v, err := record.DecodeStrict(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if l, ok := v.(*record.Listener); ok && l.Sport == 8080 {
			if l.PID != 7 || l.Comm != "nginx" {
				t.Errorf("listener 8080: %+v, want pid 7 nginx", l)
			}
			named++
		}
	}
	if named != 3 {
		t.Errorf("%d listener records of 8080, want 3", named)
	}
}

// socketsSink is an NDJSON sink that also takes every socket (as top's
// and incident's do).
type socketsSink struct{ *output.NDJSON }

func (socketsSink) Sockets(time.Time, []event.Socket) {}

// Every periodic walk sends what the kernel holds for the sockets in the
// states the stuck watch follows (config.ConnRecords), also a walk that
// writes every socket (a sink that takes them all, the first walk): the
// incident view, whose sink takes every socket, saw no CLOSE_WAIT leak
// when the walk that wrote everything flushed nothing.
func TestEveryWalkFlushesTheStuckWatchsStates(t *testing.T) {
	for _, takesSockets := range []bool{false, true} {
		src := &walkerSource{}
		cfg := config.Defaults()
		cfg.Emit = config.EmitStuck
		var sink pipeline.Sink = output.NewNDJSON(io.Discard, event.NewClock(time.Now(), 0))
		if takesSockets {
			sink = socketsSink{sink.(*output.NDJSON)}
		}
		p := pipeline.New(cfg, src, sink, nil, func(err error) { t.Error(err) })
		t0 := time.Now()
		for i := range 3 {
			if err := p.WalkDue(t0.Add(time.Duration(i) * 2 * time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		if len(src.details) != 3 {
			t.Fatalf("%d walks, want 3", len(src.details))
		}
		for i, d := range src.details {
			for st, limit := range cfg.Stuck {
				watched := d.Flush&(1<<st) != 0
				if watched != (limit > 0) || (limit > 0 && !d.Writes(event.State(st))) {
					t.Errorf("sink takes sockets %v, walk %d: %v (limit %v) flushed %v, written %v",
						takesSockets, i, event.State(st), limit, watched, d.Writes(event.State(st)))
				}
			}
		}
	}
}

// The walk whose progress records are due sends everything the kernel
// holds (config.ConnRecords), so that the connection table knows each
// long-lived connection's start from then on; the walks between flush
// only the stuck watch's states.
func TestProgressWalkFlushesEveryState(t *testing.T) {
	src := &walkerSource{}
	cfg := config.Defaults()
	cfg.Emit = config.EmitStuck
	cfg.Progress = 10 * time.Second
	p := pipeline.New(cfg, src, output.NewNDJSON(io.Discard, event.NewClock(time.Now(), 0)), nil, func(err error) { t.Error(err) })
	t0 := time.Now()
	for _, at := range []time.Duration{0, 2 * time.Second, 12 * time.Second, 14 * time.Second} {
		if err := p.WalkDue(t0.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	if len(src.details) != 4 {
		t.Fatalf("%d walks, want 4", len(src.details))
	}
	for i, d := range src.details {
		all := d.Flush == event.WalkAll.States
		if all != (i == 2) {
			t.Errorf("walk %d flushed %#x: want every state only at the progress walk (the third)", i, d.Flush)
		}
	}
}
