//go:build linux

package top

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
)

// Render lays a view out on a screen of width x height cells: plain
// text, no escape sequences, so it reads the same over ssh, in tmux and
// in a test.
func Render(v *View, width, height int) string {
	width, height = max(width, 40), max(height, 10)
	var b screen
	b.width = width
	lost := fmt.Sprintf("lost %d", v.Lost.Total())
	if v.Lost.Total() > 0 {
		hostWide := ""
		if v.Lost.RecursionHostWide && v.Lost.TotalRecursion > 0 {
			hostWide = ", the recursion the whole host's"
		}
		lost = fmt.Sprintf("LOST %d (%s%s; last at %s)", v.Lost.Total(), v.Lost.TotalParts().Breakdown(), hostWide, v.Lost.TS.Format("15:04:05"))
	}
	filter := "all"
	if v.Options.Filter != 0 {
		filter = v.Options.Filter.String()
	}
	b.line("tcptrace-bpf top  %s  up %s  %s", v.Now.Format("15:04:05"), v.Now.Sub(v.Start).Round(time.Second), lost)
	b.line("%s; filters: %s", Span(v.Namespaces), cmpOrS(v.Filters, "none"))
	b.line("[s] sort: %s  [f] state: %s  [q] quit", v.Options.Sort, filter)
	if v.Walks == 0 {
		b.line("")
		b.line("waiting for the first socket walk...")
		return b.String(height)
	}
	// The trouble first: what is stuck and who holds the troubled
	// sockets; then the listeners, the tally, the remotes and the dwell.
	// Sections share what the screen has left.
	rows := max(3, (height-20)/3)

	b.line("")
	b.line("%-10s %-16s %-17s %-17s %s", "STUCK", "OWNER", "LOCAL", "REMOTE", "FOR")
	if len(v.Stuck) == 0 {
		b.line("(none)")
	}
	for i, s := range v.Stuck {
		if i == rows {
			b.line("... %d more", len(v.Stuck)-rows)
			break
		}
		dur := age(s.Age, s.AtLeast) + " at report"
		switch {
		case s.HalfOpen > 0:
			dur = fmt.Sprintf("%d half-open, oldest %s", s.HalfOpen, output.FormatDuration(uint64(s.Age)))
		case s.Still:
			dur = age(s.Now, s.AtLeast) + ", still"
		}
		b.line("%-10s %-16s %-17s %-17s %s", s.State, clip(s.Owner, 16), clip(s.Src.String(), 17), clip(s.Dst.String(), 17), dur)
	}

	holders := func(title string, hs []HolderRow) {
		b.line("")
		b.line("%-21s %10s %8s %8s %9s %9s %7s", title, "CLOSE_WAIT", "SYN_SENT", "SYN_RECV", "FIN_WAIT2", "TIME_WAIT", "OLDEST")
		if len(hs) == 0 {
			b.line("(none)")
		}
		for i, h := range hs {
			if i == rows {
				b.line("... %d more", len(hs)-rows)
				break
			}
			b.line("%-21s %10s %8s %8s %9s %9s %7s", clip(h.Name, 21), n(h.Counts[0]), n(h.Counts[1]), n(h.Counts[2]),
				n(h.Counts[3]), n(h.Counts[4]), age(h.Oldest, h.AtLeast))
		}
	}
	holders("PROCESS", v.Processes)

	if f := v.Options.Filter; f == 0 || f == event.SynRecv || f == event.SynSent {
		// A full accept queue drops SYNs: clients wait in SYN_SENT.
		b.line("")
		b.line("%-21s %-16s %12s %5s %9s %9s", "LISTENER", "OWNER", "ACCEPT QUEUE", "FILL", "HALF-OPEN", "SYNACK-RT")
		if len(v.Listeners) == 0 {
			b.line("(none)")
		}
		for i, l := range v.Listeners {
			if i == rows {
				b.line("... %d more", len(v.Listeners)-rows)
				break
			}
			owner := "?"
			if l.OwnerKnown {
				owner = fmt.Sprintf("%d/%s", l.PID, event.CommBytes(&l.Comm))
			}
			fill := "-"
			if l.AcceptQueueMax > 0 {
				fill = fmt.Sprintf("%d%%", uint64(l.AcceptQueue)*100/uint64(l.AcceptQueueMax))
			}
			b.line("%-21s %-16s %12s %5s %9d %9d", clip(l.Addr.String(), 21), clip(owner, 16), fmt.Sprintf("%d/%d", l.AcceptQueue, l.AcceptQueueMax),
				fill, l.HalfOpen, l.SynAckRetrans)
		}
	}

	// The netstat pile, live.
	spark := width - 33
	b.line("")
	b.line("%-13s %7s  %s", "SOCKETS", "NOW", fmt.Sprintf("last %s", historySpan(len(v.History))))
	any := false
	for s := event.State(1); s < event.NumStates; s++ {
		if !shown(v.Options.Filter, s) {
			continue
		}
		var peak uint64
		for _, h := range v.History {
			peak = max(peak, h[s])
		}
		if peak == 0 && v.Counts[s] == 0 {
			continue
		}
		any = true
		b.line("%-13s %7d  %s", s, v.Counts[s], sparkline(v.History, s, spark))
	}
	if !any {
		b.line("(no sockets)")
	}

	holders("REMOTE", v.Remotes)

	var dwell []DwellRow
	for _, d := range v.Dwell {
		if shown(v.Options.Filter, d.State) {
			dwell = append(dwell, d)
		}
	}
	if len(dwell) > 0 {
		b.line("")
		b.line("%-12s %6s %7s %7s %7s | %7s %7s %7s %7s", "DWELL", "last", "p50", "p90", "p99", "total", "p50", "p90", "p99")
		for _, d := range dwell {
			b.line("%-12s %6d %7s %7s %7s | %7d %7s %7s %7s", d.State, d.Last, q(d.LastQ[0], d.LastOK), q(d.LastQ[1], d.LastOK),
				q(d.LastQ[2], d.LastOK), d.Total, q(d.TotalQ[0], d.TotalOK), q(d.TotalQ[1], d.TotalOK), q(d.TotalQ[2], d.TotalOK))
		}
	}
	if len(v.Log) > 0 {
		b.line("")
		b.line("%s", v.Log[len(v.Log)-1])
	}
	return b.String(height)
}

