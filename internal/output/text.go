package output

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/netip"
	"strings"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/timeline"
)

// TextWriter writes a table for a person: one line per transition, one per
// finished connection, and bcc-style histograms. Every time is shown in
// one zone, named by a ZONE line before the first time and again whenever
// its offset changes (a daylight-saving switch during the run).
type TextWriter struct {
	w       *bufio.Writer
	clock   event.Clock
	loc     *time.Location
	header  bool
	zoneOff int  // the offset the last ZONE line named
	zoned   bool // a ZONE line has been written
	buckets []histogram.Bucket
	err     error
	// untouched: open connections not listed, older than the trace
	// and unchanged by it.
	untouched int
	// span: the namespaces the last walk's tally spans (Span); with
	// more than one, lines name the namespace of their socket.
	span []uint32
}

// NewText returns a text writer on w that shows times in loc (time.Local,
// or time.UTC for --utc).
func NewText(w io.Writer, clock event.Clock, loc *time.Location) *TextWriter {
	return &TextWriter{w: bufio.NewWriterSize(w, 64<<10), clock: clock, loc: loc}
}

// at returns tm in the writer's zone, first writing a ZONE line when no
// time has been shown yet or the zone's offset has changed.
func (t *TextWriter) at(tm time.Time) time.Time {
	tm = tm.In(t.loc)
	name, off := tm.Zone()
	if t.zoned && off == t.zoneOff {
		return tm
	}
	t.zoned, t.zoneOff = true, off
	switch where := t.loc.String(); {
	case t.loc == time.UTC:
		t.printf("ZONE UTC\n")
	case t.loc == time.Local || where == "Local":
		t.printf("ZONE local time: %s (%s)\n", name, utcOffset(off))
	default:
		t.printf("ZONE %s: %s (%s)\n", where, name, utcOffset(off))
	}
	return tm
}

// utcOffset writes a zone offset as UTC+01:00.
func utcOffset(sec int) string {
	sign := '+'
	if sec < 0 {
		sign, sec = '-', -sec
	}
	return fmt.Sprintf("UTC%c%02d:%02d", sign, sec/3600, sec/60%60)
}

func (t *TextWriter) printf(format string, args ...any) {
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, format, args...)
	}
}

const textRow = "%-15s %-7s %-15s %-39s %-39s %-11s -> %-12s %s\n"

func owner(known bool, pid uint32, comm *[16]byte) (string, string) {
	if !known {
		return "?", "?"
	}
	return fmt.Sprint(pid), string(event.CommBytes(comm))
}

// Transition writes one table row.
func (t *TextWriter) Transition(e *event.Event) {
	ts := t.at(t.clock.Wall(e.Mono))
	if !t.header {
		t.header = true
		t.printf(textRow, "TIME", "PID", "COMM", "LADDR:LPORT", "RADDR:RPORT", "OLD", "NEW", "DWELL")
	}
	dwell := "-"
	if e.Has(event.DwellKnown) {
		dwell = FormatDuration(uint64(e.Dwell))
	}
	if e.Has(event.Gap) { // the entry into Old was not seen: no stay of Old's
		dwell = "gap " + dwell
	}
	pid, comm := owner(e.Has(event.OwnerKnown), e.PID, &e.Comm)
	t.printf(textRow, ts.Format("15:04:05.000000"), pid, comm,
		Local(e.Src, e.IfIndex), e.Dst.String(), e.Old, e.New, dwell+t.netns(e.Netns))
}

