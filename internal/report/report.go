// Package report turns a recording into one self-contained HTML page:
// per-state dwell histograms on a log time axis, the state counts over time
// as measured samples, the owners of the troubled states, a waterfall of
// the longest and the stuck connections on a wall-clock axis, and each
// listener's queues over time. Charts are inline SVG with <title> hover
// details; the page fetches nothing.
//
// The collector keeps a bounded picture: every connection adds to a few
// counters, but only the longest and the stuck ones are kept whole, so a
// recording of millions of connections renders a page of the same size.
package report

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/recording"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// Slowest is how many of the longest connections the waterfall shows;
// MaxStuckRows bounds the stuck ones it shows besides them (the most aged
// first). Everything else is counted in the waterfall's aggregate strip.
const (
	Slowest      = 30
	MaxStuckRows = 30
)

func troubled(s event.State) bool { return slices.Contains(event.Troubled, s) }

// Collector is a pipeline.Sink that keeps what the page shows.
type Collector struct {
	clock event.Clock
	hists pipeline.Histograms
	since time.Time
	until time.Time
	conns []conn // the Slowest longest, and every stuck one
	stuck map[uint64]stuckInfo
	// stuckOrder keeps the stuck connections in the order reported.
	stuckOrder []uint64
	halfOpen   []stuckInfo // listeners' half-open piles
	series     []sample
	stats      struct{ transitions, connections uint64 }

	// Every connection: when it lived (for the aggregate strip) and how
	// long (for its quantiles).
	lived     [][2]event.Mono
	durations histogram.Histogram

	// Owners of the troubled states: per state, per process and per
	// remote host. stays maps a connection's troubled stay to the rows it
	// was counted in, so that a stuck record of the same stay is not
	// counted twice.
	byOwner  [event.NumStates]map[string]*tally
	byRemote [event.NumStates]map[string]*tally
	stays    map[stayKey]stayRows

	listeners     map[listenerKey]*listenerSeries
	listenerOrder []listenerKey

	// The verdict (verdict.go): connections still open at the end by
	// state and holder, the open stays per state, and what the replay
	// counted of the recording.
	open      map[openKey]uint64
	openStays [event.NumStates]openStays
	recorded  recording.Summary
}

type conn struct {
	timeline.Conn
	States []timeline.Span // copied: the sink's Conn is reused
}

type stuckInfo struct {
	TS       time.Time
	State    event.State
	Age      uint64
	AtLeast  bool
	Conn     timeline.Conn
	Owner    string // who holds it (or the traced owner)
	Creator  string // the traced owner, when it differs
	Orphan   bool   // looked up, and no process holds it
	Holders  int
	HalfOpen uint32
	// AtEnd: still in State when the recording ended (its connection
	// record was written open, in that state); EndAge: its age then.
	AtEnd  bool
	EndAge uint64
}

type sample struct {
	TS     time.Time
	Counts [event.NumStates]uint64
}

type stayKey struct {
	cookie uint64
	state  event.State
}

type stayRows struct{ owner, remote *tally }

// tally is one row of the owners table.
type tally struct {
	Name           string
	Stays, Stuck   uint64
	Longest        uint64
	LongestAtLeast bool
	ports          map[uint16]bool // remote rows: the remote ports seen (up to a few)
}

type listenerKey struct {
	netns       uint32
	netnsCookie uint64 // the namespace's identity: its inode is reused
	addr        netip.AddrPort
}

type listenerSeries struct {
	key     listenerKey
	owner   string
	samples []listenerSample
}

type listenerSample struct {
	TS                               time.Time
	AcceptQueue, AcceptMax, HalfOpen uint32
	SynAckRetrans                    uint32
}

// NewCollector returns a collector for records replayed with clock.
func NewCollector(clock event.Clock) *Collector {
	c := &Collector{clock: clock, stuck: map[uint64]stuckInfo{}, stays: map[stayKey]stayRows{},
		listeners: map[listenerKey]*listenerSeries{}}
	for _, st := range event.Troubled {
		c.byOwner[st], c.byRemote[st] = map[string]*tally{}, map[string]*tally{}
	}
	return c
}

func (c *Collector) Transition(*event.Event) { c.stats.transitions++ }

func (c *Collector) Connection(tc *timeline.Conn) {
	c.stats.connections++
	c.countStays(tc)
	c.noteOpen(tc)
	if tc.Start == 0 || tc.End < tc.Start || listenerOnly(tc) {
		return
	}
	c.lived = append(c.lived, [2]event.Mono{tc.Start, tc.End})
	c.durations.Record(tc.End.Since(tc.Start))
	cp := conn{Conn: *tc, States: slices.Clone(tc.States)}
	c.conns = append(c.conns, cp)
	if len(c.conns) > 4*Slowest { // keep memory bounded: trim to the longest
		c.trim()
	}
}

// listenerOnly: a listening socket's timeline, not a connection's; its
// queues have their own charts.
func listenerOnly(tc *timeline.Conn) bool {
	for _, sp := range tc.States {
		if sp.State != event.Listen && sp.State != event.Close {
			return false
		}
	}
	return len(tc.States) > 0
}

