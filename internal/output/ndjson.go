package output

import (
	"bufio"
	"io"
	"net/netip"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// NDJSON writes one JSON object a line. Field names are a contract
// (docs/ndjson.md): add fields freely, never rename one. This is the fast
// twin of encoding/json on the types of internal/record, which the tests
// hold it to byte for byte: a field added here is added there too.
type NDJSON struct {
	w       *bufio.Writer
	clock   event.Clock
	buf     []byte
	buckets []histogram.Bucket
	own     []byte // used when the writer's buffer has no room (after an error)
	inPlace bool   // buf is the writer's free space
	times   timeCache
	err     error
	// span: the namespaces the next states record spans (Span).
	span      []uint32
	spanKnown bool
	// stream is `,"run":"RUN","seq":`, written after every record's type
	// and followed by seq (record.Stream).
	stream []byte
	seq    uint64
}

// NewNDJSON returns an NDJSON writer on w that converts kernel timestamps
// to wall time with clock. Its records carry a run identity of their own,
// drawn here (NewRun), and their sequence number (record.Stream).
func NewNDJSON(w io.Writer, clock event.Clock) *NDJSON {
	return newNDJSON(w, clock, record.NewRun())
}

func newNDJSON(w io.Writer, clock event.Clock, run string) *NDJSON {
	return &NDJSON{w: bufio.NewWriterSize(w, 1<<20), clock: clock, own: make([]byte, 0, 4096),
		stream: []byte(`,"run":"` + run + `","seq":`)}
}

func (n *NDJSON) write() {
	n.buf = append(n.buf, '\n')
	if n.err == nil {
		_, n.err = n.w.Write(n.buf)
	}
	if !n.inPlace {
		n.own = n.buf[:0] // keep what the record grew it to
	}
}

// start begins a record of the given type, with the run and the record's
// sequence number (record.Stream). Records are built in place in
// the bufio.Writer's free space when it has room for any transition or
// connection record, so Write copies nothing.
func (n *NDJSON) start(typ string) []byte {
	if n.w.Available() < 4096 && n.err == nil {
		n.err = n.w.Flush()
	}
	n.inPlace = n.w.Available() >= 4096
	if n.inPlace {
		n.buf = n.w.AvailableBuffer()
	} else {
		n.buf = n.own[:0]
	}
	n.buf = append(n.buf, `{"type":"`...)
	n.buf = append(n.buf, typ...)
	n.buf = append(n.buf, '"')
	n.buf = append(n.buf, n.stream...)
	n.seq++
	return appendUintRaw(n.buf, n.seq)
}

// appendNetns writes a socket's namespace: its inode and, when known, its
// cookie (record's Netns, NetnsCookie).
func appendNetns(b []byte, inode uint32, cookie uint64) []byte {
	b = appendUint(b, `,"netns":`, uint64(inode))
	if cookie != 0 {
		b = appendUint(b, `,"netns_cookie":`, cookie)
	}
	return b
}

// appendIfindex writes the interface a socket is bound to, if any.
func appendIfindex(b []byte, ifindex uint32) []byte {
	if ifindex != 0 {
		b = appendUint(b, `,"ifindex":`, uint64(ifindex))
	}
	return b
}

func appendEndpoints(dst []byte, family event.Family, src, dst_ netip.AddrPort, ifindex uint32) []byte {
	dst = appendStr(dst, `,"family":`, family.String())
	dst = append(appendKey(dst, `,"saddr":`), '"')
	dst = src.Addr().AppendTo(dst)
	dst = append(dst, '"')
	dst = appendUint(dst, `,"sport":`, uint64(src.Port()))
	dst = append(appendKey(dst, `,"daddr":`), '"')
	dst = dst_.Addr().AppendTo(dst)
	dst = append(dst, '"')
	dst = appendUint(dst, `,"dport":`, uint64(dst_.Port()))
	return appendIfindex(dst, ifindex)
}

func appendOwner(dst []byte, known bool, pid uint32, comm *[16]byte) []byte {
	if !known {
		return dst
	}
	dst = appendUint(dst, `,"pid":`, uint64(pid))
	return appendQuoted(appendKey(dst, `,"comm":`), event.CommBytes(comm))
}

// appendIdentity writes the owner's cgroup fields (record.Identity), each
// only when known.
func appendIdentity(dst []byte, id *event.Identity) []byte {
	if id == nil {
		return dst
	}
	if id.Path != "" {
		dst = appendQuotedString(appendKey(dst, `,"cgroup":`), id.Path)
	}
	if id.ContainerID != "" {
		dst = appendStr(dst, `,"container_id":`, id.ContainerID)
	}
	if id.Unit != "" {
		dst = appendQuotedString(appendKey(dst, `,"unit":`), id.Unit)
	}
	return dst
}

// Transition writes a "transition" record.
func (n *NDJSON) Transition(e *event.Event) {
	b := n.start(record.TypeTransition)
	b = n.times.appendTime(b, `,"ts":`, n.clock.WallNano(e.Mono))
	b = appendUint(b, `,"cookie":`, e.Cookie)
	b = appendNetns(b, e.Netns, e.NetnsCookie)
	b = appendEndpoints(b, e.Family, e.Src, e.Dst, e.IfIndex)
	b = appendStr(b, `,"old":`, e.Old.String())
	b = appendStr(b, `,"new":`, e.New.String())
	if e.Has(event.DwellKnown) {
		b = appendUint(b, `,"dwell_ns":`, uint64(e.Dwell))
	}
	if e.Has(event.Gap) {
		b = appendBool(b, `,"gap":`, true)
	}
	b = appendOwner(b, e.Has(event.OwnerKnown), e.PID, &e.Comm)
	if e.Has(event.Inherited) {
		b = appendStr(b, `,"owner_from":`, record.OwnerFromListener)
	}
	if e.Has(event.CookieSynth) {
		b = appendBool(b, `,"cookie_synthetic":`, true)
	}
	if e.Has(event.Handshake) {
		b = appendBool(b, `,"accepted":`, true)
		if e.HandshakeMicros != 0 {
			b = appendUint(b, `,"handshake_ns":`, uint64(e.HandshakeMicros)*1000)
		}
		if e.SynCookie {
			b = appendBool(b, `,"syncookie":`, true)
		}
	}
	if e.Has(event.CloseInfo) {
		b = appendEnding(b, e.TW, e.Reset, e.Err)
	}
	n.buf = append(b, '}')
	n.write()
}

// Connection writes a "connection" record.
func (n *NDJSON) Connection(c *timeline.Conn) {
	b := n.start(record.TypeConnection)
	b = appendUint(b, `,"cookie":`, c.Cookie)
	b = appendNetns(b, c.Netns, c.NetnsCookie)
	b = appendEndpoints(b, c.Family, c.Src, c.Dst, c.IfIndex)
	b = appendOwner(b, c.OwnerKnown, c.PID, &c.Comm)
	b = appendIdentity(b, c.Identity)
	if c.Start != 0 {
		b = n.times.appendTime(b, `,"start":`, n.clock.WallNano(c.Start))
	}
	b = n.times.appendTime(b, `,"end":`, n.clock.WallNano(c.End))
	if c.Start != 0 && c.End >= c.Start {
		b = appendUint(b, `,"duration_ns":`, c.End.Since(c.Start))
	}
	b = appendBool(b, `,"open":`, c.Open)
	b = appendBool(b, `,"partial":`, c.Partial)
	if c.Evicted {
		b = appendBool(b, `,"evicted":`, true)
	}
	end := &c.Ending
	b = appendUint(b, `,"retransmits":`, uint64(end.Retrans))
	b = appendUint(b, `,"syn_retransmits":`, uint64(end.SynRetrans))
	if end.CloseKnown {
		b = appendEnding(b, end.TW, end.Reset, end.Err)
		b = appendUint(b, `,"bytes_acked":`, end.BytesAcked)
		b = appendUint(b, `,"bytes_received":`, end.BytesReceived)
		b = appendUint(b, `,"srtt_us":`, uint64(end.SRTTMicros))
		b = appendUint(b, `,"total_retrans":`, uint64(end.TotalRetrans))
	} else if end.Reset != 0 {
		b = appendStr(b, `,"reset":`, event.ResetName(end.Reset))
	}
	if end.HandshakeKnown {
		b = appendUint(b, `,"handshake_ns":`, uint64(end.HandshakeMicros)*1000)
	}
	if end.HandshakeKnown || end.SynAckRetrans != 0 {
		b = appendUint(b, `,"synack_retransmits":`, uint64(end.SynAckRetrans))
	}
	if end.SynCookie {
		b = appendBool(b, `,"syncookie":`, true)
	}
	b = append(appendKey(b, `,"states":`), '[')
	for i := range c.States {
		s := &c.States[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"state":"`...)
		b = append(b, s.State.String()...)
		b = append(b, '"')
		if s.Enter != 0 {
			b = n.times.appendTime(b, `,"ts":`, n.clock.WallNano(s.Enter))
		}
		if s.DwellKnown {
			b = appendUint(b, `,"dwell_ns":`, s.Dwell)
		}
		if s.Unseen {
			b = appendBool(b, `,"unseen":`, true)
		}
		if s.Inferred {
			b = appendBool(b, `,"inferred":`, true)
		}
		if s.AgeSource != event.AgeTraced {
			b = appendStr(b, `,"age_source":`, s.AgeSource.String())
		}
		b = append(b, '}')
	}
	n.buf = append(b, ']', '}')
	n.write()
}

// Histograms writes one "histogram" record per state with a
// stay that ended, timed or not.
func (n *NDJSON) Histograms(ts, since time.Time, hs *pipeline.Histograms, u *pipeline.Untimed) {
	for st := range hs {
		h := &hs[st]
		untimed := u[st].Total()
		if h.Count() == 0 && untimed == 0 {
			continue
		}
		b := n.start(record.TypeHistogram)
		b = appendTime(b, `,"ts":`, ts)
		b = appendTime(b, `,"since":`, since)
		b = appendStr(b, `,"state":`, event.State(st).String())
		b = appendUint(b, `,"count":`, h.Count())
		b = appendUint(b, `,"sum_ns":`, h.Sum())
		b = appendUint(b, `,"min_ns":`, h.Min())
		b = appendUint(b, `,"max_ns":`, h.Max())
		b = appendUint(b, `,"p50_ns":`, h.Quantile(0.50))
		b = appendUint(b, `,"p90_ns":`, h.Quantile(0.90))
		b = appendUint(b, `,"p99_ns":`, h.Quantile(0.99))
		b = appendUint(b, `,"untimed":`, untimed)
		if untimed != 0 {
			r := &u[st].ByReason
			b = appendUint(b, `,"untimed_reasons":{"no_start":`, r[event.UntimedNoStart])
			b = appendUint(b, `,"gap":`, r[event.UntimedGap])
			b = appendUint(b, `,"syncookie":`, r[event.UntimedSynCookie])
			b = append(b, '}')
		}
		if u[st].Evicted != 0 {
			b = appendUint(b, `,"evictions":`, u[st].Evicted)
		}
		b = append(appendKey(b, `,"buckets":`), '[')
		n.buckets = h.AppendBuckets(n.buckets[:0])
		for i, bk := range n.buckets {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"ge_ns":`...)
			b = appendUintRaw(b, bk.Lo)
			b = appendUint(b, `,"le_ns":`, bk.Hi)
			b = appendUint(b, `,"count":`, bk.Count)
			b = append(b, '}')
		}
		n.buf = append(b, ']', '}')
		n.write()
	}
}

// Lost writes a "lost" record.
func (n *NDJSON) Lost(l *pipeline.Lost) {
	b := n.start(record.TypeLost)
	b = appendTime(b, `,"ts":`, l.TS)
	b = appendUint(b, `,"count":`, l.Count())
	b = appendUint(b, `,"ringbuf_full":`, l.RingbufFull)
	b = appendUint(b, `,"recursion":`, l.Recursion)
	b = appendUint(b, `,"decode_errors":`, l.Decode)
	b = appendUint(b, `,"unread":`, l.Unread)
	b = appendUint(b, `,"unsent":`, l.Unsent)
	b = appendUint(b, `,"inferred":`, l.Gap)
	b = appendUint(b, `,"total":`, l.Total())
	if l.RecursionHostWide {
		b = append(b, `,"recursion_host_wide":true`...)
	}
	n.buf = append(b, '}')
	n.write()
}

// Stats writes the closing "stats" record.
func (n *NDJSON) Stats(s *pipeline.Stats) {
	b := n.start(record.TypeStats)
	b = appendTime(b, `,"ts":`, s.TS)
	b = appendStr(b, `,"attach":`, s.Attach)
	b = appendUint(b, `,"events":`, s.Events)
	if s.Aggregated != 0 {
		b = appendUint(b, `,"aggregated":`, s.Aggregated)
	}
	b = appendUint(b, `,"connections":`, s.Connections)
	b = appendUint(b, `,"open_connections":`, s.Open)
	b = appendUint(b, `,"evictions":`, s.Evictions)
	b = appendUint(b, `,"gaps":`, s.Gaps)
	b = appendUint(b, `,"reordered":`, s.Reordered)
	b = appendUint(b, `,"stuck_dropped":`, s.StuckDropped)
	b = appendUint(b, `,"stuck":`, s.Stuck)
	b = appendUint(b, `,"rescued":`, s.Rescued)
	b = appendUint(b, `,"storage_fail":`, s.StorageFail)
	b = appendUint(b, `,"lost":`, s.Lost)
	b = appendUint(b, `,"untimed":`, s.Untimed.Total())
	if s.HostWide {
		b = appendUint(b, `,"lost_host_wide":`, s.LostHostWide)
	}
	b = appendUint(b, `,"lost_inferred":`, s.LostInferred)
	if s.Reclaimed != 0 {
		b = appendUint(b, `,"reclaimed":`, s.Reclaimed)
	}
	b = appendUint(b, `,"walks":`, s.Walks)
	b = appendUint(b, `,"walk_ns":`, s.WalkNs)
	if s.Runs != 0 {
		b = appendUint(b, `,"bpf_runs":`, s.Runs)
		b = appendUint(b, `,"bpf_primary_run_time_ns":`, s.PrimaryRunTimeNs)
		b = appendUint(b, `,"bpf_run_time_ns":`, s.RunTimeNs)
	}
	if s.ProgressOn {
		b = appendUint(b, `,"progress":`, s.Progress)
		b = appendUint(b, `,"progress_skipped":`, s.ProgressSkipped)
	}
	n.buf = append(b, '}')
	n.write()
}

// Flush writes out the buffer.
func (n *NDJSON) Flush() error {
	if n.err == nil {
		n.err = n.w.Flush()
	}
	return n.err
}

// appendEnding writes how a socket ended (record.Ending): "time_wait"
// always (the kernel-side inference at CLOSE), "fin_wait2_timewait" for
// an orphan that lingers in FIN_WAIT2, and "reset" and "error" when there
// was one.
func appendEnding(b []byte, tw event.TW, reset uint8, errno uint16) []byte {
	b = appendBool(b, `,"time_wait":`, tw.TimeWait())
	if tw.FinWait2() {
		b = appendBool(b, `,"fin_wait2_timewait":`, true)
	}
	if reset != 0 {
		b = appendStr(b, `,"reset":`, event.ResetName(reset))
	}
	if errno != 0 {
		b = appendStr(b, `,"error":`, event.ErrnoName(errno))
	}
	return b
}

// States writes a "states" record.
func (n *NDJSON) States(ts time.Time, counts *[event.NumStates]uint64) {
	b := n.start(record.TypeStates)
	b = appendTime(b, `,"ts":`, ts)
	b = append(appendKey(b, `,"counts":`), '{')
	first := true
	for st, c := range counts {
		if c == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, event.State(st).String()...)
		b = append(b, '"', ':')
		b = appendUintRaw(b, c)
	}
	b = append(b, '}')
	if n.spanKnown {
		b = appendUint(b, `,"namespaces":`, uint64(len(n.span)))
		if len(n.span) == 1 {
			b = appendUint(b, `,"netns":`, uint64(n.span[0]))
		}
	}
	n.buf = append(b, '}')
	n.write()
}

// Span takes the namespaces the next States spans (pipeline.SpanSink).
func (n *NDJSON) Span(namespaces []uint32) {
	n.span, n.spanKnown = append(n.span[:0], namespaces...), true
}

// Stuck writes a "stuck" record.
func (n *NDJSON) Stuck(s *pipeline.Stuck) {
	c := s.Conn
	b := n.start(record.TypeStuck)
	b = appendTime(b, `,"ts":`, s.TS)
	b = appendStr(b, `,"state":`, s.State.String())
	b = appendUint(b, `,"age_ns":`, s.Age)
	b = appendBool(b, `,"age_at_least":`, s.AtLeast)
	if s.AgeSource != event.AgeTraced {
		b = appendStr(b, `,"age_source":`, s.AgeSource.String())
	}
	b = appendUint(b, `,"cookie":`, c.Cookie)
	b = appendNetns(b, c.Netns, c.NetnsCookie)
	b = appendEndpoints(b, c.Family, c.Src, c.Dst, c.IfIndex)
	pid, comm, known, creator := s.Owner()
	b = appendOwner(b, known, pid, comm)
	b = appendIdentity(b, s.Identity)
	if s.HoldersKnown {
		b = appendBool(b, `,"held":`, len(s.Holders) > 0)
		if len(s.Holders) > 1 {
			b = append(appendKey(b, `,"holders":`), '[')
			for i := range s.Holders {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendUint(b, `{"pid":`, uint64(s.Holders[i].PID))
				b = append(appendQuoted(appendKey(b, `,"comm":`), event.CommBytes(&s.Holders[i].Comm)), '}')
			}
			b = append(b, ']')
		}
	}
	if creator != nil {
		b = appendUint(b, `,"creator_pid":`, uint64(creator.PID))
		b = appendQuoted(appendKey(b, `,"creator_comm":`), event.CommBytes(&creator.Comm))
	}
	if s.HalfOpen > 0 {
		b = appendUint(b, `,"half_open":`, uint64(s.HalfOpen))
	}
	b = appendLimits(b, s.Limits)
	n.buf = append(b, '}')
	n.write()
}

// Listener writes a "listener" record.
func (n *NDJSON) Listener(ts time.Time, l *pipeline.Listener) {
	b := n.start(record.TypeListener)
	b = appendTime(b, `,"ts":`, ts)
	b = appendNetns(b, l.Netns, l.NetnsCookie)
	b = appendStr(b, `,"family":`, l.Family.String())
	b = append(appendKey(b, `,"saddr":`), '"')
	b = l.Addr.Addr().AppendTo(b)
	b = append(b, '"')
	b = appendUint(b, `,"sport":`, uint64(l.Addr.Port()))
	b = appendIfindex(b, l.IfIndex)
	b = appendOwner(b, l.OwnerKnown, l.PID, &l.Comm)
	b = appendUint(b, `,"accept_queue":`, uint64(l.AcceptQueue))
	b = appendUint(b, `,"accept_queue_max":`, uint64(l.AcceptQueueMax))
	b = appendUint(b, `,"half_open":`, uint64(l.HalfOpen))
	b = appendUint(b, `,"synack_retransmits":`, uint64(l.SynAckRetrans))
	b = appendUint(b, `,"drops":`, uint64(l.Drops))
	b = appendUint(b, `,"syncookies":`, uint64(l.SynCookies))
	if l.SynCookiesKnown {
		b = appendBool(b, `,"syncookies_sent":`, l.SynCookiesSent)
	}
	n.buf = append(b, '}')
	n.write()
}

// Redirect flushes what is buffered, then writes to w.
func (n *NDJSON) Redirect(w io.Writer) error {
	if err := n.Flush(); err != nil {
		return err
	}
	n.w.Reset(w)
	return nil
}
