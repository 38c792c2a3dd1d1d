//go:build linux

// Package top is the live view: a sink that aggregates what the tracer
// emits into a model (this file, pure, no terminal), a renderer that
// turns a snapshot of it into a screen of text (render.go), and the
// bubbletea program that shows it every second (ui.go).
package top

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// troubledIndex maps a socket's state to its column in event.Troubled,
// -1 for the others.
func troubledIndex(s event.State) int {
	if s == event.NewSynRecv {
		s = event.SynRecv
	}
	return slices.Index(event.Troubled, s)
}

// historyLen is how many walks the sparklines remember (five minutes at
// one walk a second).
const historyLen = 300

// maxStuck bounds the stuck rows kept.
const maxStuck = 200

// Model aggregates a run's records. It is a pipeline.SocketSink; the
// tracer calls it from its goroutine and the view takes Snapshots from
// another, so every method locks.
type Model struct {
	mu    sync.Mutex
	clock event.Clock
	start time.Time

	counts  [event.NumStates]uint64
	history [][event.NumStates]uint64 // oldest first
	// interval collects the stays ended since the last walk; last is the
	// previous interval's; total is the tracer's cumulative histograms.
	interval, last, total pipeline.Histograms

	// entered: open sockets by cookie, the state they are in and since
	// when (from transitions); tw: TIME_WAIT sockets (no cookie in a
	// walk) by address, from their full socket's close.
	entered map[uint64]entry
	tw      map[addrKey]entry
	// firstSeen: sockets in a state whose entry was not seen (older than
	// the tracer, or entered before the transition was traced): ages
	// count from the first walk that found them.
	firstSeen map[sockKey]time.Time

	socks     []sock // troubled sockets of the last walk
	inWalk    map[uint64]event.State
	listeners []pipeline.Listener
	stuck     []StuckRow // oldest first
	lost      pipeline.Lost
	walks     uint64
	lastWalk  time.Time
	log       []string
	// span: the namespaces the last walk's tally spans; Filters: the
	// tracing filters in force (config.Filters), for the header.
	span    []uint32
	Filters string
	// Netns: the one namespace traced (--netns), 0: all.
	Netns uint32
}

// Span takes the namespaces the next walk's tally spans
// (pipeline.SpanSink).
func (m *Model) Span(namespaces []uint32) {
	m.mu.Lock()
	m.span = append(m.span[:0], namespaces...)
	m.mu.Unlock()
}

type entry struct {
	state      event.State
	since      time.Time
	pid        uint32
	comm       [16]byte
	ownerKnown bool
}

type addrKey struct {
	netns       uint32
	netnsCookie uint64 // the namespace's identity: its inode is reused
	src, dst    netip.AddrPort
}

type sockKey struct {
	addrKey
	state event.State
}

// sock is one troubled socket of the last walk.
type sock struct {
	state      event.State // NEW_SYN_RECV folded into SYN_RECV
	dst        netip.AddrPort
	pid        uint32
	comm       [16]byte
	ownerKnown bool
	since      time.Time
	atLeast    bool // since is when first seen, not when entered
}

// New returns an empty model; clock converts kernel timestamps, start is
// when tracing began.
func New(clock event.Clock, start time.Time) *Model {
	return &Model{clock: clock, start: start, entered: map[uint64]entry{}, tw: map[addrKey]entry{},
		firstSeen: map[sockKey]time.Time{}, inWalk: map[uint64]event.State{}}
}

// Transition keeps the socket's current state and its entry time, and
// the stay it ended for the interval's dwell percentiles.
func (m *Model) Transition(e *event.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := m.clock.Wall(e.Mono)
	if stay, ok := e.Stay(); ok {
		m.interval[e.Old].Record(uint64(stay))
	}
	en := entry{state: e.New, since: ts, pid: e.PID, comm: e.Comm, ownerKnown: e.Has(event.OwnerKnown)}
	if e.New != event.Close {
		if e.New == e.Old {
			return // a repeated set: no new stay
		}
		m.entered[e.Cookie] = en
		return
	}
	delete(m.entered, e.Cookie)
	// A closed socket lives on as a timewait socket (no cookie in a
	// walk) in TIME_WAIT, or FIN_WAIT2 for an orphan.
	switch e.TW {
	case event.TWTimeWait:
		en.state = event.TimeWait
		m.tw[addrKey{e.Netns, e.NetnsCookie, e.Src, e.Dst}] = en
	case event.TWFinWait2:
		en.state = event.FinWait2
		m.tw[addrKey{e.Netns, e.NetnsCookie, e.Src, e.Dst}] = en
	}
}

