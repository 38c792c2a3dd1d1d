// Package recording reads what tcptrace-bpf wrote as NDJSON and replays
// it into the same sinks as a live run: the offline `analyze` command.
package recording

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// Filter selects records: States as the live --state does (applied by
// the pipeline, the one rule), Ports and the time range as only a replay
// can.
type Filter struct {
	Ports        map[uint16]bool       // either end; empty: all
	States       [event.NumStates]bool // any set: only what concerns them
	Since, Until time.Time             // zero: open
}

// Config is the configuration of the pipeline a replay feeds: every
// record type, and the states f selects.
func (f *Filter) Config() config.Config {
	return config.Config{Emit: config.EmitAll, States: f.States}
}

// Summary counts what a replay read.
type Summary struct {
	Lines, Bad, Transitions, Connections, Lost uint64
	// Reclaimed: sockets whose kernel entry the full table reclaimed
	// (summed over the recording's stats records, one a run): their
	// connection records are partial.
	Reclaimed   uint64
	First, Last time.Time
}

// Source is the pipeline's Source in a replay: no socket walker, no
// processes to ask, the clock at the latest record read, the owners'
// identities from Idents (by PID; a recording carries them on its
// records, so a replay needs none). It hands the recorded connections.
type Source struct {
	Idents map[uint32]*event.Identity
	now    event.Mono
}

func (s *Source) HasWalker() bool                                      { return false }
func (s *Source) Walk(event.WalkDetail) ([]byte, error)                { return nil, nil }
func (s *Source) Holders(map[uint64]bool) map[uint64][]pipeline.Holder { return nil }
func (s *Source) Now() event.Mono                                      { return s.now }
func (s *Source) Recorded() bool                                       { return true }

// Sysctls: a recording holds no namespace settings.
func (s *Source) Sysctls(uint32) (pipeline.Sysctls, error) {
	return pipeline.Sysctls{}, fmt.Errorf("a recording holds no namespace settings")
}
func (s *Source) Identity(pid uint32, _ [16]byte) *event.Identity { return s.Idents[pid] }

// Replay reads NDJSON from r into a pipeline that writes to sink what a
// live run would have written of it: the transitions and connections,
// states, stuck and listener records f selects, then the dwell
// histograms rebuilt from the transitions' stays (from the connections'
// when the recording has no transitions). A bad line (not a record, a
// record with an implausible value, a line longer than MaxLine, zero bytes
// left by a crash) is reported on warn with its number, counted in
// Summary.Bad and skipped; only an error reading r ends the replay early.
func Replay(r io.Reader, f Filter, sink pipeline.Sink, warn io.Writer) (Summary, error) {
	src := &Source{}
	p := pipeline.New(f.Config(), src, sink, nil, func(err error) { fmt.Fprintf(warn, "tcptrace-bpf: %v\n", err) })
	s, err := Feed(r, f, p, src, warn)
	if err != nil {
		return s, err
	}
	if !s.First.IsZero() {
		h, u := p.Histograms()
		sink.Histograms(s.Last, s.First, h, u)
	}
	return s, sink.Flush()
}

// Feed hands the records of r that f's time range and ports select to p,
// whose Source is src (or wraps it), and ends p's connection table at the
// last record's time. Replay is Feed into a pipeline of its own.
func Feed(r io.Reader, f Filter, p *pipeline.Pipeline, src *Source, warn io.Writer) (Summary, error) {
	var s Summary
	lines := NewLines(r)
	for {
		line, ok, err := lines.Next()
		if err != nil {
			return s, fmt.Errorf("line %d: %w", s.Lines+1, err)
		}
		if !ok {
			break
		}
		s.Lines++
		damaged := line.Skipped != "" // counted once, whatever follows
		if damaged {
			s.Bad++
			fmt.Fprintf(warn, "tcptrace-bpf: line %d: %s; skipped\n", line.Number, line.Skipped)
			if len(line.Text) == 0 {
				continue
			}
		}
		bad := func() {
			if !damaged {
				s.Bad++
			}
		}
		rec, err := record.Decode(line.Text)
		if err != nil {
			bad()
			fmt.Fprintf(warn, "tcptrace-bpf: line %d: not a record (%v); skipped\n", line.Number, err)
			continue
		}
		if err := s.feed(rec, f, p, src); err != nil {
			bad()
			fmt.Fprintf(warn, "tcptrace-bpf: line %d: %v; skipped\n", line.Number, err)
		}
	}
	p.Drain(s.Last)
	s.Transitions, s.Connections = p.Written, p.Conns
	return s, nil
}

// seen notes a selected record's time: the replay's range, and its clock.
func (s *Summary) seen(t time.Time, src *Source) {
	if s.First.IsZero() || t.Before(s.First) {
		s.First = t
	}
	if t.After(s.Last) {
		s.Last = t
		src.now = Clock.Mono(t)
	}
}

func (f *Filter) keep(t time.Time, ports ...uint16) bool {
	if (!f.Since.IsZero() && t.Before(f.Since)) || (!f.Until.IsZero() && t.After(f.Until)) {
		return false
	}
	for _, p := range ports {
		if f.Ports[p] {
			return true
		}
	}
	return len(f.Ports) == 0
}