// Connection writes one line: who, where, the path through the states,
// then what else is known of how it went (handshake, retransmits, reset,
// error, a FIN_WAIT2 left behind) and its tags.
func (t *TextWriter) Connection(c *timeline.Conn) {
	if c.Open && c.Start == 0 && len(c.States) == 1 {
		// A socket that was there before the trace and changed
		// nothing: at exit every such socket of the traced namespaces
		// would be a line. Counted, and said once (Stats); the STATES
		// line counts them by state, NDJSON lists them.
		t.untouched++
		return
	}
	end := t.at(t.clock.Wall(c.End))
	var path strings.Builder
	for i := range c.States {
		s := &c.States[i]
		if i > 0 {
			path.WriteString(" > ")
		}
		path.WriteString(s.State.String())
		if s.DwellKnown {
			path.WriteString(" " + FormatDuration(s.Dwell))
		}
	}
	if notes := connNotes(c); notes != "" {
		path.WriteString("; " + notes)
	}
	var tags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{c.Open, "open"}, {c.Partial, "partial"}, {c.Evicted, "evicted"}} {
		if f.on {
			tags = append(tags, f.name)
		}
	}
	tag := ""
	if len(tags) > 0 {
		tag = " [" + strings.Join(tags, ",") + "]"
	}
	dur := "?"
	if c.Start != 0 && c.End >= c.Start {
		dur = FormatDuration(c.End.Since(c.Start))
	}
	pid, comm := owner(c.OwnerKnown, c.PID, &c.Comm)
	t.printf("CONN %s %s/%s %s > %s%s %s: %s%s\n", end.Format("15:04:05.000000"),
		pid, comm, Local(c.Src, c.IfIndex), c.Dst, t.netns(c.Netns), dur, path.String(), tag)
}

// connNotes says, comma-separated, what a connection record adds to the
// path: "handshake 35.0µs, 2 retransmits, 1 SYN retransmit, reset
// received, ECONNRESET, FIN_WAIT2 left as timewait". Counts of 0 and
// unknowns are left out.
func connNotes(c *timeline.Conn) string {
	end := &c.Ending
	var notes []string
	count := func(n uint64, what string) {
		switch {
		case n == 1:
			notes = append(notes, "1 "+what)
		case n > 1:
			notes = append(notes, fmt.Sprintf("%d %ss", n, what))
		}
	}
	if end.HandshakeKnown {
		notes = append(notes, "handshake "+FormatDuration(uint64(end.HandshakeMicros)*1000))
	}
	if end.SynCookie {
		notes = append(notes, "SYN cookie handshake")
	}
	count(uint64(end.SynAckRetrans), "SYN-ACK retransmit")
	count(uint64(end.SynRetrans), "SYN retransmit")
	if len(c.States) > 0 && c.States[0].State == event.Listen {
		count(uint64(end.Retrans), "SYN-ACK retransmit") // a listener counts those
	} else {
		count(uint64(end.Retrans), "retransmit")
	}
	if end.Reset != 0 {
		notes = append(notes, "reset "+strings.ReplaceAll(event.ResetName(end.Reset), "_", " "))
	}
	if end.Err != 0 {
		notes = append(notes, event.ErrnoName(end.Err))
	}
	if end.TW.FinWait2() {
		notes = append(notes, "FIN_WAIT2 left as timewait")
	}
	if in := identityNote(c.Identity); in != "" {
		notes = append(notes, in)
	}
	return strings.Join(notes, ", ")
}

// identityNote names where the owner runs (--cgroup-fields), the most
// specific way known: "container 0123456789ab" (the short ID docker and
// crictl print), "unit nginx.service", or "cgroup /path"; "" when unknown.
func identityNote(id *event.Identity) string {
	switch {
	case id == nil:
		return ""
	case id.ContainerID != "":
		// A recording may carry any ID (a hand-edited or foreign file):
		// shorten only what is longer than the short form.
		return "container " + id.ContainerID[:min(12, len(id.ContainerID))]
	case id.Unit != "":
		return "unit " + id.Unit
	case id.Path != "":
		return "cgroup " + id.Path
	}
	return ""
}

// Histograms writes each non-empty state's summary and power-of-two bars.
func (t *TextWriter) Histograms(ts, since time.Time, hs *pipeline.Histograms, u *pipeline.Untimed) {
	from, to := t.at(since), t.at(ts)
	t.printf("\nDwell time per state, %s to %s (%s):\n", from.Format("15:04:05"), to.Format("15:04:05"), ts.Sub(since).Round(time.Millisecond))
	any := false
	for st := range hs {
		h := &hs[st]
		untimed := u[st].Total()
		if h.Count() == 0 && untimed == 0 {
			continue
		}
		any = true
		t.printf("\n%s: count %d  min %s  p50 %s  p90 %s  p99 %s  max %s\n", event.State(st), h.Count(),
			FormatDuration(h.Min()), FormatDuration(h.Quantile(.5)), FormatDuration(h.Quantile(.9)),
			FormatDuration(h.Quantile(.99)), FormatDuration(h.Max()))
		if untimed != 0 {
			t.printf("  incomplete: %d more stays ended untimed (%s)\n", untimed, UntimedWhy(&u[st]))
		}
		t.bars(h)
	}
	if !any {
		t.printf("  (no completed dwell times)\n")
	}
}

