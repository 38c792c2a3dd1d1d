package event

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// rawEvent builds a struct event byte image.
func rawEvent(family byte, src, dst netip.Addr, sport, dport uint16, old, new State, flags Flags) []byte {
	b := make([]byte, Size)
	ne := binary.NativeEndian
	ne.PutUint64(b[offTS:], 1000)
	ne.PutUint64(b[offCookie:], 7)
	ne.PutUint64(b[offDwell:], 5000)
	if family == afInet {
		a4 := src.As4()
		copy(b[offSaddr:], a4[:])
		a4 = dst.As4()
		copy(b[offDaddr:], a4[:])
	} else {
		a16 := src.As16()
		copy(b[offSaddr:], a16[:])
		a16 = dst.As16()
		copy(b[offDaddr:], a16[:])
	}
	ne.PutUint32(b[offNetns:], 99)
	ne.PutUint32(b[offPID:], 1234)
	ne.PutUint16(b[offSport:], sport)
	ne.PutUint16(b[offDport:], dport)
	b[offFamily] = family
	b[offOld], b[offNew], b[offFlags] = byte(old), byte(new), byte(flags)
	copy(b[offComm:], "curl")
	return b
}

func TestDecode(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name     string
		raw      []byte
		wantErr  bool
		family   Family
		src, dst string
	}{
		{"ipv4", rawEvent(afInet, a("10.1.2.3"), a("10.9.8.7"), 40000, 443, SynSent, Established, DwellKnown), false, IPv4, "10.1.2.3:40000", "10.9.8.7:443"},
		{"ipv6", rawEvent(afInet6, a("fd00::1"), a("fd00::2"), 8080, 5000, Established, CloseWait, 0), false, IPv6, "[fd00::1]:8080", "[fd00::2]:5000"},
		{"v4-mapped shown as ipv4", rawEvent(afInet6, a("::ffff:127.0.0.1"), a("::ffff:127.0.0.2"), 80, 1000, Listen, SynRecv, 0), false, IPv4, "127.0.0.1:80", "127.0.0.2:1000"},
		{"mapped with unspecified end", rawEvent(afInet6, a("::"), a("::ffff:10.0.0.1"), 0, 80, Close, SynSent, 0), false, IPv4, "0.0.0.0:0", "10.0.0.1:80"},
		{"v6 listener on ::", rawEvent(afInet6, a("::"), a("::"), 80, 0, Close, Listen, 0), false, IPv6, "[::]:80", "[::]:0"},
		{"short", rawEvent(afInet, a("1.1.1.1"), a("1.1.1.1"), 1, 1, SynSent, Close, 0)[:Size-1], true, 0, "", ""},
		{"long", append(rawEvent(afInet, a("1.1.1.1"), a("1.1.1.1"), 1, 1, SynSent, Close, 0), 0), true, 0, "", ""},
		{"bad family", rawEvent(3, a("1.1.1.1"), a("1.1.1.1"), 1, 1, SynSent, Close, 0), true, 0, "", ""},
		{"bad state", rawEvent(afInet, a("1.1.1.1"), a("1.1.1.1"), 1, 1, 0, 13, 0), true, 0, "", ""},
		{"bad kind", func() []byte {
			b := rawEvent(afInet, a("1.1.1.1"), a("1.1.1.1"), 1, 1, SynSent, Close, 0)
			b[offKind] = 3
			return b
		}(), true, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			err := Decode(tc.raw, &e)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if e.Family != tc.family || e.Src.String() != tc.src || e.Dst.String() != tc.dst {
				t.Errorf("got %v %v -> %v, want %v %s -> %s", e.Family, e.Src, e.Dst, tc.family, tc.src, tc.dst)
			}
			if e.Mono != 1000 || e.Cookie != 7 || e.Dwell != 5*time.Microsecond || e.Netns != 99 || e.PID != 1234 || e.CommString() != "curl" {
				t.Errorf("scalar fields: %+v", e)
			}
		})
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]State{
		"ESTABLISHED": Established, "syn_rcvd": SynRecv, "SYN-RECV": SynRecv, "TCP_CLOSE_WAIT": CloseWait,
		"time-wait": TimeWait, "FIN_WAIT_2": FinWait2, "new_syn_recv": NewSynRecv,
	} {
		if got, err := ParseState(in); err != nil || got != want {
			t.Errorf("ParseState(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "OPEN", "SYN", "12"} {
		if _, err := ParseState(bad); err == nil {
			t.Errorf("ParseState(%q) accepted", bad)
		}
	}
	for s := Established; s <= NewSynRecv; s++ {
		if got, err := ParseState(s.String()); err != nil || got != s {
			t.Errorf("round trip of %v: %v %v", s, got, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	a := netip.MustParseAddr
	f.Add(rawEvent(afInet, a("10.1.2.3"), a("10.9.8.7"), 40000, 443, SynSent, Established, DwellKnown))
	f.Add(rawEvent(afInet6, a("::ffff:127.0.0.1"), a("::"), 80, 0, Listen, SynRecv, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := Decode(b, &e); err == nil {
			if !e.Old.Valid() || !e.New.Valid() || len(b) != Size {
				t.Fatalf("accepted a bad record: %+v", e)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := rawEvent(afInet, netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.9.8.7"), 40000, 443, SynSent, Established, DwellKnown)
	var e Event
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(raw, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestStay(t *testing.T) {
	us := time.Microsecond
	for _, tc := range []struct {
		name  string
		e     Event
		stay  time.Duration
		ended bool
	}{
		{"dwell", Event{Old: Established, New: FinWait1, Dwell: 5 * us, Flags: DwellKnown}, 5 * us, true},
		{"unknown dwell", Event{Old: Established, New: FinWait1}, 0, false},
		{"birth from CLOSE", Event{Old: Close, New: SynSent}, 0, false},
		{"repeated set", Event{Old: FinWait1, New: FinWait1, Dwell: us, Flags: DwellKnown}, 0, false},
		{"accepted child's birth", Event{Old: Listen, New: SynRecv, Dwell: 40 * time.Millisecond, Flags: DwellKnown}, 0, false},
		{"listener closes", Event{Old: Listen, New: Close, Dwell: time.Second, Flags: DwellKnown}, time.Second, true},
		{"accepted handshake", Event{Old: SynRecv, New: Established, Dwell: 24 * us, Flags: DwellKnown | Handshake, HandshakeMicros: 2020000}, 2020 * time.Millisecond, true},
		{"accepted, handshake unknown", Event{Old: SynRecv, New: Established, Dwell: 24 * us, Flags: DwellKnown | Handshake}, 0, false},
		{"simultaneous open", Event{Old: SynRecv, New: Established, Dwell: 3 * us, Flags: DwellKnown}, 3 * us, true},
		// ESTABLISHED->CLOSE_WAIT was not seen: the 22.8 ms run from the
		// last one seen and are mostly ESTABLISHED's, not CLOSE_WAIT's.
		{"start not seen", Event{Old: CloseWait, New: LastAck, Dwell: 22800 * us, Flags: DwellKnown | Gap}, 0, false},
	} {
		stay, ended := tc.e.Stay()
		if stay != tc.stay || ended != tc.ended {
			t.Errorf("%s: Stay() = %v, %v; want %v, %v", tc.name, stay, ended, tc.stay, tc.ended)
		}
	}
}
