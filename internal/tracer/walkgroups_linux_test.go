//go:build linux

package tracer

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/probe"
)

// A periodic walk that counts idle connections and TIME_WAIT sockets in
// the kernel (event.WalkDetail) finds what a walk of every socket finds,
// and what ss shows: per state the same number, TIME_WAIT by its
// destination, and the states it writes one by one as records of their
// own. 300 held connections (600 ESTABLISHED sockets), 200 connections
// closed by their client (200 TIME_WAIT toward one server), 2 listeners.
func TestGroupedWalkCountsWhatEveryWalkFinds(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	const held, closed = 300, 200
	leak := ns.Start(t, "leak", "127.0.0.1:7431", fmt.Sprint(held))
	hold := ns.Start(t, "hold", "127.0.0.1:7431", fmt.Sprint(held), "10m")
	if l := hold.Line(); l != "connected" {
		t.Fatalf("hold: %q", l)
	}
	if l := leak.Line(); l != "accepted" {
		t.Fatalf("leak: %q", l)
	}
	server := ns.Start(t, "server", "127.0.0.1:7432", fmt.Sprint(closed), "0s")
	client := ns.Start(t, "client", "127.0.0.1:7432", fmt.Sprint(closed))
	if l := client.Line(); l != "done" {
		t.Fatalf("client: %q", l)
	}
	client.Wait()
	server.Wait()

	cfg := config.Defaults()
	cfg.Netns = ns.Inode
	paths := []string{"/run/netns/" + ns.Name}
	p, err := probe.Load(probe.Options{Config: cfg, NetnsPaths: paths})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	type tally struct {
		counts  [event.NumStates]uint64
		records [event.NumStates]int
		groups  int
		tw      map[netip.AddrPort]uint64
	}
	walk := func(d event.WalkDetail) tally {
		t.Helper()
		b, err := p.Sockets(paths, d)
		if err != nil {
			t.Fatal(err)
		}
		got := tally{tw: map[netip.AddrPort]uint64{}}
		if err := event.SplitSockets(b, func(s *event.Socket) {
			got.counts[s.State] += uint64(s.Count)
			if s.Count > 1 || s.Cookie == 0 && s.State != event.TimeWait {
				got.groups++
			} else {
				got.records[s.State]++
			}
			if s.State == event.TimeWait {
				got.tw[s.Dst] += uint64(s.Count)
			}
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	every := walk(event.WalkAll)
	grouped := walk(event.WalkDetail{}.With(event.Listen))
	again := walk(event.WalkDetail{}.With(event.Listen)) // the groups counted afresh, not added to

	ss := ns.SSStates(t)
	t.Logf("ss: %v", ss)
	for _, c := range []struct {
		st   event.State
		ss   string
		want uint64
	}{{event.Established, "ESTAB", 2 * held}, {event.TimeWait, "TIME-WAIT", closed}, {event.Listen, "LISTEN", 1}} {
		for name, w := range map[string]tally{"every": every, "grouped": grouped, "again": again} {
			if w.counts[c.st] != c.want || ss[c.ss] != c.want {
				t.Errorf("%s walk: %v %d, ss %d, want %d", name, c.st, w.counts[c.st], ss[c.ss], c.want)
			}
		}
	}
	if every.counts != grouped.counts {
		t.Errorf("per state: every socket %v, grouped %v", every.counts, grouped.counts)
	}
	if every.groups != 0 {
		t.Errorf("a walk of every socket wrote %d groups", every.groups)
	}
	if grouped.records[event.Established] != 0 || grouped.records[event.Listen] != 1 {
		t.Errorf("grouped walk: %d ESTABLISHED records (want 0: counted), %d LISTEN (want 1)",
			grouped.records[event.Established], grouped.records[event.Listen])
	}
	dst := netip.MustParseAddrPort("127.0.0.1:7432")
	if grouped.tw[dst] != closed || len(grouped.tw) != 1 {
		t.Errorf("TIME_WAIT by destination: %v, want %d toward %v", grouped.tw, closed, dst)
	}
	if grouped.groups > 4 {
		t.Errorf("grouped walk: %d groups, want one per state and destination", grouped.groups)
	}
}