// UntimedWhy says why stays went untimed, for the text output and the
// exit line: "no start 3, gap 1", the non-zero reasons.
func UntimedWhy(u *event.UntimedStays) string {
	var b strings.Builder
	for r, n := range u.ByReason {
		if n == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", strings.ReplaceAll(event.UntimedReason(r).String(), "_", " "), n)
	}
	if u.Evicted != 0 {
		fmt.Fprintf(&b, "; %d evicted from the full table", u.Evicted)
	}
	return b.String()
}

// bars folds the log-linear buckets into powers of two, as bcc prints.
func (t *TextWriter) bars(h *histogram.Histogram) {
	var pow [65]uint64
	t.buckets = h.AppendBuckets(t.buckets[:0])
	lo, hi := 64, 0
	for _, b := range t.buckets {
		k := bits.Len64(b.Lo) // 0 for value 0, else floor(log2)+1
		pow[k] += b.Count
		lo, hi = min(lo, k), max(hi, k)
	}
	var peak uint64
	for k := lo; k <= hi; k++ {
		peak = max(peak, pow[k])
	}
	edge := func(k int) uint64 { // the lower edge of row k
		if k == 0 {
			return 0
		}
		return 1 << (k - 1)
	}
	for k := lo; k <= hi; k++ {
		// A run of empty rows is one row over their whole range: a
		// state with stays of microseconds and of seconds would
		// otherwise print a screen of zeros between them.
		end := k
		for pow[k] == 0 && end+1 <= hi && pow[end+1] == 0 {
			end++
		}
		n := int(pow[k] * 40 / peak)
		t.printf("  %10s -> %-10s : %-9d |%-40s|\n", FormatDuration(edge(k)), FormatDuration(edge(end+1)), pow[k], strings.Repeat("*", n))
		k = end
	}
}

// Lost writes a warning line.
func (t *TextWriter) Lost(l *pipeline.Lost) {
	t.printf("LOST %d transitions (%s)%s; %d since start\n", l.Count(), l.Parts().Breakdown(), l.HostWideNote(), l.Total())
}

// Stats writes the closing summary.
func (t *TextWriter) Stats(s *pipeline.Stats) {
	if t.untouched > 0 {
		t.printf("\n%d sockets older than the trace, still open and with no transition traced, are not listed (the STATES line counts them)\n", t.untouched)
	}
	t.printf("\n%d transitions, %d connections (%d still open), %d lost%s, %d rescued from kernel recursion, %d evicted; attach %s\n",
		s.Events, s.Connections, s.Open, s.Lost, s.HostWideNote(), s.Rescued, s.Evictions, s.Attach)
	if s.Reclaimed != 0 {
		t.printf("%d live sockets lost their kernel entry to the full table (--max-conns): their timelines are partial\n", s.Reclaimed)
	}
	if n := s.Untimed.Total(); n != 0 {
		t.printf("%d stays ended untimed and are missing from the histograms (%s)\n", n, UntimedWhy(&s.Untimed))
	}
}

// Flush writes out the buffer.
func (t *TextWriter) Flush() error {
	if t.err == nil {
		t.err = t.w.Flush()
	}
	return t.err
}

// FormatDuration prints nanoseconds with three significant digits.
func FormatDuration(ns uint64) string {
	d := float64(ns)
	switch {
	case ns < 1_000:
		return fmt.Sprintf("%dns", ns)
	case ns < 1_000_000:
		return trim(d/1e3) + "µs"
	case ns < 1_000_000_000:
		return trim(d/1e6) + "ms"
	case ns < 60_000_000_000:
		return trim(d/1e9) + "s"
	case ns > math.MaxInt64: // beyond time.Duration
		return fmt.Sprintf("%.0fh", d/3600e9)
	}
	return time.Duration(ns).Round(time.Second).String()
}