func (s *Summary) feed(rec any, f Filter, p *pipeline.Pipeline, src *Source) error {
	switch rec := rec.(type) {
	case *record.Transition:
		e, err := transition(rec)
		if err != nil || !f.keep(rec.TS, rec.Sport, rec.Dport) {
			return err
		}
		s.seen(rec.TS, src)
		p.Observe(&e)
	case *record.Connection:
		c, err := connection(rec)
		if err != nil || !f.keep(rec.End, rec.Sport, rec.Dport) {
			return err
		}
		s.seen(rec.End, src)
		p.RecordedConnection(c)
	case *record.Lost:
		s.Lost += rec.Count // reported in the summary
	case *record.States:
		if rec.TS.IsZero() || !f.keep(rec.TS) {
			return nil
		}
		counts := [event.NumStates]uint64(rec.Counts)
		var span []uint32
		if rec.Namespaces != nil {
			// The record counts the namespaces and names one only when
			// it is one: the others' inodes are not known here.
			span = make([]uint32, *rec.Namespaces)
			if rec.Netns != nil && len(span) == 1 {
				span[0] = *rec.Netns
			}
		}
		s.seen(rec.TS, src)
		p.RecordedStates(rec.TS, &counts, span)
	case *record.Stuck:
		st, err := event.ParseState(rec.State)
		if err != nil {
			return err
		}
		if rec.TS.IsZero() || !f.keep(rec.TS, rec.Sport, rec.Dport) {
			return nil
		}
		c := &timeline.Conn{Cookie: rec.Cookie, Netns: rec.Netns, NetnsCookie: rec.NetnsCookie, IfIndex: rec.Ifindex}
		if c.Src, c.Dst, c.Family, err = endpoints(&rec.Endpoints); err != nil {
			return err
		}
		c.PID, c.Comm, c.OwnerKnown = owner(rec.Owner)
		stuck, err := stuckOf(rec, c, st)
		if err != nil {
			return err
		}
		s.seen(rec.TS, src)
		p.RecordedStuck(stuck)
	case *record.Listener:
		l, err := listener(rec)
		if err != nil || !f.keep(rec.TS, rec.Sport) {
			return err
		}
		s.seen(rec.TS, src)
		p.RecordedListener(rec.TS, l)
	case *record.Stats:
		// About the tracer, but for what it could not record: a
		// recording may hold several runs, each with its own stats.
		s.Reclaimed += rec.Reclaimed
	case *record.Histogram:
		// Derived: rebuilt offline.
	}
	return nil
}

// listener rebuilds a listener's queues.
func listener(rec *record.Listener) (*pipeline.Listener, error) {
	if rec.TS.IsZero() {
		return nil, fmt.Errorf("listener without ts")
	}
	addr, err := netip.ParseAddr(rec.Saddr)
	if err != nil {
		return nil, fmt.Errorf("bad address %q", rec.Saddr)
	}
	fam, err := event.ParseFamily(rec.Family)
	if err != nil {
		return nil, err
	}
	l := &pipeline.Listener{Netns: rec.Netns, NetnsCookie: rec.NetnsCookie, IfIndex: rec.Ifindex,
		Family: fam, Addr: netip.AddrPortFrom(addr, rec.Sport),
		AcceptQueue: uint32(rec.AcceptQueue), AcceptQueueMax: uint32(rec.AcceptQueueMax),
		HalfOpen: uint32(rec.HalfOpen), SynAckRetrans: uint32(rec.SynAckRetransmits),
		Drops: uint32(rec.Drops), SynCookies: uint32(rec.SynCookies)}
	if rec.SynCookiesSent != nil {
		l.SynCookiesSent, l.SynCookiesKnown = *rec.SynCookiesSent, true
	}
	l.PID, l.Comm, l.OwnerKnown = owner(rec.Owner)
	return l, nil
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
func identity(r *record.Identity) *event.Identity {
	if *r == (record.Identity{}) {
		return nil
	}
	return &event.Identity{Path: r.Cgroup, ContainerID: r.ContainerID, Unit: r.Unit}
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
	e.NetnsCookie, e.IfIndex = rec.NetnsCookie, rec.Ifindex
	if rec.DwellNs != nil {
		e.Dwell, e.Flags = time.Duration(*rec.DwellNs), e.Flags|event.DwellKnown
	}
	if rec.Gap {
		e.Flags |= event.Gap
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
		e.SynCookie = rec.SynCookie
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
	c := &timeline.Conn{Cookie: rec.Cookie, Netns: rec.Netns, NetnsCookie: rec.NetnsCookie, IfIndex: rec.Ifindex, Open: rec.Open, Partial: rec.Partial,
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
	end.SynCookie = rec.SynCookie
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
// time 1 at record.MinTime (2000, UTC), and the sinks convert back with
// it. Earlier times are implausible (record.Plausible): not replayed.
var Clock = event.NewClock(record.MinTime, 1)
