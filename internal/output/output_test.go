package output

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York wherever the tests run

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/cgroup"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var (
	t0    = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock = event.NewClock(t0, 1_000_000_000) // mono 1 s = t0
)

func sampleEvent() event.Event {
	e := event.Event{
		Mono: 1_500_000_000, Cookie: 4097, Dwell: 250 * time.Millisecond, Netns: 4026531840, PID: 812,
		Src: netip.MustParseAddrPort("10.0.0.5:8080"), Dst: netip.MustParseAddrPort("10.0.0.9:51544"),
		Family: event.IPv4, Old: event.CloseWait, New: event.LastAck,
		Flags: event.DwellKnown | event.OwnerKnown,
	}
	copy(e.Comm[:], "nginx")
	return e
}

// podNginx is a containerd container's identity in a Kubernetes pod.
var podNginx = cgroup.Parse("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/" +
	"cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope")

func sampleConns() []*timeline.Conn {
	c := &timeline.Conn{
		Cookie: 4097, Netns: 4026531840, Family: event.IPv4, PID: 812, OwnerKnown: true,
		Src: netip.MustParseAddrPort("10.0.0.5:8080"), Dst: netip.MustParseAddrPort("10.0.0.9:51544"),
		Start: 1_000_000_000, End: 1_500_100_000,
		States: []timeline.Span{
			{State: event.SynRecv, Enter: 1_000_000_000, Dwell: 6000, DwellKnown: true},
			{State: event.Established, Enter: 1_000_006_000, Dwell: 249_994_000, DwellKnown: true},
			{State: event.CloseWait, Enter: 1_250_000_000, Dwell: 250_000_000, DwellKnown: true},
			{State: event.LastAck, Enter: 1_500_000_000, Dwell: 100_000, DwellKnown: true},
			{State: event.Close, Enter: 1_500_100_000},
		},
	}
	copy(c.Comm[:], "nginx")
	c.Identity = &podNginx
	c.Ending = timeline.Ending{Retrans: 2, Reset: event.ResetReceived, Err: 104, CloseKnown: true,
		BytesAcked: 512, BytesReceived: 77, SRTTMicros: 40, TotalRetrans: 2,
		HandshakeKnown: true, HandshakeMicros: 35, SynAckRetrans: 0}
	client := &timeline.Conn{
		Cookie: 4098, Netns: 4026531840, Family: event.IPv4, PID: 900, OwnerKnown: true,
		Src: netip.MustParseAddrPort("10.0.0.9:51544"), Dst: netip.MustParseAddrPort("10.0.0.5:8080"),
		Start: 1_000_000_000, End: 1_500_200_000,
		States: []timeline.Span{
			{State: event.SynSent, Enter: 1_000_000_000, Dwell: 50_000, DwellKnown: true},
			{State: event.Established, Enter: 1_000_050_000, Dwell: 400_000_000, DwellKnown: true},
			{State: event.FinWait1, Enter: 1_400_050_000, Dwell: 100_000, DwellKnown: true},
			{State: event.FinWait2, Enter: 1_400_150_000, Dwell: 100_050_000, DwellKnown: true},
			{State: event.TimeWait, Enter: 1_500_200_000, Inferred: true},
			{State: event.Close, Enter: 1_500_200_000},
		},
		Ending: timeline.Ending{SynRetrans: 1, TW: event.TWTimeWait, CloseKnown: true, BytesAcked: 78, BytesReceived: 511, SRTTMicros: 41},
	}
	copy(client.Comm[:], "curl")
	partial := &timeline.Conn{
		Cookie: 9, Netns: 1, Family: event.IPv6, Partial: true, Open: true, End: 3_000_000_000,
		Src: netip.MustParseAddrPort("[fd00::1]:443"), Dst: netip.MustParseAddrPort("[fd00::2]:40000"),
		States: []timeline.Span{
			{State: event.Established},
			{State: event.CloseWait, Enter: 2_000_000_000, Dwell: 1_000_000_000, DwellKnown: true},
		},
	}
	return []*timeline.Conn{c, client, partial}
}