// shown: a state's rows pass the view's state filter (SYN_RECV also
// shows the half-open NEW_SYN_RECV).
func shown(filter, s event.State) bool {
	return filter == 0 || s == filter || (filter == event.SynRecv && s == event.NewSynRecv)
}

// Span says which namespaces a tally spans: "netns N" or "N namespaces".
func Span(ns []uint32) string {
	switch len(ns) {
	case 0:
		return "no namespace holds a traced socket"
	case 1:
		return fmt.Sprintf("netns %d", ns[0])
	}
	return fmt.Sprintf("%d namespaces", len(ns))
}

func cmpOrS(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// screen collects lines clipped to the width.
type screen struct {
	width int
	lines []string
}

func (s *screen) line(format string, args ...any) {
	s.lines = append(s.lines, clip(fmt.Sprintf(format, args...), s.width))
}

// String returns at most height lines; what does not fit is cut from
// the bottom, with a last line saying so.
func (s *screen) String(height int) string {
	if len(s.lines) > height {
		s.lines = append(s.lines[:height-1], fmt.Sprintf("(%d more lines: enlarge the window)", len(s.lines)-height+1))
	}
	return strings.Join(s.lines, "\n")
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func n(c uint64) string {
	if c == 0 {
		return "-"
	}
	return fmt.Sprint(c)
}

func q(d time.Duration, ok bool) string {
	if !ok {
		return "-"
	}
	return output.FormatDuration(uint64(d))
}

// age prints a duration; ">=" when the socket was found in the state
// rather than seen entering it.
func age(d time.Duration, atLeast bool) string {
	s := output.FormatDuration(uint64(max(d, 0)))
	if d >= time.Second {
		s = d.Round(time.Second).String()
	}
	if atLeast {
		return ">=" + s
	}
	return s
}

func historySpan(walks int) string {
	return (time.Duration(walks) * time.Second).String()
}

var bars = []rune(" ▁▂▃▄▅▆▇█")

// sparkline draws the history of one state's count in at most width
// cells, each the peak of the walks it covers, scaled to the peak shown.
func sparkline(h [][event.NumStates]uint64, s event.State, width int) string {
	if width <= 0 || len(h) == 0 {
		return ""
	}
	per := (len(h) + width - 1) / width
	var cells []uint64
	var peak uint64
	for i := 0; i < len(h); i += per {
		var c uint64
		for _, x := range h[i:min(i+per, len(h))] {
			c = max(c, x[s])
		}
		cells = append(cells, c)
		peak = max(peak, c)
	}
	var b strings.Builder
	for _, c := range cells {
		i := 0
		if peak > 0 {
			i = int((c*uint64(len(bars)-1) + peak - 1) / peak)
		}
		b.WriteRune(bars[i])
	}
	return b.String()
}

// Summary is what top leaves on the terminal when it ends: how long, over
// what, the tally at the end, what is still stuck and who holds the most
// troubled sockets, and what was lost. A few lines.
func Summary(v *View) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tcptrace-bpf top: %s over %s; filters: %s\n", v.Now.Sub(v.Start).Round(time.Second), Span(v.Namespaces), cmpOrS(v.Filters, "none"))
	var parts []string
	for s := event.State(1); s < event.NumStates; s++ {
		if v.Counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", s, v.Counts[s]))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	fmt.Fprintf(&b, "  sockets at the end: %s\n", strings.Join(parts, " "))
	stuck := map[string]int{}
	var order []string
	halfOpenNow := map[netip.AddrPort]uint32{}
	for _, l := range v.Listeners {
		halfOpenNow[l.Addr] = l.HalfOpen
	}
	for _, s := range v.Stuck {
		if s.HalfOpen > 0 {
			// A pile is still there while its listener has half-open
			// handshakes at the last walk; then that many.
			if s.HalfOpen = halfOpenNow[s.Src]; s.HalfOpen == 0 {
				continue
			}
		} else if !s.Still {
			continue
		}
		k := fmt.Sprintf("%s by %s", s.State, s.Owner)
		if stuck[k] == 0 {
			order = append(order, k)
		}
		stuck[k] += max(1, int(s.HalfOpen))
	}
	if len(order) > 0 {
		parts = parts[:0]
		for _, k := range order {
			parts = append(parts, fmt.Sprintf("%d %s", stuck[k], k))
		}
		fmt.Fprintf(&b, "  still stuck: %s\n", strings.Join(parts, ", "))
	}
	if len(v.Processes) > 0 {
		p := v.Processes[0]
		fmt.Fprintf(&b, "  most troubled sockets: %s, %d (oldest %s)\n", p.Name, p.Total, age(p.Oldest, p.AtLeast))
	}
	fmt.Fprintf(&b, "  lost %d transitions\n", v.Lost.Total())
	return b.String()
}