// Connection forgets a closed connection (its CLOSE transition did
// already, unless it was filtered).
func (m *Model) Connection(c *timeline.Conn) {
	if c.Open {
		return
	}
	m.mu.Lock()
	delete(m.entered, c.Cookie)
	m.mu.Unlock()
}

// Histograms keeps the tracer's cumulative dwell histograms.
func (m *Model) Histograms(_, _ time.Time, h *pipeline.Histograms, _ *pipeline.Untimed) {
	m.mu.Lock()
	m.total = *h
	m.mu.Unlock()
}

// Lost keeps the totals: the view always shows them.
func (m *Model) Lost(l *pipeline.Lost) {
	m.mu.Lock()
	m.lost = *l
	m.mu.Unlock()
}

func (m *Model) Stats(*pipeline.Stats) {}

// States starts a walk: the counts join the history and the interval's
// stays become the last interval's.
func (m *Model) States(ts time.Time, counts *[event.NumStates]uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts = *counts
	if len(m.history) == historyLen {
		copy(m.history, m.history[1:])
		m.history = m.history[:historyLen-1]
	}
	m.history = append(m.history, *counts)
	m.last = m.interval
	m.interval = pipeline.Histograms{}
	m.listeners = m.listeners[:0]
	m.walks++
	m.lastWalk = ts
}

// Sockets takes the walk's sockets: the troubled ones with their owner
// and age, for the holder tables.
func (m *Model) Sockets(ts time.Time, socks []event.Socket) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.socks = m.socks[:0]
	clear(m.inWalk)
	seen := map[sockKey]bool{}
	live := map[addrKey]bool{}
	type portKey struct {
		netns       uint32
		netnsCookie uint64
		port        uint16
	}
	listeners := map[portKey]*event.Socket{}
	for i := range socks {
		if s := &socks[i]; s.State == event.Listen && s.OwnerKnown {
			listeners[portKey{s.Netns, s.NetnsCookie, s.Src.Port()}] = s
		}
	}
	for i := range socks {
		s := &socks[i]
		if s.Cookie != 0 {
			m.inWalk[s.Cookie] = s.State
		}
		ti := troubledIndex(s.State)
		if ti < 0 {
			continue
		}
		k := sockKey{addrKey{s.Netns, s.NetnsCookie, s.Src, s.Dst}, event.Troubled[ti]}
		x := sock{state: event.Troubled[ti], dst: s.Dst, pid: s.PID, comm: s.Comm, ownerKnown: s.OwnerKnown}
		en, entered := m.entered[s.Cookie]
		tw, isTW := m.tw[k.addrKey]
		switch l := listeners[portKey{s.Netns, s.NetnsCookie, s.Src.Port()}]; {
		case x.ownerKnown:
		case s.State == event.NewSynRecv && l != nil: // a handshake for the listener's owner
			x.pid, x.comm, x.ownerKnown = l.PID, l.Comm, true
		case entered && en.ownerKnown: // an orphan: the owner it had
			x.pid, x.comm, x.ownerKnown = en.pid, en.comm, true
		}
		switch {
		case s.SynAck != 0: // a request socket: its handshake began then
			x.since = m.clock.Wall(s.SynAck)
		case s.Cookie != 0 && entered && troubledIndex(en.state) == ti:
			x.since = en.since
		case s.Cookie == 0 && isTW && tw.state == s.State:
			live[k.addrKey] = true
			x.since = tw.since
			if !x.ownerKnown && tw.ownerKnown { // the closer that left it
				x.pid, x.comm, x.ownerKnown = tw.pid, tw.comm, true
			}
		default:
			first, ok := m.firstSeen[k]
			if !ok {
				first = ts
				// Older than the tracer: the kernel's lower bound of its
				// time in the state, when it holds one (event.AgeSource).
				if s.AgeSource > event.AgeFirstSeen && s.StateAge > 0 {
					first = ts.Add(-time.Duration(s.StateAge))
				}
				m.firstSeen[k] = first
			}
			seen[k] = true
			x.since, x.atLeast = first, true
		}
		m.socks = append(m.socks, x)
	}
	for k := range m.firstSeen {
		if !seen[k] {
			delete(m.firstSeen, k)
		}
	}
	// Forget what the walk no longer has; a transition newer than the
	// walk may not be in it yet.
	for k, en := range m.tw {
		if !live[k] && ts.Sub(en.since) > 2*time.Second {
			delete(m.tw, k)
		}
	}
	for c, en := range m.entered {
		if _, ok := m.inWalk[c]; !ok && ts.Sub(en.since) > 2*time.Second {
			delete(m.entered, c)
		}
	}
}

// Stuck keeps the stuck record.
func (m *Model) Stuck(s *pipeline.Stuck) {
	pid, comm, known, _ := s.Owner()
	r := StuckRow{TS: s.TS, State: s.State, Age: time.Duration(s.Age), AtLeast: s.AtLeast,
		Src: s.Conn.Src, Dst: s.Conn.Dst, Cookie: s.Conn.Cookie, HalfOpen: s.HalfOpen, Owner: "?"}
	if known {
		r.Owner = fmt.Sprintf("%d/%s", pid, event.CommBytes(comm))
	} else if s.HoldersKnown {
		r.Owner = "no process (orphan)"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.stuck) == maxStuck {
		m.stuck = slices.Delete(m.stuck, 0, 1)
	}
	m.stuck = append(m.stuck, r)
}

// Listener keeps the listeners of the current walk.
func (m *Model) Listener(_ time.Time, l *pipeline.Listener) {
	m.mu.Lock()
	m.listeners = append(m.listeners, *l)
	m.mu.Unlock()
}

func (m *Model) Flush() error             { return nil }
func (m *Model) Redirect(io.Writer) error { return nil }

// Logf keeps a status line (the tracer's stderr) for the view's footer.
func (m *Model) Logf(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log = append(m.log, strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; "))
	if len(m.log) > 20 {
		m.log = m.log[len(m.log)-20:]
	}
}

// SortKey orders the holder tables.
type SortKey int

const (
	SortCount SortKey = iota // most troubled sockets first
	SortAge                  // oldest socket first
	SortName                 // by owner or address
	numSortKeys
)

func (k SortKey) String() string { return [...]string{"count", "age", "name"}[k] }

// Next cycles through the sort keys.
func (k SortKey) Next() SortKey { return (k + 1) % numSortKeys }

// Options are the view's choices: how to sort, which troubled state to
// show (0: all of them).
type Options struct {
	Sort   SortKey
	Filter event.State
}

// NextFilter cycles the state filter: all, then each troubled state.
func NextFilter(f event.State) event.State {
	i := slices.Index(event.Troubled, f)
	if i+1 == len(event.Troubled) {
		return 0
	}
	return event.Troubled[i+1]
}

// View is a snapshot of the model, ready to render.
type View struct {
	Now, Start time.Time
	Options    Options
	Walks      uint64
	Counts     [event.NumStates]uint64
	History    [][event.NumStates]uint64
	Dwell      []DwellRow
	Processes  []HolderRow
	Remotes    []HolderRow
	Stuck      []StuckRow // newest first
	Listeners  []pipeline.Listener
	Lost       pipeline.Lost
	Log        []string
	// Namespaces: those the tally spans; Filters: the tracing filters.
	Namespaces []uint32
	Filters    string
}

// DwellRow is one state's dwell percentiles over the last interval and
// since start.
type DwellRow struct {
	State           event.State
	Last, Total     uint64 // stays counted
	LastQ, TotalQ   [3]time.Duration
	LastOK, TotalOK bool
}

// HolderRow is one owner or remote address and its troubled sockets.
type HolderRow struct {
	Name    string
	Counts  [5]uint64 // indexed like event.Troubled
	Total   uint64
	Oldest  time.Duration
	AtLeast bool // the oldest is older than Oldest (seen before its entry)
}

// StuckRow is one stuck record; Still says whether the socket is still
// in that state at the last walk, and Now is its age then.
type StuckRow struct {
	TS       time.Time
	State    event.State
	Age      time.Duration
	AtLeast  bool
	Src, Dst netip.AddrPort
	Cookie   uint64
	HalfOpen uint32
	Owner    string
	Still    bool
	Now      time.Duration
}

// Snapshot returns the view at now.
func (m *Model) Snapshot(now time.Time, o Options) *View {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &View{Now: now, Start: m.start, Options: o, Walks: m.walks, Counts: m.counts,
		History: slices.Clone(m.history), Lost: m.lost, Listeners: slices.Clone(m.listeners),
		Log: slices.Clone(m.log), Namespaces: slices.Clone(m.span), Filters: m.Filters}
	if m.Netns != 0 {
		v.Namespaces = []uint32{m.Netns} // the one traced, sockets or not
	}
	for s := event.State(1); s < event.NumStates; s++ {
		r := DwellRow{State: s, Last: m.last[s].Count(), Total: m.total[s].Count()}
		r.LastQ, r.LastOK = quantiles(&m.last[s])
		r.TotalQ, r.TotalOK = quantiles(&m.total[s])
		if r.LastOK || r.TotalOK {
			v.Dwell = append(v.Dwell, r)
		}
	}
	procs, remotes := map[string]*HolderRow{}, map[string]*HolderRow{}
	remotePorts := map[string]map[uint16]bool{}
	for i := range m.socks {
		s := &m.socks[i]
		if o.Filter != 0 && s.state != o.Filter {
			continue
		}
		name := "?"
		if s.ownerKnown {
			name = fmt.Sprintf("%d/%s", s.pid, event.CommBytes(&s.comm))
		}
		ip := s.dst.Addr().String()
		if remotePorts[ip] == nil {
			remotePorts[ip] = map[uint16]bool{}
		}
		remotePorts[ip][s.dst.Port()] = true
		age := now.Sub(s.since)
		for _, g := range []struct {
			rows map[string]*HolderRow
			key  string
		}{{procs, name}, {remotes, ip}} {
			r := g.rows[g.key]
			if r == nil {
				r = &HolderRow{Name: g.key}
				g.rows[g.key] = r
			}
			r.Counts[troubledIndex(s.state)]++
			r.Total++
			if age > r.Oldest {
				r.Oldest, r.AtLeast = age, s.atLeast
			}
		}
	}
	for ip, r := range remotes {
		if ports := remotePorts[ip]; len(ports) == 1 {
			for p := range ports {
				r.Name = netip.AddrPortFrom(netip.MustParseAddr(ip), p).String()
			}
		}
	}
	v.Processes, v.Remotes = sorted(procs, o.Sort), sorted(remotes, o.Sort)
	for i := len(m.stuck) - 1; i >= 0; i-- {
		r := m.stuck[i]
		if o.Filter != 0 && r.State != o.Filter && !(o.Filter == event.SynRecv && r.State == event.NewSynRecv) {
			continue
		}
		if st, ok := m.inWalk[r.Cookie]; ok && r.HalfOpen == 0 && st == r.State {
			r.Still, r.Now = true, r.Age+now.Sub(r.TS)
		}
		v.Stuck = append(v.Stuck, r)
	}
	return v
}

func quantiles(h *histogram.Histogram) (q [3]time.Duration, ok bool) {
	if h.Count() == 0 {
		return q, false
	}
	for i, p := range []float64{.5, .9, .99} {
		q[i] = time.Duration(h.Quantile(p))
	}
	return q, true
}

func sorted(rows map[string]*HolderRow, k SortKey) []HolderRow {
	out := make([]HolderRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b HolderRow) int {
		var c int
		switch k {
		case SortCount:
			c = cmp.Compare(b.Total, a.Total)
		case SortAge:
			c = cmp.Compare(b.Oldest, a.Oldest)
		}
		return cmp.Or(c, cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Progress, Pile and Cleared: the live view shows the sockets of each
// walk itself (Sockets); these records add nothing to it yet.
func (m *Model) Progress(*pipeline.Progress) {}
func (m *Model) Pile(*pipeline.Pile)         {}
func (m *Model) Cleared(*pipeline.Cleared)   {}