// testRun is the run identity of the golden records.
const testRun = "5f0c9a2b7d1e4f3a8b6c0d2e4f6a8b0c"

func writeAll(s pipeline.Sink) {
	e := sampleEvent()
	s.Transition(&e)
	e.Old, e.New, e.Flags = event.FinWait2, event.Close, event.DwellKnown|event.OwnerKnown|event.CloseInfo
	e.TW, e.Err, e.Reset = event.TWTimeWait, 0, 0
	s.Transition(&e)
	e.Old, e.New, e.TW, e.Err, e.Reset = event.SynSent, event.Close, event.TWNone, 111, event.ResetReceived
	s.Transition(&e)
	e.Flags &^= event.DwellKnown | event.OwnerKnown | event.CloseInfo
	e.Old, e.New = event.Close, event.SynSent
	s.Transition(&e)
	// The transition into CLOSE_WAIT was not seen: the dwell spans it.
	e.Old, e.New, e.Flags, e.Err, e.Reset = event.CloseWait, event.LastAck, event.DwellKnown|event.Gap, 0, 0
	s.Transition(&e)
	for _, c := range sampleConns() {
		s.Connection(c)
	}
	var hs pipeline.Histograms
	for _, v := range []uint64{1e9, 1.1e9, 2e9, 30e9} {
		hs[event.CloseWait].Record(v)
	}
	hs[event.SynSent].Record(1_000_000)
	var untimed pipeline.Untimed
	untimed[event.CloseWait].ByReason[event.UntimedNoStart] = 2
	untimed[event.CloseWait].Evicted = 1
	untimed[event.SynRecv].ByReason[event.UntimedSynCookie] = 5 // a state with no timed stay
	s.Histograms(t0.Add(time.Minute), t0, &hs, &untimed)
	s.Lost(&pipeline.Lost{TS: t0.Add(time.Second), RingbufFull: 3, Recursion: 2, Unread: 1, TotalRingbufFull: 3, TotalRecursion: 5, TotalUnread: 1,
		Unsent: 2, TotalUnsent: 2, Gap: 4, TotalGap: 4, RecursionHostWide: true})
	var counts [event.NumStates]uint64
	counts[event.Established], counts[event.CloseWait], counts[event.TimeWait], counts[event.Listen] = 120, 7, 3000, 2
	s.States(t0.Add(10*time.Second), &counts)
	s.Stuck(&pipeline.Stuck{TS: t0.Add(31 * time.Second), Conn: sampleConns()[2], State: event.CloseWait, Age: 31_000_000_000, AtLeast: true})
	l := pipeline.Listener{Netns: 1, NetnsCookie: 1, IfIndex: 2, Family: event.IPv4, Addr: netip.MustParseAddrPort("0.0.0.0:8080"), PID: 812, OwnerKnown: true,
		AcceptQueue: 129, AcceptQueueMax: 128, HalfOpen: 37, SynAckRetrans: 12,
		Drops: 83, SynCookies: 4, SynCookiesSent: true, SynCookiesKnown: true}
	copy(l.Comm[:], "nginx")
	s.Listener(t0.Add(10*time.Second), &l)
	s.Stats(&pipeline.Stats{TS: t0.Add(time.Minute), Attach: "tp_btf", Events: 10, Connections: 2, Open: 1, Lost: 12, LostInferred: 4})
	writeRest(s)
}

