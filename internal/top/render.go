//go:build linux

package top

import (
	"fmt"
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
		if v.Lost.RecursionHostWide {
			hostWide = " of the whole host"
		}
		lost = fmt.Sprintf("LOST %d (ring full %d, recursion %d%s, bad %d; last at %s)", v.Lost.Total(),
			v.Lost.TotalRingbufFull, v.Lost.TotalRecursion, hostWide, v.Lost.TotalDecode, v.Lost.TS.Format("15:04:05"))
	}
	filter := "all"
	if v.Options.Filter != 0 {
		filter = v.Options.Filter.String()
	}
	b.line("tcptrace-bpf top  %s  up %s  %s", v.Now.Format("15:04:05"), v.Now.Sub(v.Start).Round(time.Second), lost)
	b.line("[s] sort: %s  [f] state: %s  [q] quit", v.Options.Sort, filter)
	if v.Walks == 0 {
		b.line("")
		b.line("waiting for the first socket walk...")
		return b.String(height)
	}

	// The netstat pile, live.
	spark := width - 33
	b.line("")
	b.line("%-13s %7s  %s", "SOCKETS", "NOW", fmt.Sprintf("last %s", historySpan(len(v.History))))
	any := false
	for s := event.State(1); s < event.NumStates; s++ {
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

	rows := max(3, (height-14-len(v.Dwell))/4)
	if len(v.Dwell) > 0 {
		b.line("")
		b.line("%-13s %6s %8s %8s %8s  | %8s %8s %8s %8s", "DWELL", "last", "p50", "p90", "p99", "total", "p50", "p90", "p99")
		for _, d := range v.Dwell {
			b.line("%-13s %6d %8s %8s %8s  | %8d %8s %8s %8s", d.State, d.Last, q(d.LastQ[0], d.LastOK), q(d.LastQ[1], d.LastOK),
				q(d.LastQ[2], d.LastOK), d.Total, q(d.TotalQ[0], d.TotalOK), q(d.TotalQ[1], d.TotalOK), q(d.TotalQ[2], d.TotalOK))
		}
	}

	holders := func(title string, hs []HolderRow) {
		b.line("")
		b.line("%-28s %10s %8s %8s %9s %9s %9s", title, "CLOSE_WAIT", "SYN_SENT", "SYN_RECV", "FIN_WAIT2", "TIME_WAIT", "OLDEST")
		if len(hs) == 0 {
			b.line("(none)")
		}
		for i, h := range hs {
			if i == rows {
				b.line("... %d more", len(hs)-rows)
				break
			}
			b.line("%-28s %10s %8s %8s %9s %9s %9s", clip(h.Name, 28), n(h.Counts[0]), n(h.Counts[1]), n(h.Counts[2]),
				n(h.Counts[3]), n(h.Counts[4]), age(h.Oldest, h.AtLeast))
		}
	}
	holders("PROCESS (troubled sockets)", v.Processes)
	holders("REMOTE", v.Remotes)

	b.line("")
	b.line("%-8s %-11s %-22s %-22s %-22s %s", "STUCK", "STATE", "OWNER", "LOCAL", "REMOTE", "FOR")
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
		b.line("%-8s %-11s %-22s %-22s %-22s %s", s.TS.Format("15:04:05"), s.State, clip(s.Owner, 22), s.Src, s.Dst, dur)
	}

	b.line("")
	b.line("%-28s %-22s %12s %5s %9s %8s", "LISTENER", "OWNER", "ACCEPT QUEUE", "FILL", "HALF-OPEN", "SYNACK-RT")
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
		b.line("%-28s %-22s %12s %5s %9d %8d", l.Addr, clip(owner, 22), fmt.Sprintf("%d/%d", l.AcceptQueue, l.AcceptQueueMax),
			fill, l.HalfOpen, l.SynAckRetrans)
	}
	if len(v.Log) > 0 {
		b.line("")
		b.line("%s", v.Log[len(v.Log)-1])
	}
	return b.String(height)
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