// countStays adds a connection's troubled stays to the owners table.
func (c *Collector) countStays(tc *timeline.Conn) {
	who := ownerName(tc.OwnerKnown, tc.PID, &tc.Comm)
	for j, sp := range tc.States {
		if !troubled(sp.State) {
			continue
		}
		// The stay as the histograms count it; one not ended (open, or
		// inferred) or of unknown length: held from its start so far.
		var held uint64
		if d, ok := tc.Stay(j); ok {
			held = uint64(d)
		} else if sp.Enter != 0 {
			held = spanEnd(tc, tc.States, j).Since(sp.Enter)
		}
		k := stayKey{tc.Cookie, sp.State}
		if _, seen := c.stays[k]; seen {
			continue
		}
		rows := stayRows{owner: c.row(c.byOwner[sp.State], who), remote: c.remoteRow(sp.State, tc.Dst)}
		for _, t := range []*tally{rows.owner, rows.remote} {
			t.Stays++
			t.Longest = max(t.Longest, held)
		}
		c.stays[k] = rows
	}
}

func (c *Collector) row(m map[string]*tally, name string) *tally {
	t := m[name]
	if t == nil {
		t = &tally{Name: name}
		m[name] = t
	}
	return t
}

// remoteRow is the row of a remote host: its address, with the ports seen
// named when there are few.
func (c *Collector) remoteRow(st event.State, dst netip.AddrPort) *tally {
	t := c.row(c.byRemote[st], dst.Addr().String())
	if t.ports == nil {
		t.ports = map[uint16]bool{}
	}
	if len(t.ports) <= 3 {
		t.ports[dst.Port()] = true
	}
	return t
}

// spanEnd is when states[j] was left: the next span's start, else the
// connection's end.
func spanEnd(tc *timeline.Conn, states []timeline.Span, j int) event.Mono {
	if j+1 < len(states) && states[j+1].Enter != 0 {
		return states[j+1].Enter
	}
	return tc.End
}

func (c *Collector) trim() {
	slices.SortFunc(c.conns, func(a, b conn) int { return int64cmp(dur(b), dur(a)) })
	keep := c.conns[:0]
	for i, x := range c.conns {
		if _, stuck := c.stuck[x.Cookie]; i < Slowest || stuck {
			keep = append(keep, x)
		}
	}
	c.conns = keep
}

func dur(x conn) int64 { return int64(x.End - x.Start) }

func int64cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *Collector) Histograms(ts, since time.Time, h *pipeline.Histograms, _ *pipeline.Untimed) {
	c.hists, c.since, c.until = *h, since, ts
}

func (c *Collector) States(ts time.Time, counts *[event.NumStates]uint64) {
	c.series = append(c.series, sample{TS: ts, Counts: *counts})
}

func (c *Collector) Stuck(s *pipeline.Stuck) {
	tc := s.Conn
	pid, comm, known, creator := s.Owner()
	si := stuckInfo{TS: s.TS, State: s.State, Age: s.Age, AtLeast: s.AtLeast, Conn: *tc,
		Owner: ownerName(known, pid, comm), Orphan: s.HoldersKnown && len(s.Holders) == 0,
		Holders: len(s.Holders), HalfOpen: s.HalfOpen}
	if creator != nil {
		si.Creator = ownerName(true, creator.PID, &creator.Comm)
	}
	if s.HalfOpen > 0 {
		c.halfOpen = append(c.halfOpen, si)
		return
	}
	if _, seen := c.stuck[tc.Cookie]; !seen {
		c.stuckOrder = append(c.stuckOrder, tc.Cookie)
	}
	c.stuck[tc.Cookie] = si
}

func (c *Collector) Lost(*pipeline.Lost)   {}
func (c *Collector) Stats(*pipeline.Stats) {}

// Listener keeps a listener's queues. A sample at the time of the last
// one kept is a repeat, and dropped.
func (c *Collector) Listener(ts time.Time, l *pipeline.Listener) {
	k := listenerKey{l.Netns, l.NetnsCookie, l.Addr}
	ls := c.listeners[k]
	if ls == nil {
		ls = &listenerSeries{key: k}
		c.listeners[k] = ls
		c.listenerOrder = append(c.listenerOrder, k)
	}
	if n := len(ls.samples); n > 0 && ls.samples[n-1].TS.Equal(ts) {
		return
	}
	if l.OwnerKnown {
		ls.owner = ownerName(true, l.PID, &l.Comm)
	}
	ls.samples = append(ls.samples, listenerSample{TS: ts, AcceptQueue: l.AcceptQueue,
		AcceptMax: l.AcceptQueueMax, HalfOpen: l.HalfOpen, SynAckRetrans: l.SynAckRetrans})
}

func (c *Collector) Flush() error             { return nil }
func (c *Collector) Redirect(io.Writer) error { return nil }

func ownerName(known bool, pid uint32, comm *[16]byte) string {
	if !known {
		return "(owner unknown)"
	}
	return fmt.Sprintf("%d/%s", pid, event.CommBytes(comm))
}

// Progress, Pile and Cleared are not on the page yet.
func (c *Collector) Progress(*pipeline.Progress) {}
func (c *Collector) Pile(*pipeline.Pile)         {}
func (c *Collector) Cleared(*pipeline.Cleared)   {}
