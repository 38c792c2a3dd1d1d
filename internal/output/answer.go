package output

import (
	"fmt"
	"net/netip"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// The records of the periodic socket walk that answer "how old, how
// close to the limit": progress, pile, cleared (docs/ndjson.md).

// appendLimits writes record.Limits as "limits", each setting present
// when read; nothing when l is nil.
func appendLimits(b []byte, l *record.Limits) []byte {
	if l == nil {
		return b
	}
	b = append(appendKey(b, `,"limits":`), '{')
	start := len(b)
	field := func(key string, v *uint32) {
		if v == nil {
			return
		}
		if len(b) > start {
			b = append(b, ',')
		}
		b = appendUint(b, key, uint64(*v))
	}
	field(`"listen_backlog":`, l.ListenBacklog)
	field(`"somaxconn":`, l.Somaxconn)
	field(`"tcp_max_syn_backlog":`, l.TCPMaxSynBacklog)
	field(`"tcp_syncookies":`, l.TCPSyncookies)
	field(`"tcp_fin_timeout":`, l.TCPFinTimeout)
	if r := l.LocalPortRange; r != nil {
		if len(b) > start {
			b = append(b, ',')
		}
		b = appendUint(b, `"ip_local_port_range":[`, uint64(r[0]))
		b = append(appendUintRaw(append(b, ','), uint64(r[1])), ']')
	}
	field(`"tcp_tw_reuse":`, l.TCPTwReuse)
	return append(b, '}')
}

// Progress writes a "progress" record.
func (n *NDJSON) Progress(p *pipeline.Progress) {
	s := p.Sock
	b := n.start(record.TypeProgress)
	b = appendTime(b, `,"ts":`, p.TS)
	b = appendUint(b, `,"cookie":`, s.Cookie)
	b = appendUint(b, `,"netns":`, uint64(s.Netns))
	b = appendEndpoints(b, s.Family, s.Src, s.Dst, s.IfIndex)
	b = appendOwner(b, s.OwnerKnown, s.PID, &s.Comm)
	b = appendStr(b, `,"state":`, s.State.String())
	if p.Start != 0 {
		b = n.times.appendTime(b, `,"start":`, n.clock.WallNano(p.Start))
	}
	b = appendUint(b, `,"age_ns":`, p.Age)
	b = appendUint(b, `,"state_age_ns":`, p.StateAge)
	b = appendBool(b, `,"age_at_least":`, p.AtLeast)
	if p.Source != event.AgeTraced {
		b = appendStr(b, `,"age_source":`, p.Source.String())
	}
	b = appendUint(b, `,"bytes_acked":`, s.BytesAcked)
	b = appendUint(b, `,"bytes_received":`, s.BytesReceived)
	b = appendUint(b, `,"srtt_us":`, uint64(s.SRTTMicros))
	b = appendUint(b, `,"total_retrans":`, uint64(s.TotalRetrans))
	n.buf = append(b, '}')
	n.write()
}

// unspecified is the any-address of a family: the end a pile or a
// listener does not have.
func unspecified(f event.Family) netip.AddrPort {
	if f == event.IPv6 {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
}

// Pile writes a "pile" record.
func (n *NDJSON) Pile(p *pipeline.Pile) {
	b := n.start(record.TypePile)
	b = appendTime(b, `,"ts":`, p.TS)
	b = appendStr(b, `,"state":`, p.State.String())
	b = appendUint(b, `,"netns":`, uint64(p.Netns))
	b = appendEndpoints(b, p.Family, unspecified(p.Family), p.Dst, p.IfIndex)
	b = appendUint(b, `,"count":`, p.Count)
	b = appendUint(b, `,"oldest_ns":`, p.Oldest)
	if p.Source != event.AgeTraced {
		b = appendStr(b, `,"age_source":`, p.Source.String())
	}
	b = appendLimits(b, p.Limits)
	n.buf = append(b, '}')
	n.write()
}

// Cleared writes a "cleared" record.
func (n *NDJSON) Cleared(c *pipeline.Cleared) {
	k := c.Conn
	b := n.start(record.TypeCleared)
	b = appendTime(b, `,"ts":`, c.TS)
	b = appendStr(b, `,"state":`, c.State.String())
	b = appendUint(b, `,"cookie":`, k.Cookie)
	b = appendUint(b, `,"netns":`, uint64(k.Netns))
	b = appendEndpoints(b, k.Family, k.Src, k.Dst, k.IfIndex)
	b = appendOwner(b, k.OwnerKnown, k.PID, &k.Comm)
	b = appendTime(b, `,"since":`, c.Since)
	n.buf = append(b, '}')
	n.write()
}

// limitsNote is the text twin of appendLimits.
func limitsNote(l *record.Limits) string {
	if l == nil {
		return ""
	}
	s := ""
	add := func(name string, v *uint32) {
		if v != nil {
			s += fmt.Sprintf(" %s=%d", name, *v)
		}
	}
	add("listen_backlog", l.ListenBacklog)
	add("somaxconn", l.Somaxconn)
	add("tcp_max_syn_backlog", l.TCPMaxSynBacklog)
	add("tcp_syncookies", l.TCPSyncookies)
	add("tcp_fin_timeout", l.TCPFinTimeout)
	if r := l.LocalPortRange; r != nil {
		s += fmt.Sprintf(" ip_local_port_range=%d-%d (%d ports)", r[0], r[1], r[1]-r[0]+1)
	}
	add("tcp_tw_reuse", l.TCPTwReuse)
	if s == "" {
		return ""
	}
	return " [" + s[1:] + "]"
}

// ageNote says how an age was found, when it is a lower bound.
func ageNote(atLeast bool, src event.AgeSource) string {
	switch {
	case !atLeast:
		return ""
	case src == event.AgeFirstSeen || src == event.AgeTraced:
		return " (at least: it was already there when tracing began)"
	}
	return " (at least, from the kernel's " + src.String() + ")"
}

// Progress writes one PROGRESS line.
func (t *TextWriter) Progress(p *pipeline.Progress) {
	s := p.Sock
	pid, comm := owner(s.OwnerKnown, s.PID, &s.Comm)
	t.printf("PROGRESS %s %s for %s%s, open %s: %s/%s %s > %s acked=%d received=%d srtt=%dus retrans=%d\n",
		t.at(p.TS).Format("15:04:05"), s.State, FormatDuration(p.StateAge), ageNote(p.AtLeast, p.Source),
		FormatDuration(p.Age), pid, comm, s.Src, s.Dst, s.BytesAcked, s.BytesReceived, s.SRTTMicros, s.TotalRetrans)
}

// Pile writes one PILE line.
func (t *TextWriter) Pile(p *pipeline.Pile) {
	t.printf("PILE %s %d in %s toward %s (netns %d), the oldest for %s%s%s\n",
		t.at(p.TS).Format("15:04:05"), p.Count, p.State, p.Dst, p.Netns, FormatDuration(p.Oldest),
		ageNote(true, p.Source), limitsNote(p.Limits))
}

// Cleared writes one CLEARED line.
func (t *TextWriter) Cleared(c *pipeline.Cleared) {
	k := c.Conn
	what := k.Src.String()
	if k.Dst.Port() != 0 {
		what = "toward " + k.Dst.String()
	}
	t.printf("CLEARED %s %s on %s (netns %d), stuck since %s\n",
		t.at(c.TS).Format("15:04:05"), c.State, what, k.Netns, t.at(c.Since).Format("15:04:05"))
}