// writeRest writes records with the fields writeAll's leave out, so that
// the golden file shows every field of every record type.
func writeRest(s pipeline.Sink) {
	// A tally that names its one namespace.
	s.(pipeline.SpanSink).Span([]uint32{7})
	var counts [event.NumStates]uint64
	counts[event.Established] = 2
	s.States(t0.Add(11*time.Second), &counts)
	// A stuck connection in a run whose tally spans two namespaces.
	s.(pipeline.SpanSink).Span([]uint32{1, 7})
	s.States(t0.Add(12*time.Second), &counts)
	s.Stuck(&pipeline.Stuck{TS: t0.Add(31 * time.Second), Conn: sampleConns()[0], State: event.SynSent, Age: 4_000_000_000})
	e := sampleEvent()
	// A tracepoint-mode id: bit 52 set, the largest identifier the tracer
	// writes; every one fits a double's 53-bit mantissa.
	e.Cookie = 1<<52 | 1<<20
	e.Old, e.New, e.Flags = event.SynRecv, event.Established, event.OwnerKnown|event.Inherited|event.CookieSynth
	e.NetnsCookie, e.IfIndex = 4, 2 // a namespace's cookie; bound to interface 2 (SO_BINDTODEVICE)
	s.Transition(&e)
	e.NetnsCookie, e.IfIndex = 0, 0
	e.Cookie = 4097
	e.Old, e.New, e.Flags = event.FinWait2, event.Close, event.DwellKnown|event.CloseInfo
	e.TW, e.Reset, e.Err = event.TWFinWait2, event.ResetSent|event.ResetReceived, 300 // no errno name
	s.Transition(&e)
	evicted := &timeline.Conn{
		Cookie: 4099, Netns: 1, NetnsCookie: 1, IfIndex: 3, Family: event.IPv6, Partial: true, Open: true, Evicted: true,
		Src: netip.MustParseAddrPort("[fe80::1]:443"), Dst: netip.MustParseAddrPort("[fe80::3]:40001"),
		Start: 2_000_000_000, End: 3_000_000_000,
		States: []timeline.Span{
			{State: event.SynRecv, Enter: 2_000_000_000, Dwell: 5000, DwellKnown: true},
			{State: event.Established, Unseen: true},
			{State: event.FinWait2, Enter: 2_100_000_000, Dwell: 400_000_000, DwellKnown: true, AgeSource: event.AgeRcvTstamp},
			{State: event.CloseWait, Enter: 2_500_000_000, Dwell: 500_000_000, DwellKnown: true},
		},
		Ending: timeline.Ending{Retrans: 1, Reset: event.ResetSent, SynAckRetrans: 3},
	}
	s.Connection(evicted)
	orphan := &timeline.Conn{
		Cookie: 4100, Netns: 1, Family: event.IPv4, Start: 2_000_000_000, End: 2_000_000_000,
		Src: netip.MustParseAddrPort("10.0.0.9:51545"), Dst: netip.MustParseAddrPort("10.0.0.5:8080"),
		States: []timeline.Span{
			{State: event.FinWait2, Enter: 2_000_000_000, Dwell: 0, DwellKnown: true},
			{State: event.Close, Enter: 2_000_000_000},
		},
		Ending: timeline.Ending{TW: event.TWFinWait2, Reset: event.ResetSent | event.ResetReceived, Err: 300, CloseKnown: true},
	}
	s.Connection(orphan)
	s.Stuck(&pipeline.Stuck{TS: t0.Add(40 * time.Second), Conn: sampleConns()[0], State: event.LastAck, Age: 5_000_000_000})
	// A fork-per-connection server: the child and the parent hold the
	// socket; the tracer saw it created by another process.
	creator := sampleConns()[2]
	creator.PID, creator.OwnerKnown, creator.NetnsCookie, creator.IfIndex = 812, true, 1, 2
	copy(creator.Comm[:], "nginx")
	forked := &pipeline.Stuck{TS: t0.Add(41 * time.Second), Conn: creator, State: event.CloseWait, Age: 30_000_000_000,
		HoldersKnown: true, Holders: []pipeline.Holder{{PID: 900}, {PID: 901}}, Identity: &podNginx}
	copy(forked.Holders[0].Comm[:], "worker")
	copy(forked.Holders[1].Comm[:], "worker")
	s.Stuck(forked)
	// Not held by any process (never accept()ed).
	s.Stuck(&pipeline.Stuck{TS: t0.Add(42 * time.Second), Conn: sampleConns()[2], State: event.CloseWait, Age: 30_000_000_000, HoldersKnown: true})
	// A listener's half-open handshakes.
	listener := &timeline.Conn{Cookie: 77, Netns: 1, Family: event.IPv4, PID: 812, OwnerKnown: true,
		Src: netip.MustParseAddrPort("0.0.0.0:8080"), Dst: netip.MustParseAddrPort("0.0.0.0:0")}
	copy(listener.Comm[:], "nginx")
	u := func(v uint32) *uint32 { return &v }
	s.Stuck(&pipeline.Stuck{TS: t0.Add(43 * time.Second), Conn: listener, State: event.SynRecv, Age: 3_100_000_000, HalfOpen: 250,
		AtLeast: true, AgeSource: event.AgeSynAck,
		Limits: &record.Limits{ListenBacklog: u(511), Somaxconn: u(4096), TCPMaxSynBacklog: u(256), TCPSyncookies: u(1)}})
	s.Cleared(&pipeline.Cleared{TS: t0.Add(50 * time.Second), State: event.SynRecv, Conn: listener, Since: t0.Add(43 * time.Second)})
	// A CLOSE_WAIT leak older than the tracer: its age from the kernel.
	s.Stuck(&pipeline.Stuck{TS: t0.Add(44 * time.Second), Conn: sampleConns()[1], State: event.FinWait2, Age: 600_000_000_000,
		AtLeast: true, AgeSource: event.AgeRcvTstamp, Limits: &record.Limits{TCPFinTimeout: u(60)}})
	sock := event.Socket{Cookie: 4099, Netns: 1, Family: event.IPv4, State: event.Established, PID: 812, OwnerKnown: true,
		Src: netip.MustParseAddrPort("10.0.0.5:8080"), Dst: netip.MustParseAddrPort("10.0.0.9:51544"),
		BytesAcked: 1 << 20, BytesReceived: 4096, SRTTMicros: 52, TotalRetrans: 2, IfIndex: 3}
	copy(sock.Comm[:], "nginx")
	s.Progress(&pipeline.Progress{TS: t0.Add(45 * time.Second), Sock: &sock, Start: 1_000_000_000, Age: 44_000_000_000, StateAge: 43_000_000_000})
	s.Progress(&pipeline.Progress{TS: t0.Add(45 * time.Second), Sock: &sock, Age: 90_000_000_000, StateAge: 90_000_000_000,
		AtLeast: true, Source: event.AgeRcvTstamp})
	pile := &pipeline.Pile{TS: t0.Add(46 * time.Second), State: event.TimeWait, Netns: 1, Family: event.IPv4,
		Dst: netip.MustParseAddrPort("10.0.0.5:8080"), IfIndex: 3, Count: 45, Oldest: 31_000_000_000, Source: event.AgeTwTimer,
		Limits: &record.Limits{LocalPortRange: &[2]uint32{40000, 40049}, TCPTwReuse: u(2)}}
	s.Pile(pile)
	s.Cleared(&pipeline.Cleared{TS: t0.Add(100 * time.Second), State: event.TimeWait, Since: t0.Add(46 * time.Second),
		Conn: &timeline.Conn{Netns: 1, Family: event.IPv4, Src: netip.MustParseAddrPort("0.0.0.0:0"), Dst: pile.Dst, IfIndex: 3}})
	hs := sampleEvent()
	hs.Old, hs.New, hs.Flags, hs.HandshakeMicros = event.SynRecv, event.Established, event.DwellKnown|event.OwnerKnown|event.Handshake, 2_020_000
	s.Transition(&hs)
	hs.HandshakeMicros = 0 // accepted, handshake time unknown
	s.Transition(&hs)
	hs.SynCookie = true // accepted through a SYN cookie
	s.Transition(&hs)
	cookied := &timeline.Conn{
		Cookie: 4100, Netns: 1, Family: event.IPv4, Open: true, Partial: true, End: 3_000_000_000,
		Src: netip.MustParseAddrPort("10.0.0.5:8080"), Dst: netip.MustParseAddrPort("10.0.0.9:51546"),
		States: []timeline.Span{{State: event.SynRecv, Enter: 2_000_000_000}, {State: event.Established, Enter: 2_000_010_000, Dwell: 1_000_000_000, DwellKnown: true}},
		Ending: timeline.Ending{SynCookie: true},
	}
	s.Connection(cookied)
	s.Stats(&pipeline.Stats{TS: t0.Add(2 * time.Minute), Attach: "tracepoint", Events: 12, Aggregated: 7, Connections: 4,
		Evictions: 1, Gaps: 3, Reordered: 1, StuckDropped: 2, Stuck: 2, Rescued: 1, StorageFail: 1, Lost: 4, HostWide: true, LostHostWide: 3, Reclaimed: 5,
		Runs: 100, PrimaryRunTimeNs: 0, RunTimeNs: 5000,
		Untimed: event.UntimedStays{ByReason: [event.NumUntimedReasons]uint64{4, 1, 0}},
		Walks:   120, WalkNs: 96_000_000, ProgressOn: true, Progress: 30, ProgressSkipped: 4})
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name + ".golden"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n got:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestNDJSONGolden(t *testing.T) {
	var buf bytes.Buffer
	n := newNDJSON(&buf, clock, testRun)
	writeAll(n)
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, line)
		}
		if m["type"] == nil {
			t.Errorf("line %d has no type", i+1)
		}
	}
	golden(t, "records.ndjson", buf.Bytes())
}

