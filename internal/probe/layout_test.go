//go:build linux

package probe

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
)

// The Go decoder hand-codes struct event's offsets; this pins them to the
// bpf2go-generated twin of the C struct, without root.
func TestEventLayoutMatchesDecoder(t *testing.T) {
	if got := unsafe.Sizeof(tcptraceEvent{}); got != event.Size {
		t.Fatalf("struct event is %d bytes, the decoder expects %d: regenerate and update internal/event", got, event.Size)
	}
	raw := tcptraceEvent{
		TsNs: 123456789, Cookie: 42, DwellNs: 1_000_000_000, Netns: 4026531840, Pid: 4242,
		Sport: 8080, Dport: 51000, Family: 10, Oldstate: 8, Newstate: 9,
		Flags: uint8(event.DwellKnown | event.OwnerKnown), Syncookie: 1, Ifindex: 3, NetnsCookie: 1<<40 + 7,
	}
	copy(raw.Saddr[:], netip.MustParseAddr("2001:db8::1").AsSlice())
	copy(raw.Daddr[:], netip.MustParseAddr("2001:db8::2").AsSlice())
	for i, c := range []byte("nginx") {
		raw.Comm[i] = int8(c)
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &raw); err != nil {
		t.Fatal(err)
	}
	var e event.Event
	if err := event.Decode(buf.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	want := event.Event{
		Mono: 123456789, Cookie: 42, Dwell: time.Second, Netns: 4026531840, PID: 4242,
		Src: netip.MustParseAddrPort("[2001:db8::1]:8080"), Dst: netip.MustParseAddrPort("[2001:db8::2]:51000"),
		Family: event.IPv6, Old: event.CloseWait, New: event.LastAck, Flags: event.DwellKnown | event.OwnerKnown,
		SynCookie: true, IfIndex: 3, NetnsCookie: 1<<40 + 7,
	}
	copy(want.Comm[:], "nginx")
	if e != want {
		t.Fatalf("decoded\n %+v\nwant\n %+v", e, want)
	}
}

func TestKernelHistogramLayout(t *testing.T) {
	if n := len(tcptraceStateHist{}.Buckets); n != 2048 || histogram.NumBuckets != 1920 {
		t.Fatalf("kernel histogram has %d slots for internal/histogram's %d buckets; bpf/tcptrace.h says 2048 for 1920", n, histogram.NumBuckets)
	}
}

func TestSockInfoAndCountersLayout(t *testing.T) {
	if s := unsafe.Sizeof(tcptraceSockInfo{}); s != 184 {
		t.Errorf("struct sock_info is %d bytes, want 184 (56, and struct held)", s)
	}
	if s := unsafe.Sizeof(tcptraceCounters{}); s != 120 {
		t.Errorf("struct counters is %d bytes, want 120", s)
	}
}

func TestSockSnapLayoutMatchesDecoder(t *testing.T) {
	if got := unsafe.Sizeof(tcptraceSockSnap{}); got != event.SocketSize {
		t.Fatalf("struct sock_snap is %d bytes, the decoder expects %d", got, event.SocketSize)
	}
	raw := tcptraceSockSnap{Cookie: 9, Netns: 77, Pid: 31, Sport: 22, Dport: 40000, Family: 2, State: 8, OwnerKnown: 1,
		AckBacklog: 5, MaxAckBacklog: 128, Retrans: 3, SynackNs: 123456789, Ino: 4242, Ifindex: 6, NetnsCookie: 1<<40 + 9,
		Drops: 83, Syncookies: 7, SyncookieStamp: 4000123,
		BytesAcked: 1001, BytesReceived: 2002, AgeNs: 600e9, SrttUs: 77, TotalRetrans: 4, AgeSrc: 2}
	copy(raw.Saddr[:], []byte{10, 0, 0, 1})
	copy(raw.Daddr[:], []byte{10, 0, 0, 2})
	for i, c := range []byte("sshd") {
		raw.Comm[i] = int8(c)
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.NativeEndian, &raw)
	var s event.Socket
	if err := event.DecodeSocket(buf.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Cookie != 9 || s.Netns != 77 || s.PID != 31 || s.State != event.CloseWait || !s.OwnerKnown ||
		s.Src.String() != "10.0.0.1:22" || s.Dst.String() != "10.0.0.2:40000" || string(event.CommBytes(&s.Comm)) != "sshd" ||
		s.AcceptQueue != 5 || s.AcceptQueueMax != 128 || s.SynAckRetrans != 3 || s.SynAck != 123456789 || s.Inode != 4242 ||
		s.Drops != 83 || s.SynCookies != 7 || s.SynCookieStamp != 4000123 ||
		s.IfIndex != 6 || s.NetnsCookie != 1<<40+9 ||
		s.BytesAcked != 1001 || s.BytesReceived != 2002 || s.StateAge != 600e9 || s.SRTTMicros != 77 ||
		s.TotalRetrans != 4 || s.AgeSource != event.AgeRcvTstamp {
		t.Fatalf("decoded %+v", s)
	}
}

func TestParseMonotonicOffset(t *testing.T) {
	for in, want := range map[string]int64{
		"monotonic           0         0\nboottime            0         0\n": 0,
		"monotonic        1000         0\nboottime            0         0\n": 1000e9,
		"boottime 5 0\nmonotonic -2 500\n":                                   -2e9 + 500,
		"":                                                                   0,
	} {
		if got := parseMonotonicOffset(in); got != want {
			t.Errorf("parseMonotonicOffset(%q) = %d, want %d", in, got, want)
		}
	}
}

// internal/event's constants are the C enums' values (bpf2go generates
// their Go twins from bpf/tcptrace.h): one home, pinned here.
func TestEventConstantsMatchTheC(t *testing.T) {
	for _, c := range []struct {
		name   string
		goVal  uint64
		cValue uint64
	}{
		{"DwellKnown", uint64(event.DwellKnown), uint64(tcptraceEventFlagsEV_DWELL_KNOWN)},
		{"OwnerKnown", uint64(event.OwnerKnown), uint64(tcptraceEventFlagsEV_OWNER_KNOWN)},
		{"Birth", uint64(event.Birth), uint64(tcptraceEventFlagsEV_BIRTH)},
		{"Inherited", uint64(event.Inherited), uint64(tcptraceEventFlagsEV_INHERITED)},
		{"Gap", uint64(event.Gap), uint64(tcptraceEventFlagsEV_GAP)},
		{"CookieSynth", uint64(event.CookieSynth), uint64(tcptraceEventFlagsEV_COOKIE_SYNTH)},
		{"CloseInfo", uint64(event.CloseInfo), uint64(tcptraceEventFlagsEV_CLOSE_INFO)},
		{"Handshake", uint64(event.Handshake), uint64(tcptraceEventFlagsEV_HANDSHAKE)},
		{"KindTransition", uint64(event.KindTransition), uint64(tcptraceEventKindKIND_TRANSITION)},
		{"KindResetAfterClose", uint64(event.KindResetAfterClose), uint64(tcptraceEventKindKIND_RESET_AFTER)},
		{"ResetSent", uint64(event.ResetSent), uint64(tcptraceEventRstRST_SENT)},
		{"ResetReceived", uint64(event.ResetReceived), uint64(tcptraceEventRstRST_RECEIVED)},
		{"TWNone", uint64(event.TWNone), uint64(tcptraceEventTwTW_NONE)},
		{"TWTimeWait", uint64(event.TWTimeWait), uint64(tcptraceEventTwTW_TIME_WAIT)},
		{"TWFinWait2", uint64(event.TWFinWait2), uint64(tcptraceEventTwTW_FIN_WAIT2)},
		{"UntimedNoStart", uint64(event.UntimedNoStart), uint64(tcptraceUntimedReasonUNTIMED_NO_START)},
		{"UntimedGap", uint64(event.UntimedGap), uint64(tcptraceUntimedReasonUNTIMED_GAP)},
		{"UntimedSynCookie", uint64(event.UntimedSynCookie), uint64(tcptraceUntimedReasonUNTIMED_SYNCOOKIE)},
		{"NumUntimedReasons", uint64(event.NumUntimedReasons), uint64(tcptraceUntimedReasonUNTIMED_REASONS)},
		{"AgeTraced", uint64(event.AgeTraced), uint64(tcptraceAgeSourceAGE_TRACED)},
		{"AgeFirstSeen", uint64(event.AgeFirstSeen), uint64(tcptraceAgeSourceAGE_FIRST_SEEN)},
		{"AgeRcvTstamp", uint64(event.AgeRcvTstamp), uint64(tcptraceAgeSourceAGE_RCV_TSTAMP)},
		{"AgeRetransStamp", uint64(event.AgeRetransStamp), uint64(tcptraceAgeSourceAGE_RETRANS_STAMP)},
		{"AgeSynAck", uint64(event.AgeSynAck), uint64(tcptraceAgeSourceAGE_SNT_SYNACK)},
		{"AgeTwTimer", uint64(event.AgeTwTimer), uint64(tcptraceAgeSourceAGE_TW_TIMER)},
	} {
		if c.goVal != c.cValue {
			t.Errorf("event.%s = %#x, bpf/tcptrace.h says %#x", c.name, c.goVal, c.cValue)
		}
	}
}

func TestHZFromConfig(t *testing.T) {
	hz, err := hzFromConfig(strings.NewReader("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"))
	if err != nil || hz != 250 {
		t.Fatalf("hzFromConfig = %d, %v; want 250", hz, err)
	}
	if _, err := hzFromConfig(strings.NewReader("CONFIG_NO_HZ=y\n")); err == nil {
		t.Fatal("a config without CONFIG_HZ gave a rate")
	}
	for rate, want := range map[float64]uint32{96: 100, 247.5: 250, 310: 300, 990: 1000} {
		if got := nearestHZ(rate); got != want {
			t.Errorf("nearestHZ(%v) = %d, want %d", rate, got, want)
		}
	}
}

// A connection record (struct conn_record) decodes into its transitions
// as the kernel would have sent each: the pinned layout, the socket's
// fields on each, the close figures on the CLOSE only, the handshake's
// on its end only.
func TestConnRecordLayoutMatchesDecoder(t *testing.T) {
	if got := unsafe.Sizeof(tcptraceConnRecord{}); got != event.ConnSize {
		t.Fatalf("struct conn_record is %d bytes, the decoder expects %d", got, event.ConnSize)
	}
	var raw tcptraceConnRecord
	raw.E = tcptraceEvent{TsNs: 900, Cookie: 42, Netns: 7, Pid: 4242, Sport: 8080, Dport: 51000, Family: 2,
		Oldstate: 9, Newstate: 7, Kind: uint8(event.KindConn), Flags: uint8(event.OwnerKnown | event.CloseInfo),
		BytesAcked: 146, SrttUs: 61, TotalRetrans: 2, Tw: 1, HandshakeUs: 23}
	copy(raw.E.Saddr[:], []byte{127, 0, 0, 1})
	copy(raw.E.Daddr[:], []byte{127, 0, 0, 2})
	h := &raw.Held
	h.N, h.HsRetrans = 5, 1
	for i, tr := range [][2]uint8{{10, 3}, {3, 1}, {1, 8}, {8, 9}, {9, 7}} { // LISTEN>SYN_RECV ... LAST_ACK>CLOSE
		h.Ts[i], h.Dwell[i], h.Old[i], h.New[i] = uint64(100*(i+1)), uint64(10*i), tr[0], tr[1]
		h.Flags[i] = uint8(event.DwellKnown | event.OwnerKnown)
	}
	h.Flags[0] = uint8(event.Birth | event.Inherited)
	h.Flags[1] |= uint8(event.Handshake)
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &raw); err != nil {
		t.Fatal(err)
	}
	var got []event.Event
	var e event.Event
	if err := event.DecodeConn(buf.Bytes(), &e, func(e *event.Event) { got = append(got, *e) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d transitions, want 5", len(got))
	}
	for i, e := range got {
		if e.Kind != event.KindTransition || e.Cookie != 42 || e.PID != 4242 || e.Mono != event.Mono(100*(i+1)) ||
			e.Dwell != time.Duration(10*i) || e.Src != netip.MustParseAddrPort("127.0.0.1:8080") {
			t.Errorf("transition %d: %+v", i, e)
		}
		closing := i == 4
		if closing != e.Has(event.CloseInfo) || closing != (e.BytesAcked == 146) || closing != (e.TW == event.TWTimeWait) {
			t.Errorf("transition %d: close figures %v %d %d", i, e.Has(event.CloseInfo), e.BytesAcked, e.TW)
		}
		hs := i == 1
		if hs != (e.HandshakeMicros == 23) || hs != (e.TotalRetrans == 1) {
			t.Errorf("transition %d: handshake %d us, total_retrans %d", i, e.HandshakeMicros, e.TotalRetrans)
		}
	}
	if got[0].Old != event.Listen || got[0].New != event.SynRecv || !got[0].Has(event.Birth) || got[4].New != event.Close {
		t.Errorf("states: %v -> %v ... %v", got[0].Old, got[0].New, got[4].New)
	}
	h.N = 7
	buf.Reset()
	_ = binary.Write(&buf, binary.NativeEndian, &raw)
	if err := event.DecodeConn(buf.Bytes(), &e, func(*event.Event) {}); err == nil {
		t.Error("a record holding 7 transitions decoded")
	}
}
