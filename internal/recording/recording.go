// Package recording reads what tcptrace-bpf wrote as NDJSON and replays
// it into the same sinks as a live run: the offline `analyze` command.
package recording

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// Filter selects records, as the live filters do.
type Filter struct {
	Ports        map[uint16]bool       // either end; empty: all
	States       [event.NumStates]bool // any set: only what concerns them
	Since, Until time.Time             // zero: open
}

// record holds the fields of any record type that analyze uses.
type record struct {
	Type      string     `json:"type"`
	TS        *time.Time `json:"ts"`
	Cookie    uint64     `json:"cookie"`
	Netns     uint32     `json:"netns"`
	Family    string     `json:"family"`
	Saddr     string     `json:"saddr"`
	Sport     uint16     `json:"sport"`
	Daddr     string     `json:"daddr"`
	Dport     uint16     `json:"dport"`
	Old       string     `json:"old"`
	New       string     `json:"new"`
	DwellNs   *uint64    `json:"dwell_ns"`
	PID       *uint32    `json:"pid"`
	Comm      string     `json:"comm"`
	Start     *time.Time `json:"start"`
	End       *time.Time `json:"end"`
	Open      bool       `json:"open"`
	Partial   bool       `json:"partial"`
	Handshk   *uint64    `json:"handshake_ns"`
	TimeWait  *bool      `json:"time_wait"`
	FW2TW     bool       `json:"fin_wait2_timewait"`
	Reset     string     `json:"reset"`
	Error     string     `json:"error"`
	OwnerFrom string     `json:"owner_from"`
	SynthCk   bool       `json:"cookie_synthetic"`
	States    []struct {
		State    string     `json:"state"`
		TS       *time.Time `json:"ts"`
		DwellNs  *uint64    `json:"dwell_ns"`
		Inferred bool       `json:"inferred"`
	} `json:"states"`
	Count      uint64            `json:"count"`
	State      string            `json:"state"`
	AgeNs      uint64            `json:"age_ns"`
	AgeAtLeast bool              `json:"age_at_least"`
	Counts     map[string]uint64 `json:"counts"`
}

// Summary counts what a replay read.
type Summary struct {
	Lines, Bad, Transitions, Connections, Lost uint64
	First, Last                                time.Time
}

// Replay reads NDJSON from r and writes the selected transitions and
// connections, then the dwell histograms rebuilt from the connections
// (from the transitions when the recording has no connections), to sink.
// A bad line is reported on warn with its number and skipped.
func Replay(r io.Reader, f Filter, sink output.Sink, warn io.Writer) (Summary, error) {
	var s Summary
	var hists, fromTransitions output.Histograms
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		s.Lines++
		var rec record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			s.Bad++
			fmt.Fprintf(warn, "tcptrace-bpf: line %d: not a record (%v); skipped\n", s.Lines, err)
			continue
		}
		if err := s.apply(&rec, f, sink, &hists, &fromTransitions); err != nil {
			s.Bad++
			fmt.Fprintf(warn, "tcptrace-bpf: line %d: %v; skipped\n", s.Lines, err)
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("line %d: %w", s.Lines+1, err)
	}
	if s.Connections == 0 {
		hists = fromTransitions
	}
	if !s.First.IsZero() {
		sink.Histograms(s.Last, s.First, &hists)
	}
	return s, sink.Flush()
}

func (s *Summary) seen(t time.Time) {
	if s.First.IsZero() || t.Before(s.First) {
		s.First = t
	}
	if t.After(s.Last) {
		s.Last = t
	}
}

func (f *Filter) keepTime(t time.Time) bool {
	return (f.Since.IsZero() || !t.Before(f.Since)) && (f.Until.IsZero() || !t.After(f.Until))
}

func (f *Filter) keepPorts(a, b uint16) bool { return len(f.Ports) == 0 || f.Ports[a] || f.Ports[b] }

func (f *Filter) stateFilter() bool {
	for _, on := range f.States {
		if on {
			return true
		}
	}
	return false
}

func (s *Summary) apply(rec *record, f Filter, sink output.Sink, hists, fromTrans *output.Histograms) error {
	switch rec.Type {
	case "transition":
		e, err := rec.event()
		if err != nil {
			return err
		}
		if !f.keepTime(*rec.TS) || !f.keepPorts(rec.Sport, rec.Dport) ||
			(f.stateFilter() && !f.States[e.Old] && !f.States[e.New]) {
			return nil
		}
		s.Transitions++
		s.seen(*rec.TS)
		sink.Transition(&e)
		if e.Has(event.DwellKnown) && e.Old != event.Close && e.Old != e.New && e.Old != event.SynRecv {
			fromTrans[e.Old].Record(uint64(e.Dwell))
		}
	case "connection":
		c, err := rec.conn()
		if err != nil {
			return err
		}
		if !f.keepTime(*rec.End) || !f.keepPorts(rec.Sport, rec.Dport) {
			return nil
		}
		through := !f.stateFilter()
		for _, sp := range c.States {
			through = through || f.States[sp.State]
		}
		if !through {
			return nil
		}
		s.Connections++
		s.seen(*rec.End)
		sink.Connection(c)
		for i, sp := range c.States {
			if sp.State == event.SynRecv && i+1 < len(c.States) && c.States[i+1].State == event.Established {
				if c.Ending.HandshakeKnown && (!f.stateFilter() || f.States[event.SynRecv]) {
					hists[event.SynRecv].Record(uint64(c.Ending.HandshakeMicros) * 1000)
				}
				continue
			}
			if sp.DwellKnown && !sp.Inferred && sp.State != event.Close && (i+1 < len(c.States) || !c.Open) &&
				(!f.stateFilter() || f.States[sp.State]) {
				hists[sp.State].Record(sp.Dwell)
			}
		}
	case "lost":
		s.Lost += rec.Count // reported in the summary
	case "states":
		if rec.TS == nil || !f.keepTime(*rec.TS) {
			return nil
		}
		var counts [event.NumStates]uint64
		for name, n := range rec.Counts {
			st, err := state(name)
			if err != nil {
				return err
			}
			if !f.stateFilter() || f.States[st] {
				counts[st] = n
			}
		}
		s.seen(*rec.TS)
		sink.States(*rec.TS, &counts)
	case "stuck":
		st, err := state(rec.State)
		if err != nil {
			return err
		}
		if rec.TS == nil || !f.keepTime(*rec.TS) || !f.keepPorts(rec.Sport, rec.Dport) ||
			(f.stateFilter() && !f.States[st]) {
			return nil
		}
		c := &timeline.Conn{Cookie: rec.Cookie, Netns: rec.Netns}
		if c.Src, c.Dst, c.Family, err = rec.endpoints(); err != nil {
			return err
		}
		if rec.PID != nil {
			c.PID, c.OwnerKnown = *rec.PID, true
			copy(c.Comm[:15], rec.Comm)
		}
		s.seen(*rec.TS)
		sink.Stuck(&output.Stuck{TS: *rec.TS, Conn: c, State: st, Age: rec.AgeNs, AtLeast: rec.AgeAtLeast})
	case "histogram", "stats", "listener":
		// Derived, or about the tracer: rebuilt or not needed offline.
	default:
		return fmt.Errorf("unknown record type %q", rec.Type)
	}
	return nil
}

