package incident

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

func comm(s string) (c [16]byte) { copy(c[:], s); return c }

// A CLOSE_WAIT leak of three sockets is one group named by its owner and
// listener; it speaks when it appears, once more per interval when its
// count changes, and once when it clears. Twelve TIME_WAIT sockets toward
// one host pass a pile of 10; 9 toward another do not. Half-open
// handshakes older than the limit group by listener and /24.
func TestGroups(t *testing.T) {
	t0 := time.Unix(1000, 0)
	clock := event.NewClock(t0, 0) // mono 0 is t0
	var out strings.Builder
	w := NewText(&out, time.UTC)
	cfg := Config{Every: 10 * time.Second}
	cfg.Stuck[event.CloseWait] = 30 * time.Second
	cfg.Stuck[event.SynRecv] = 3 * time.Second
	cfg.Piles[event.TimeWait] = 10
	x := New(cfg, clock, w)
	srv := netip.MustParseAddrPort("10.0.0.1:9301")
	leak := func(cookie uint64, ts time.Time) {
		c := &timeline.Conn{Cookie: cookie, Netns: 7, Src: srv, Dst: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(40000+cookie)),
			PID: 15120, Comm: comm("leakysrv"), OwnerKnown: true}
		x.Stuck(&pipeline.Stuck{TS: ts, Conn: c, State: event.CloseWait, Age: uint64(30 * time.Second)})
	}
	tw := 12 // TIME_WAIT sockets toward 10.9.9.9
	walk := func(ts time.Time, cookies ...uint64) {
		var socks []event.Socket
		for _, ck := range cookies {
			socks = append(socks, event.Socket{Cookie: ck, Netns: 7, State: event.CloseWait, Src: srv})
		}
		for i := range tw {
			socks = append(socks, event.Socket{Netns: 7, State: event.TimeWait, Dst: netip.AddrPortFrom(netip.MustParseAddr("10.9.9.9"), uint16(80+i))})
		}
		for i := range 9 {
			socks = append(socks, event.Socket{Netns: 7, State: event.TimeWait, Dst: netip.AddrPortFrom(netip.MustParseAddr("10.9.9.8"), uint16(80+i))})
		}
		socks = append(socks, event.Socket{Netns: 7, State: event.Listen, Src: netip.MustParseAddrPort("0.0.0.0:443"), PID: 99, Comm: comm("nginx"), OwnerKnown: true, Cookie: 500})
		for i := range 4 { // two old handshakes from 192.0.2.0/24, one from elsewhere, one young
			src := []string{"192.0.2.7", "192.0.2.9", "198.51.100.1", "192.0.2.10"}[i]
			sent := clock.Mono(ts.Add(-5 * time.Second))
			if i == 3 {
				sent = clock.Mono(ts.Add(-time.Second))
			}
			socks = append(socks, event.Socket{Netns: 7, State: event.NewSynRecv, Src: netip.MustParseAddrPort("10.0.0.1:443"),
				Dst: netip.AddrPortFrom(netip.MustParseAddr(src), 5000), SynAck: sent})
		}
		x.Sockets(ts, socks)
	}
	leak(1, t0)
	leak(2, t0)
	walk(t0.Add(time.Second), 1, 2)
	leak(3, t0.Add(2*time.Second))
	walk(t0.Add(2*time.Second), 1, 2, 3)  // changed, but within the interval: quiet
	walk(t0.Add(12*time.Second), 1, 2, 3) // now said
	walk(t0.Add(13*time.Second), 1, 2, 3) // unchanged: quiet
	tw = 5
	walk(t0.Add(14 * time.Second)) // the leak is gone, the pile back under its count
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"00:16:41 leakysrv[15120]: 2 in CLOSE_WAIT on 10.0.0.1:9301, oldest 31s (stuck past 30s)",
		"00:16:41 12 in TIME_WAIT toward 10.9.9.9 (limit 10)",
		"00:16:41 nginx[99]: 2 in half-open handshakes (SYN_RECV) on 10.0.0.1:443 from 192.0.2.0/24, oldest 5s (stuck past 3s)",
		"00:16:41 nginx[99]: 1 in half-open handshakes (SYN_RECV) on 10.0.0.1:443 from 198.51.100.0/24, oldest 5s (stuck past 3s)",
		"00:16:52 leakysrv[15120]: 3 in CLOSE_WAIT on 10.0.0.1:9301, oldest 42s (stuck past 30s)",
		"00:16:54 cleared: leakysrv[15120]: no more CLOSE_WAIT on 10.0.0.1:9301 (was 3)",
		"00:16:54 cleared: at most 10 in TIME_WAIT toward 10.9.9.9 (was 12)",
	}
	// Groups of one walk come in map order: compare as sets per second.
	if !sameLines(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func sameLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// An incident record with every field decodes strictly into the schema's
// type and encodes back the same.
func TestRecordSchema(t *testing.T) {
	var buf bytes.Buffer
	n := NewNDJSON(&buf)
	n.Line(&Line{TS: time.Date(2026, 12, 1, 10, 0, 5, 0, time.UTC), State: event.SynRecv, Netns: 7, Count: 3, Oldest: time.Second, OldestAtLeast: true,
		OwnerKnown: true, PID: 9, Comm: comm("nginx"), Local: netip.MustParseAddrPort("10.0.0.1:443"),
		Remote: netip.MustParseAddrPort("10.0.0.2:5"), RemotePrefix: netip.MustParsePrefix("192.0.2.0/24"), LimitNs: 3e9, PileLimit: 10, Cleared: true})
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	v, err := record.DecodeStrict(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := record.Encode(v)
	if !bytes.Equal(again, buf.Bytes()) {
		t.Errorf("round trip:\n%s\n%s", again, buf.Bytes())
	}
	// Every field of the type is shown.
	rt := reflect.TypeOf(record.Incident{})
	for i := range rt.NumField() {
		tag := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		if tag != "" && !bytes.Contains(buf.Bytes(), []byte(`"`+tag+`":`)) {
			t.Errorf("field %s not shown: %s", tag, buf.Bytes())
		}
	}
}
