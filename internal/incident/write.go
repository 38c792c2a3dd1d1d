package incident

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// lineWriter is what both writers share: a buffered writer whose first
// error sticks.
type lineWriter struct {
	w   *bufio.Writer
	err error
}

func (b *lineWriter) write(p []byte) {
	if b.err == nil {
		_, b.err = b.w.Write(p)
	}
}

func (b *lineWriter) Flush() error {
	if b.err == nil {
		b.err = b.w.Flush()
	}
	return b.err
}

func (b *lineWriter) Redirect(w io.Writer) error {
	if err := b.Flush(); err != nil {
		return err
	}
	b.w.Reset(w)
	return nil
}

// Text writes one line per Line for a person:
//
//	18:40:07 demo-leaky[4312]: 3 in CLOSE_WAIT on 127.0.0.1:9003, oldest 7m36s
type Text struct {
	lineWriter
	loc *time.Location
}

// NewText returns a text Writer on w, times in loc.
func NewText(w io.Writer, loc *time.Location) *Text {
	return &Text{lineWriter: lineWriter{w: bufio.NewWriter(w)}, loc: loc}
}

// Line writes l.
func (t *Text) Line(l *Line) {
	t.write([]byte(l.TS.In(t.loc).Format("15:04:05") + " " + l.String() + "\n"))
}

// String is the line without its time.
func (l *Line) String() string {
	var b strings.Builder
	if l.ShowNetns {
		fmt.Fprintf(&b, "netns %d ", l.Netns)
	}
	if l.Cleared {
		b.WriteString("cleared: ")
	}
	if l.OwnerKnown {
		fmt.Fprintf(&b, "%s[%d]: ", event.CommBytes(&l.Comm), l.PID)
	} else if l.State != event.TimeWait {
		b.WriteString("?: ")
	}
	what := l.State.String()
	if l.State == event.SynRecv {
		what = "half-open handshakes (SYN_RECV)"
	}
	switch {
	case l.Cleared && l.PileLimit > 0: // a pile under its count, not gone
		fmt.Fprintf(&b, "at most %d in %s", l.PileLimit, what)
	case l.Cleared:
		fmt.Fprintf(&b, "no more %s", what)
	default:
		fmt.Fprintf(&b, "%d in %s", l.Count, what)
	}
	switch l.State {
	case event.SynSent:
		fmt.Fprintf(&b, " to %s (no answer)", l.Remote)
	case event.SynRecv:
		fmt.Fprintf(&b, " on %s from %s", l.Local, l.RemotePrefix)
	case event.TimeWait:
		fmt.Fprintf(&b, " toward %s", l.RemotePrefix.Addr())
	default:
		if l.Local.IsValid() {
			fmt.Fprintf(&b, " on %s", l.Local)
		}
		if l.Remote.IsValid() {
			fmt.Fprintf(&b, " to %s", l.Remote)
		}
	}
	if l.Cleared {
		fmt.Fprintf(&b, " (was %d)", l.Count)
		return b.String()
	}
	if l.Oldest > 0 {
		b.WriteString(", oldest ")
		if l.OldestAtLeast {
			b.WriteString(">=")
		}
		b.WriteString(age(l.Oldest))
	}
	switch {
	case l.PileLimit > 0:
		fmt.Fprintf(&b, " (limit %d)", l.PileLimit)
	case l.LimitNs > 0:
		fmt.Fprintf(&b, " (stuck past %s)", time.Duration(l.LimitNs))
	}
	return b.String()
}

// age is a socket's age as a person reads it: 7m36s, 3.2s, 850ms.
func age(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// NDJSON writes one incident record per Line (docs/ndjson.md).
type NDJSON struct {
	lineWriter
	stream record.Stream // this run's, Seq the last written
}

// NewNDJSON returns an NDJSON Writer on w; its records carry a run of
// their own and a sequence number (record.Stream).
func NewNDJSON(w io.Writer) *NDJSON {
	return &NDJSON{lineWriter: lineWriter{w: bufio.NewWriter(w)}, stream: record.Stream{Run: record.NewRun()}}
}

// Line writes l as an incident record.
func (n *NDJSON) Line(l *Line) {
	r := l.Record()
	n.stream.Seq++
	r.Stream = n.stream
	b, err := record.Encode(r)
	if err != nil {
		n.err = err
		return
	}
	n.write(b)
}

// Record is l as the NDJSON schema's incident record.
func (l *Line) Record() *record.Incident {
	r := &record.Incident{Type: record.TypeIncident, TS: l.TS.UTC(), State: l.State.String(), Netns: l.Netns,
		Count: l.Count, OldestAtLeast: l.OldestAtLeast, Cleared: l.Cleared}
	if l.Oldest > 0 {
		ns := uint64(l.Oldest)
		r.OldestNs = &ns
	}
	if l.OwnerKnown {
		r.Owner = &record.Owner{PID: l.PID, Comm: string(event.CommBytes(&l.Comm))}
	}
	if l.Local.IsValid() {
		r.Local = l.Local.String()
	}
	if l.Remote.IsValid() {
		r.Remote = l.Remote.String()
	}
	if l.RemotePrefix.IsValid() {
		r.RemotePrefix = l.RemotePrefix.String()
	}
	if l.LimitNs > 0 {
		v := l.LimitNs
		r.LimitNs = &v
	}
	if l.PileLimit > 0 {
		v := l.PileLimit
		r.PileLimit = &v
	}
	return r
}