func state(name string) (event.State, error) { return event.ParseState(name) }

func (rec *record) endpoints() (src, dst netip.AddrPort, fam event.Family, err error) {
	sa, err1 := netip.ParseAddr(rec.Saddr)
	da, err2 := netip.ParseAddr(rec.Daddr)
	if err1 != nil || err2 != nil {
		return src, dst, 0, fmt.Errorf("bad address %q or %q", rec.Saddr, rec.Daddr)
	}
	fam = event.IPv4
	if rec.Family == "inet6" {
		fam = event.IPv6
	}
	return netip.AddrPortFrom(sa, rec.Sport), netip.AddrPortFrom(da, rec.Dport), fam, nil
}

// event rebuilds a transition; Mono holds Unix nanoseconds (see Clock).
func (rec *record) event() (event.Event, error) {
	var e event.Event
	if rec.TS == nil {
		return e, fmt.Errorf("transition without ts")
	}
	var err error
	if e.Old, err = state(rec.Old); err != nil {
		return e, err
	}
	if e.New, err = state(rec.New); err != nil {
		return e, err
	}
	if e.Src, e.Dst, e.Family, err = rec.endpoints(); err != nil {
		return e, err
	}
	e.Mono, e.Cookie, e.Netns = uint64(rec.TS.UnixNano()), rec.Cookie, rec.Netns
	if rec.DwellNs != nil {
		e.Dwell, e.Flags = time.Duration(*rec.DwellNs), e.Flags|event.DwellKnown
	}
	if rec.PID != nil {
		e.PID, e.Flags = *rec.PID, e.Flags|event.OwnerKnown
		copy(e.Comm[:15], rec.Comm)
	}
	if rec.OwnerFrom == "listener" {
		e.Flags |= event.Inherited
	}
	if rec.SynthCk {
		e.Flags |= event.CookieSynth
	}
	if rec.TimeWait != nil { // the ending fields come together, on ->CLOSE
		e.Flags |= event.CloseInfo
		switch {
		case *rec.TimeWait:
			e.TW = event.TWTimeWait
		case rec.FW2TW:
			e.TW = event.TWFinWait2
		}
		e.Reset = resetBits(rec.Reset)
		if rec.Error != "" {
			e.Err = event.ErrnoByName(rec.Error)
		}
	}
	return e, nil
}

func resetBits(s string) uint8 {
	switch s {
	case "sent":
		return event.ResetSent
	case "received":
		return event.ResetReceived
	case "sent_and_received":
		return event.ResetSent | event.ResetReceived
	}
	return 0
}

// conn rebuilds a connection; times are Unix nanoseconds (see Clock).
func (rec *record) conn() (*timeline.Conn, error) {
	if rec.End == nil {
		return nil, fmt.Errorf("connection without end")
	}
	c := &timeline.Conn{Cookie: rec.Cookie, Netns: rec.Netns, Open: rec.Open, Partial: rec.Partial,
		End: uint64(rec.End.UnixNano())}
	var err error
	if c.Src, c.Dst, c.Family, err = rec.endpoints(); err != nil {
		return nil, err
	}
	if rec.Start != nil {
		c.Start = uint64(rec.Start.UnixNano())
	}
	if rec.PID != nil {
		c.PID, c.OwnerKnown = *rec.PID, true
		copy(c.Comm[:15], rec.Comm)
	}
	if rec.Handshk != nil {
		c.Ending.HandshakeKnown, c.Ending.HandshakeMicros = true, uint32(*rec.Handshk/1000)
	}
	for _, sp := range rec.States {
		st, err := state(sp.State)
		if err != nil {
			return nil, err
		}
		span := timeline.Span{State: st, Inferred: sp.Inferred}
		if sp.TS != nil {
			span.Enter = uint64(sp.TS.UnixNano())
		}
		if sp.DwellNs != nil {
			span.Dwell, span.DwellKnown = *sp.DwellNs, true
		}
		c.States = append(c.States, span)
	}
	return c, nil
}

// Clock is the clock of replayed records: their times are already wall
// times, kept as Unix nanoseconds where a live run keeps kernel ones.
var Clock = event.NewClock(time.Unix(0, 0), 0)