// The text output in UTC (--utc) and in a local zone: the same lines,
// every time shown in the zone the ZONE line names.
func TestTextGolden(t *testing.T) {
	newYork, err := time.LoadLocation("America/New_York") // from time/tzdata
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		loc  *time.Location
	}{{"records.txt", time.UTC}, {"records-new-york.txt", newYork}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewText(&buf, clock, tc.loc)
			writeAll(w)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, buf.Bytes())
		})
	}
}

// time.Local is named "local time" with the zone's abbreviation, and a
// daylight-saving switch during the run gets a new ZONE line.
func TestTextZoneLines(t *testing.T) {
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	defer func(l *time.Location) { time.Local = l }(time.Local)
	time.Local = newYork
	var buf bytes.Buffer
	w := NewText(&buf, clock, time.Local)
	var counts [event.NumStates]uint64
	// 2026-03-08 02:00 EST: clocks go forward to 03:00 EDT.
	switchAt := time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC)
	for _, at := range []time.Duration{-time.Minute, -time.Second, time.Second} {
		w.States(switchAt.Add(at), &counts)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "ZONE local time: EST (UTC-05:00)\n" +
		"STATES 01:59:00 (no sockets)\n" +
		"STATES 01:59:59 (no sockets)\n" +
		"ZONE local time: EDT (UTC-04:00)\n" +
		"STATES 03:00:01 (no sockets)\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestQuotedComm(t *testing.T) {
	for _, comm := range []string{`a"b\c`, "tab\there", "nl\n", "\xff\xfe", "ünï", "\x00"} {
		var c [16]byte
		copy(c[:], comm)
		got := appendQuoted(nil, event.CommBytes(&c))
		var s string
		if err := json.Unmarshal(got, &s); err != nil {
			t.Errorf("comm %q encoded as invalid JSON %s: %v", comm, got, err)
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, io.ErrShortWrite
}

func TestWriteErrorSticks(t *testing.T) {
	fw := &failWriter{}
	n := newNDJSON(fw, clock, testRun)
	writeAll(n)
	if err := n.Flush(); err == nil {
		t.Fatal("Flush on a failing writer returned nil")
	}
	e := sampleEvent()
	n.Transition(&e)
	if err := n.Flush(); err == nil || fw.n != 1 {
		t.Fatalf("err %v after %d writes; want the first error kept and no retries", err, fw.n)
	}
}

func BenchmarkNDJSONTransition(b *testing.B) {
	n := newNDJSON(io.Discard, clock, testRun)
	e := sampleEvent()
	b.ReportAllocs()
	for b.Loop() {
		n.Transition(&e)
	}
}

func BenchmarkNDJSONConnection(b *testing.B) {
	n := newNDJSON(io.Discard, clock, testRun)
	c := sampleConns()[0]
	b.ReportAllocs()
	for b.Loop() {
		n.Connection(c)
	}
}

func TestTimeCacheMatchesRFC3339Nano(t *testing.T) {
	var c timeCache
	for _, ns := range []int64{0, 1, 999_999_999, 1_000_000_000, 1_764_504_307_734_617_406, 1_764_504_307_000_000_000,
		1_764_504_307_100_000_000, 1_764_504_308_000_000_001, -1, -1_500_000_000} {
		got := string(c.appendTime(nil, "ts", ns))
		want := string(appendTime(nil, "ts", time.Unix(0, ns)))
		if got != want {
			t.Errorf("%d: %s, want %s", ns, got, want)
		}
	}
}

// lostParts reads a LOST line: the count, and the sum of the parts in
// its parentheses (up to a ';').
func lostParts(t *testing.T, s string) (count, sum uint64) {
	t.Helper()
	m := regexp.MustCompile(`LOST (\d+)[^(]*\(([^;)]*)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no LOST line with parts in %q", s)
	}
	count, _ = strconv.ParseUint(m[1], 10, 64)
	for _, n := range regexp.MustCompile(`\d+`).FindAllString(m[2], -1) {
		v, _ := strconv.ParseUint(n, 10, 64)
		sum += v
	}
	return count, sum
}

// The text loss line names every cause, so its parts add up to its count
// (it once left out the records submitted but never read).
func TestTextLostPartsAddUp(t *testing.T) {
	var out bytes.Buffer
	w := NewText(&out, clock, time.UTC)
	w.Lost(&pipeline.Lost{TS: t0, RingbufFull: 3, Recursion: 2, Decode: 4, Unread: 1, Unsent: 5,
		TotalRingbufFull: 3, TotalRecursion: 2, TotalDecode: 4, TotalUnread: 1, TotalUnsent: 5})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if count, sum := lostParts(t, out.String()); count != 15 || sum != count {
		t.Errorf("LOST %d with parts adding up to %d, want 15 and 15: %s", count, sum, out.String())
	}
}

// A state with stays of microseconds and of seconds prints one row for
// the empty range between them, not a row per empty power of two.
func TestTextHistogramFoldsEmptyRows(t *testing.T) {
	var hs pipeline.Histograms
	hs[event.SynRecv].Record(21_000)        // 21 µs
	hs[event.SynRecv].Record(7_000_000_000) // 7 s
	var buf bytes.Buffer
	w := NewText(&buf, clock, time.UTC)
	w.Histograms(time.Unix(100, 0), time.Unix(70, 0), &hs, &pipeline.Untimed{})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var rows, zeros int
	prevZero := false
	for _, l := range strings.Split(buf.String(), "\n") {
		if !strings.Contains(l, " -> ") {
			continue
		}
		rows++
		zero := strings.Contains(l, ": 0 ")
		if zero && prevZero {
			t.Errorf("two empty rows in a row:\n%s", buf.String())
		}
		if zero {
			zeros++
		}
		prevZero = zero
	}
	if rows != 3 || zeros != 1 {
		t.Errorf("%d rows, %d empty: want 3 rows (21µs, the empty range, 7s) of which 1 empty:\n%s", rows, zeros, buf.String())
	}
	if !strings.Contains(buf.String(), "32.8µs -> 4.29s") {
		t.Errorf("the empty row does not span 32.8µs to 4.29s:\n%s", buf.String())
	}
}

// At exit a text run lists the connections the trace saw; the sockets
// that were there before it and did nothing (every socket of the traced
// namespaces) are one line, not a CONN line each.
func TestTextLeavesOutUntouchedSockets(t *testing.T) {
	var buf bytes.Buffer
	w := NewText(&buf, clock, time.UTC)
	old := &timeline.Conn{Cookie: 1, Open: true, Partial: true, End: 5e9,
		Src: netip.MustParseAddrPort("10.0.0.1:22"), Dst: netip.MustParseAddrPort("10.0.0.2:5000"),
		States: []timeline.Span{{State: event.Established}}}
	seen := &timeline.Conn{Cookie: 2, Open: true, Partial: true, End: 5e9,
		Src: netip.MustParseAddrPort("10.0.0.1:22"), Dst: netip.MustParseAddrPort("10.0.0.3:5000"),
		States: []timeline.Span{{State: event.Established, Dwell: 1e9, DwellKnown: true}, {State: event.CloseWait, Enter: 4e9}}}
	w.Connection(old)
	w.Connection(seen)
	w.Stats(&pipeline.Stats{TS: time.Unix(10, 0), Attach: "tp_btf", Connections: 2, Open: 2})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	if strings.Count(s, "CONN ") != 1 || !strings.Contains(s, "10.0.0.3:5000") {
		t.Errorf("want one CONN line, the connection that changed state:\n%s", s)
	}
	if !strings.Contains(s, "1 sockets older than the trace") {
		t.Errorf("the sockets left out are not counted:\n%s", s)
	}
}

// Durations beyond time.Duration (2^63 ns and more) print as hours, never
// negative. (They printed as "-2562047h47m16.854775808s".)
func TestFormatDurationBeyondTimeDuration(t *testing.T) {
	for ns, want := range map[uint64]string{1 << 62: "1281023h53m38s", 1 << 63: "2562048h", 1<<64 - 1: "5124096h"} {
		if got := FormatDuration(ns); got != want {
			t.Errorf("FormatDuration(%d) = %q, want %q", ns, got, want)
		}
	}
}

// Every record carries the writer's run and its sequence number, counted
// from 1 with no gap or repeat across a reopen (SIGHUP's Redirect): a
// backend drops a record shipped twice by (run, seq).
func TestRunAndSeq(t *testing.T) {
	var before, after bytes.Buffer
	n := newNDJSON(&before, clock, testRun)
	writeAll(n)
	if err := n.Redirect(&after); err != nil {
		t.Fatal(err)
	}
	writeAll(n)
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	for _, out := range []*bytes.Buffer{&before, &after} {
		for _, line := range strings.SplitAfter(strings.TrimSuffix(out.String(), "\n"), "\n") {
			var s record.Stream
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatal(err)
			}
			seq++
			if s.Run != testRun || s.Seq != seq {
				t.Fatalf("record %d has run %q seq %d; want %q %d: %s", seq, s.Run, s.Seq, testRun, seq, line)
			}
		}
		if out.Len() == 0 {
			t.Fatal("nothing written")
		}
	}
	a, b := record.NewRun(), record.NewRun()
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Errorf("runs %q, %q: want two different 32-digit hex strings", a, b)
	}
	if NewNDJSON(io.Discard, clock).stream == nil {
		t.Error("NewNDJSON writes no run")
	}
}

// The encoder allocates nothing per record (the benchmarks show it; this
// holds it).
func TestNDJSONNoAllocs(t *testing.T) {
	n := NewNDJSON(io.Discard, clock)
	e, c := sampleEvent(), sampleConns()[0]
	if a := testing.AllocsPerRun(1000, func() { n.Transition(&e); n.Connection(c) }); a != 0 {
		t.Errorf("%v allocations per transition and connection record; want 0", a)
	}
}
