package report

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// tick is one labelled mark on an axis, at Pos pixels.
type tick struct {
	Pos   float64
	Label string
}

// countTicks returns 0 and 1-2-5 steps up to at least top: about n ticks.
// The last tick is the axis's maximum.
func countTicks(top uint64, n int) []uint64 {
	if top == 0 {
		return []uint64{0, 1}
	}
	raw := float64(top) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	s := uint64(math.Max(step, 1))
	var out []uint64
	for v := uint64(0); ; v += s {
		out = append(out, v)
		if v >= top || v > math.MaxUint64-s { // the last tick, also when the next would wrap
			return out
		}
	}
}

// durationTicks returns the round durations (1, 10, 100 of a unit, and
// 1m, 10m, 1h...) between lo and hi ns, with 3s in between when the range
// is narrow.
func durationTicks(lo, hi float64) []uint64 {
	var round []uint64
	for d := uint64(1); d < 1e9; d *= 10 {
		round = append(round, d)
	}
	round = append(round, 1e9, 10e9, 60e9, 600e9, 3600e9, 36000e9, 86400e9)
	var out []uint64
	for _, d := range round {
		if float64(d) >= lo && float64(d) <= hi {
			out = append(out, d)
		}
	}
	if len(out) < 3 {
		out = out[:0]
		for _, d := range round {
			for _, m := range []uint64{1, 3} {
				if v := d * m; float64(v) >= lo && float64(v) <= hi {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// durationLabel writes a round duration short: 1µs, 10ms, 3s, 1m, 1h.
func durationLabel(ns uint64) string {
	units := []struct {
		d    uint64
		name string
	}{{86400e9, "d"}, {3600e9, "h"}, {60e9, "m"}, {1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}}
	for _, u := range units {
		if ns >= u.d {
			return strconv.FormatFloat(float64(ns)/float64(u.d), 'g', 3, 64) + u.name
		}
	}
	return fmt.Sprintf("%dns", ns)
}

// timeScale maps wall-clock times onto [x0, x0+w].
type timeScale struct {
	from, to time.Time
	x0, w    float64
}

func (s timeScale) x(t time.Time) float64 {
	span := s.to.Sub(s.from)
	if span <= 0 {
		return s.x0
	}
	return s.x0 + s.w*float64(t.Sub(s.from))/float64(span)
}

// ticks returns round wall-clock times across the scale, about n of them.
func (s timeScale) ticks(n int) []tick {
	span := s.to.Sub(s.from)
	steps := []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
		10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
		200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
		10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
		10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour,
		6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	step := steps[len(steps)-1]
	for _, st := range steps {
		if span/st <= time.Duration(n) {
			step = st
			break
		}
	}
	layout := "15:04:05"
	if step < time.Second {
		layout = "15:04:05.000"
	}
	var out []tick
	for t := s.from.Truncate(step); !t.After(s.to); t = t.Add(step) {
		if t.Before(s.from) {
			continue
		}
		out = append(out, tick{Pos: s.x(t), Label: t.UTC().Format(layout)})
	}
	return out
}

// clock writes a wall-clock time for hover details.
func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }
