package report

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/recording"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// The verdict is the page's first answer: what is stuck and by whom,
// what was still open when the recording ended, and what the recording
// lost. Then come who holds what, the waterfall and the histograms.

// openKey groups the connections still open at the end.
type openKey struct {
	state event.State
	owner string
}

// openStays are the stays a recording ended in, per state: the
// histograms leave them out (their end is not known).
type openStays struct {
	n       uint64
	longest uint64 // ns held so far, the longest
}

// noteOpen counts a connection still open at the end of the recording.
func (c *Collector) noteOpen(tc *timeline.Conn) {
	if !tc.Open || len(tc.States) == 0 || listenerOnly(tc) {
		return
	}
	last := &tc.States[len(tc.States)-1]
	if si, ok := c.stuck[tc.Cookie]; ok && si.State == last.State {
		si.AtEnd = true
		si.EndAge = si.Age
		if last.DwellKnown && !si.AtLeast {
			si.EndAge = max(si.Age, last.Dwell)
		} else if end := c.clock.Wall(tc.End); end.After(si.TS) {
			si.EndAge = si.Age + uint64(end.Sub(si.TS))
		}
		c.stuck[tc.Cookie] = si
	}
	if c.open == nil {
		c.open = map[openKey]uint64{}
	}
	c.open[openKey{last.State, ownerName(tc.OwnerKnown, tc.PID, &tc.Comm)}]++
	o := &c.openStays[last.State]
	o.n++
	if last.DwellKnown {
		o.longest = max(o.longest, last.Dwell)
	}
}

// Recorded takes what the replay counted of the recording (its lost
// records, its bad lines) for the verdict and the header.
func (c *Collector) Recorded(s recording.Summary) { c.recorded = s }

// verdictView is the verdict section.
type verdictView struct {
	Stuck []string // one line per group: state, count, holder, where, oldest
	Open  []string // still open at the end, troubled states first
	Lost  string
	Clean bool // nothing stuck, nothing lost
}

// stuckGroup is the stuck reports of one state, holder and local address.
type stuckGroup struct {
	state    event.State
	owner    string
	where    string
	n, atEnd int
	oldest   uint64
	atLeast  bool
}

func (c *Collector) verdict() verdictView {
	var v verdictView
	groups := map[[3]string]*stuckGroup{}
	var order [][3]string
	for _, ck := range c.stuckOrder {
		s := c.stuck[ck]
		where := s.Conn.Src.String()
		if s.State == event.SynSent {
			where = "to " + s.Conn.Dst.String()
		} else {
			where = "on " + where
		}
		k := [3]string{s.State.String(), s.Owner, where}
		age := s.Age
		if s.AtEnd {
			age = s.EndAge
		}
		g := groups[k]
		if g == nil {
			g = &stuckGroup{state: s.State, owner: s.Owner, where: where}
			groups[k] = g
			order = append(order, k)
		}
		g.n++
		if s.AtEnd {
			g.atEnd++
		}
		if age > g.oldest {
			g.oldest, g.atLeast = age, s.AtLeast
		}
	}
	slices.SortStableFunc(order, func(a, b [3]string) int { return cmp.Compare(groups[b].n, groups[a].n) })
	for _, k := range order {
		g := groups[k]
		still := "none still there at the end"
		switch {
		case g.atEnd == g.n:
			still = "all still there at the end"
		case g.atEnd > 0:
			still = fmt.Sprintf("%d still there at the end", g.atEnd)
		}
		v.Stuck = append(v.Stuck, fmt.Sprintf("%s: %d in %s %s, %s, oldest %s", g.owner, g.n, g.state, g.where, still, ageText(g.oldest, g.atLeast)))
	}
	for _, h := range c.halfOpen {
		v.Stuck = append(v.Stuck, fmt.Sprintf("%s: %d half-open handshakes (SYN_RECV) on listener %s, oldest %s",
			h.Owner, h.HalfOpen, h.Conn.Src, output.FormatDuration(h.Age)))
	}
	keys := make([]openKey, 0, len(c.open))
	for k := range c.open {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b openKey) int {
		return cmp.Or(cmp.Compare(b2i(!troubled(a.state)), b2i(!troubled(b.state))), cmp.Compare(c.open[b], c.open[a]),
			cmp.Compare(a.state, b.state), strings.Compare(a.owner, b.owner))
	})
	for _, k := range keys {
		v.Open = append(v.Open, fmt.Sprintf("%d in %s held by %s", c.open[k], k.state, k.owner))
	}
	switch s := c.recorded; {
	case s.Lost > 0:
		v.Lost = fmt.Sprintf("The tracer lost %d transitions while recording (lost records): counts, timelines and histograms lack them.", s.Lost)
	case s.Reclaimed == 0:
		v.Lost = "Nothing was lost: the recording has no lost record."
	}
	if s := c.recorded; s.Reclaimed > 0 {
		v.Lost = strings.TrimSpace(v.Lost + fmt.Sprintf(" The kernel's connection table was full (--max-conns): %d sockets lost part of their timelines (their connection records are partial).", s.Reclaimed))
	}
	if s := c.recorded; s.Bad > 0 {
		v.Lost += fmt.Sprintf(" %d lines of the file could not be read.", s.Bad)
	}
	v.Clean = len(v.Stuck) == 0 && c.recorded.Lost == 0 && c.recorded.Reclaimed == 0
	return v
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ageText(ns uint64, atLeast bool) string {
	s := output.FormatDuration(ns)
	if atLeast {
		return "≥" + s
	}
	return s
}

// holds says what the recording holds, each kind only when there is
// some: the header's first line.
func (c *Collector) holds() string {
	var parts []string
	add := func(n uint64, one, many string) {
		switch {
		case n == 1:
			parts = append(parts, "1 "+one)
		case n > 1:
			parts = append(parts, fmt.Sprintf("%d %s", n, many))
		}
	}
	add(c.stats.connections, "connection", "connections")
	add(c.stats.transitions, "transition", "transitions")
	add(uint64(len(c.series)), "states sample", "states samples")
	var ls uint64
	for _, l := range c.listeners {
		ls += uint64(len(l.samples))
	}
	add(ls, "listener sample", "listener samples")
	add(uint64(len(c.stuck)+len(c.halfOpen)), "stuck report", "stuck reports")
	add(c.recorded.Lost, "lost transition", "lost transitions")
	if len(parts) == 0 {
		return "nothing selected"
	}
	return strings.Join(parts, ", ")
}
