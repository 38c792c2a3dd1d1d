// Package recording reads what tcptrace-bpf wrote as NDJSON and replays
// it into the same sinks as a live run: the offline `analyze` command.
package recording

import (
	"bufio"
	"fmt"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"io"
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/cgroup"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// Filter selects records, as the live filters do.
type Filter struct {
	Ports        map[uint16]bool       // either end; empty: all
	States       [event.NumStates]bool // any set: only what concerns them
	Since, Until time.Time             // zero: open
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
func Replay(r io.Reader, f Filter, sink pipeline.Sink, warn io.Writer) (Summary, error) {
	var s Summary
	var hists, fromTransitions pipeline.Histograms
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		s.Lines++
		rec, err := record.Decode(sc.Bytes())
		if err != nil {
			s.Bad++
			fmt.Fprintf(warn, "tcptrace-bpf: line %d: not a record (%v); skipped\n", s.Lines, err)
			continue
		}
		if err := s.apply(rec, f, sink, &hists, &fromTransitions); err != nil {
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

func (s *Summary) apply(rec any, f Filter, sink pipeline.Sink, hists, fromTrans *pipeline.Histograms) error {
	switch rec := rec.(type) {
	case *record.Transition:
		e, err := transition(rec)
		if err != nil {
			return err
		}
		if !f.keepTime(rec.TS) || !f.keepPorts(rec.Sport, rec.Dport) ||
			(f.stateFilter() && !f.States[e.Old] && !f.States[e.New]) {
			return nil
		}
		s.Transitions++
		s.seen(rec.TS)
		sink.Transition(&e)
		if e.Has(event.DwellKnown) && e.Old != event.Close && e.Old != e.New && e.Old != event.SynRecv {
			fromTrans[e.Old].Record(uint64(e.Dwell))
		}
	case *record.Connection:
		c, err := connection(rec)
		if err != nil {
			return err
		}
		if !f.keepTime(rec.End) || !f.keepPorts(rec.Sport, rec.Dport) {
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
		s.seen(rec.End)
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
	case *record.Lost:
		s.Lost += rec.Count // reported in the summary
	case *record.States:
		if rec.TS.IsZero() || !f.keepTime(rec.TS) {
			return nil
		}
		counts := [event.NumStates]uint64(rec.Counts)
		for st := range counts {
			if f.stateFilter() && !f.States[st] {
				counts[st] = 0
			}
		}
		s.seen(rec.TS)
		sink.States(rec.TS, &counts)
	case *record.Stuck:
		st, err := event.ParseState(rec.State)
		if err != nil {
			return err
		}
		if rec.TS.IsZero() || !f.keepTime(rec.TS) || !f.keepPorts(rec.Sport, rec.Dport) ||
			(f.stateFilter() && !f.States[st]) {
			return nil
		}
		c := &timeline.Conn{Cookie: rec.Cookie, Netns: rec.Netns}
		if c.Src, c.Dst, c.Family, err = endpoints(&rec.Endpoints); err != nil {
			return err
		}
		c.PID, c.Comm, c.OwnerKnown = owner(rec.Owner)
		st2, err := stuckOf(rec, c, st)
		if err != nil {
			return err
		}
		s.seen(rec.TS)
		sink.Stuck(st2)
	case *record.Progress, *record.Pile, *record.Cleared:
		return s.applyWalk(rec, f, sink)
	case *record.Histogram, *record.Stats, *record.Listener:
		// Derived, or about the tracer: rebuilt or not needed offline.
	}
	return nil
}

func endpoints(ep *record.Endpoints) (src, dst netip.AddrPort, fam event.Family, err error) {
	sa, err1 := netip.ParseAddr(ep.Saddr)
	da, err2 := netip.ParseAddr(ep.Daddr)
	if err1 != nil || err2 != nil {
		return src, dst, 0, fmt.Errorf("bad address %q or %q", ep.Saddr, ep.Daddr)
	}
	if fam, err = event.ParseFamily(ep.Family); err != nil {
		return src, dst, 0, err
	}
	return netip.AddrPortFrom(sa, ep.Sport), netip.AddrPortFrom(da, ep.Dport), fam, nil
}

func owner(o *record.Owner) (pid uint32, comm [16]byte, known bool) {
	if o == nil {
		return 0, comm, false
	}
	copy(comm[:15], o.Comm)
	return o.PID, comm, true
}

// identity reads the cgroup fields; nil when there are none.
func identity(r *record.Identity) *cgroup.Identity {
	if *r == (record.Identity{}) {
		return nil
	}
	return &cgroup.Identity{Path: r.Cgroup, ContainerID: r.ContainerID, Unit: r.Unit}
}

// ending reads the ending fields; closeKnown: the kernel's close fields
// were read (time_wait is present).
func ending(r *record.Ending) (tw event.TW, reset uint8, errno uint16, closeKnown bool, err error) {
	if reset, err = event.ParseReset(r.Reset); err != nil {
		return
	}
	if r.Error != "" {
		if errno = event.ErrnoByName(r.Error); errno == 0 {
			return tw, reset, 0, false, fmt.Errorf("unknown error %q", r.Error)
		}
	}
	if r.TimeWait != nil {
		tw, closeKnown = event.TWOf(*r.TimeWait, r.FinWait2TimeWait), true
	}
	return
}

// stuckOf rebuilds a stuck record around c, the socket as rec names it.
func stuckOf(rec *record.Stuck, c *timeline.Conn, st event.State) (*pipeline.Stuck, error) {
	src, err := event.ParseAgeSource(rec.AgeSource)
	if err != nil {
		return nil, err
	}
	s := &pipeline.Stuck{TS: rec.TS, Conn: c, State: st, Age: rec.AgeNs, AtLeast: rec.AgeAtLeast, AgeSource: src,
		HalfOpen: rec.HalfOpen, HoldersKnown: rec.Held != nil, Identity: identity(&rec.Identity), Limits: rec.Limits}
	if s.HoldersKnown && *rec.Held {
		hs := rec.Holders
		if len(hs) == 0 && rec.Owner != nil {
			hs = []record.Owner{*rec.Owner}
		}
		for _, h := range hs {
			var comm [16]byte
			copy(comm[:15], h.Comm)
			s.Holders = append(s.Holders, pipeline.Holder{PID: h.PID, Comm: comm})
		}
		// The connection's owner is the creator: named when it differs.
		if rec.CreatorPID != nil {
			c.PID, c.OwnerKnown = *rec.CreatorPID, true
			c.Comm = [16]byte{}
			copy(c.Comm[:15], rec.CreatorComm)
		}
	}
	return s, nil
}

// transition rebuilds a transition, its times through Clock.
func transition(rec *record.Transition) (event.Event, error) {
	var e event.Event
	if rec.TS.IsZero() {
		return e, fmt.Errorf("transition without ts")
	}
	var err error
	if e.Old, err = event.ParseState(rec.Old); err != nil {
		return e, err
	}
	if e.New, err = event.ParseState(rec.New); err != nil {
		return e, err
	}
	if e.Src, e.Dst, e.Family, err = endpoints(&rec.Endpoints); err != nil {
		return e, err
	}
	e.Mono, e.Cookie, e.Netns = Clock.Mono(rec.TS), rec.Cookie, rec.Netns
	if rec.DwellNs != nil {
		e.Dwell, e.Flags = time.Duration(*rec.DwellNs), e.Flags|event.DwellKnown
	}
	var known bool
	if e.PID, e.Comm, known = owner(rec.Owner); known {
		e.Flags |= event.OwnerKnown
	}
	if rec.OwnerFrom == record.OwnerFromListener {
		e.Flags |= event.Inherited
	}
	if rec.CookieSynthetic {
		e.Flags |= event.CookieSynth
	}
	if rec.Accepted {
		e.Flags |= event.Handshake
		if rec.HandshakeNs != nil {
			e.HandshakeMicros = uint32(*rec.HandshakeNs / 1000)
		}
	}
	var closeInfo bool
	if e.TW, e.Reset, e.Err, closeInfo, err = ending(&rec.Ending); err != nil {
		return e, err
	}
	if closeInfo {
		e.Flags |= event.CloseInfo
	}
	return e, nil
}

// connection rebuilds a connection, its times through Clock.
func connection(rec *record.Connection) (*timeline.Conn, error) {
	if rec.End.IsZero() {
		return nil, fmt.Errorf("connection without end")
	}
	c := &timeline.Conn{Cookie: rec.Cookie, Netns: rec.Netns, Open: rec.Open, Partial: rec.Partial,
		Evicted: rec.Evicted, End: Clock.Mono(rec.End)}
	var err error
	if c.Src, c.Dst, c.Family, err = endpoints(&rec.Endpoints); err != nil {
		return nil, err
	}
	if !rec.Start.IsZero() {
		c.Start = Clock.Mono(rec.Start)
	}
	c.PID, c.Comm, c.OwnerKnown = owner(rec.Owner)
	c.Identity = identity(&rec.Identity)
	end := &c.Ending
	end.Retrans, end.SynRetrans = uint16(rec.Retransmits), uint8(rec.SynRetransmits)
	if end.TW, end.Reset, end.Err, end.CloseKnown, err = ending(&rec.Ending); err != nil {
		return nil, err
	}
	end.BytesAcked, end.BytesReceived = value(rec.BytesAcked), value(rec.BytesReceived)
	end.SRTTMicros, end.TotalRetrans = uint32(value(rec.SRTTMicros)), uint32(value(rec.TotalRetrans))
	if rec.HandshakeNs != nil {
		end.HandshakeKnown, end.HandshakeMicros = true, uint32(*rec.HandshakeNs/1000)
	}
	end.SynAckRetrans = uint32(value(rec.SynAckRetransmits))
	for _, sp := range rec.States {
		st, err := event.ParseState(sp.State)
		if err != nil {
			return nil, err
		}
		span := timeline.Span{State: st, Unseen: sp.Unseen, Inferred: sp.Inferred}
		if span.AgeSource, err = event.ParseAgeSource(sp.AgeSource); err != nil {
			return nil, err
		}
		if !sp.TS.IsZero() {
			span.Enter = Clock.Mono(sp.TS)
		}
		if sp.DwellNs != nil {
			span.Dwell, span.DwellKnown = *sp.DwellNs, true
		}
		c.States = append(c.States, span)
	}
	return c, nil
}

func value(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// Clock is the clock of replayed records. A recording holds wall times;
// the pipeline keeps kernel monotonic ones (event.Mono), as in a live run.
// Replay converts each wall time through this clock, which puts monotonic
// time 1 at the start of 2000 (UTC), and the sinks convert back with it.
// Times before 2000 are not replayed.
var Clock = event.NewClock(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 1)

// applyWalk replays the records of the periodic socket walk (progress,
// pile, cleared) into the sink, filtered like stuck records.
func (s *Summary) applyWalk(rec any, f Filter, sink pipeline.Sink) error {
	var ts time.Time
	var stName string
	var ep *record.Endpoints
	switch r := rec.(type) {
	case *record.Progress:
		ts, stName, ep = r.TS, r.State, &r.Endpoints
	case *record.Pile:
		ts, stName, ep = r.TS, r.State, &r.Endpoints
	case *record.Cleared:
		ts, stName, ep = r.TS, r.State, &r.Endpoints
	}
	st, err := event.ParseState(stName)
	if err != nil {
		return err
	}
	if ts.IsZero() || !f.keepTime(ts) || !f.keepPorts(ep.Sport, ep.Dport) || (f.stateFilter() && !f.States[st]) {
		return nil
	}
	src, dst, fam, err := endpoints(ep)
	if err != nil {
		return err
	}
	s.seen(ts)
	switch r := rec.(type) {
	case *record.Progress:
		as, err := event.ParseAgeSource(r.AgeSource)
		if err != nil {
			return err
		}
		sock := event.Socket{Cookie: r.Cookie, Netns: r.Netns, Family: fam, Src: src, Dst: dst, State: st,
			BytesAcked: r.BytesAcked, BytesReceived: r.BytesReceived,
			SRTTMicros: uint32(r.SRTTMicros), TotalRetrans: uint32(r.TotalRetrans)}
		sock.PID, sock.Comm, sock.OwnerKnown = owner(r.Owner)
		p := &pipeline.Progress{TS: ts, Sock: &sock, Age: r.AgeNs, StateAge: r.StateAgeNs, AtLeast: r.AgeAtLeast, Source: as}
		if !r.Start.IsZero() {
			p.Start = Clock.Mono(r.Start)
		}
		sink.Progress(p)
	case *record.Pile:
		as, err := event.ParseAgeSource(r.AgeSource)
		if err != nil {
			return err
		}
		sink.Pile(&pipeline.Pile{TS: ts, State: st, Netns: r.Netns, Family: fam, Dst: dst, Count: r.Count,
			Oldest: r.OldestNs, Source: as, Limits: r.Limits})
	case *record.Cleared:
		c := &timeline.Conn{Cookie: r.Cookie, Netns: r.Netns, Family: fam, Src: src, Dst: dst}
		c.PID, c.Comm, c.OwnerKnown = owner(r.Owner)
		sink.Cleared(&pipeline.Cleared{TS: ts, State: st, Conn: c, Since: r.Since})
	}
	return nil
}