func trim(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// Span takes the namespaces the next States spans (pipeline.SpanSink).
func (t *TextWriter) Span(namespaces []uint32) { t.span = append(t.span[:0], namespaces...) }

// netns is " netns N" on a line about a socket when the run's tally
// spans several namespaces, else "".
func (t *TextWriter) netns(ino uint32) string {
	if len(t.span) < 2 {
		return ""
	}
	return fmt.Sprintf(" netns %d", ino)
}

// States writes one line of counts, like netstat -nat | sort | uniq -c.
func (t *TextWriter) States(ts time.Time, counts *[event.NumStates]uint64) {
	var parts []string
	for st, c := range counts {
		if c != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", event.State(st), c))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "(no sockets)")
	}
	switch {
	case len(t.span) == 1:
		parts = append(parts, fmt.Sprintf("in netns %d", t.span[0]))
	case len(t.span) > 1:
		parts = append(parts, fmt.Sprintf("in %d namespaces", len(t.span)))
	}
	t.printf("STATES %s %s\n", t.at(ts).Format("15:04:05"), strings.Join(parts, " "))
}

// Stuck writes one warning line.
func (t *TextWriter) Stuck(s *pipeline.Stuck) {
	c := s.Conn
	ts := t.at(s.TS)
	p, cm, known, creator := s.Owner()
	pid, comm := owner(known, p, cm)
	more := ageNote(s.AtLeast, s.AgeSource)
	if s.HalfOpen > 0 {
		t.printf("STUCK %s SYN_RECV: %d half-open handshakes on listener %s%s (%s/%s), the oldest for %s%s\n",
			ts.Format("15:04:05"), s.HalfOpen, Local(c.Src, c.IfIndex), t.netns(c.Netns), pid, comm, FormatDuration(s.Age), limitsNote(s.Limits))
		return
	}
	what := fmt.Sprintf("%s > %s%s", Local(c.Src, c.IfIndex), c.Dst, t.netns(c.Netns))
	who := ""
	if s.HoldersKnown && len(s.Holders) == 0 {
		who = " (held by no process)"
	}
	if len(s.Holders) > 1 {
		who += fmt.Sprintf(" (held by %d processes)", len(s.Holders))
	}
	if creator != nil {
		who += fmt.Sprintf(" (created by %d/%s)", creator.PID, event.CommBytes(&creator.Comm))
	}
	if in := identityNote(s.Identity); in != "" {
		who += " (" + in + ")"
	}
	t.printf("STUCK %s %s for %s%s: %s/%s%s %s%s\n", ts.Format("15:04:05"), s.State, FormatDuration(s.Age), more, pid, comm, who, what, limitsNote(s.Limits))
}

// Listener writes one line per listener.
func (t *TextWriter) Listener(ts time.Time, l *pipeline.Listener) {
	ts = t.at(ts)
	pid, comm := owner(l.OwnerKnown, l.PID, &l.Comm)
	full := ""
	if l.AcceptQueue > l.AcceptQueueMax {
		full = " FULL"
	}
	cookies := ""
	if l.SynCookiesSent {
		cookies = " SENDING SYN COOKIES"
	}
	t.printf("LISTENER %s %s/%s %s: accept queue %d/%d%s, half-open %d, SYN-ACK retransmits %d, drops %d, SYN cookie handshakes %d%s\n",
		ts.Format("15:04:05"), pid, comm, Local(l.Addr, l.IfIndex), l.AcceptQueue, l.AcceptQueueMax, full, l.HalfOpen, l.SynAckRetrans,
		l.Drops, l.SynCookies, cookies)
}

// Redirect flushes what is buffered, then writes to w.
func (t *TextWriter) Redirect(w io.Writer) error {
	if err := t.Flush(); err != nil {
		return err
	}
	t.w.Reset(w)
	return nil
}

// Local writes a socket's local end as ss does: with the interface it is
// bound to (an IPv6 link-local address's scope) after the address,
// "[fe80::1]%2:8080", but by index: ss shows the interface's name, which
// only the socket's namespace knows (ip -n NS link maps one to the other).
func Local(src netip.AddrPort, ifindex uint32) string {
	if ifindex == 0 {
		return src.String()
	}
	a := src.Addr().String()
	if src.Addr().Is6() {
		a = "[" + a + "]"
	}
	return fmt.Sprintf("%s%%%d:%d", a, ifindex, src.Port())
}
