package recording

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
)

// A recording damaged as real ones are: an appended file whose previous
// run crashed (its unwritten tail is zero bytes, 17 MiB of them, with
// the next run's first record on the same line), a line far beyond any
// record, and records with implausible values. Each is skipped, counted
// and named; the good records around them, the one right after the zero
// bytes included, are replayed; nothing prints a negative or wrapped
// duration. (Before: the first line over 16 MiB ended the replay with an
// error and nothing printed; huge durations printed negative; a year-1
// start was taken as unknown.)
func TestReplaySkipsDamage(t *testing.T) {
	const after = `{"type":"transition","ts":"2026-11-30T12:00:03Z","cookie":777,"netns":1,"family":"inet","saddr":"10.0.0.1","sport":1,"daddr":"10.0.0.2","dport":2,"old":"SYN_SENT","new":"ESTABLISHED","dwell_ns":1000}`
	conn := func(start, end, dwell string) string {
		return fmt.Sprintf(`{"type":"connection","cookie":888,"netns":1,"family":"inet","saddr":"10.0.0.1","sport":1,"daddr":"10.0.0.2","dport":2,`+
			`"start":%q,"end":%q,"open":false,"partial":false,"retransmits":0,"syn_retransmits":0,"states":[{"state":"ESTABLISHED","ts":%q,"dwell_ns":%s},{"state":"CLOSE","ts":%q}]}`,
			start, end, start, dwell, end)
	}
	good := "2026-11-30T12:00:04Z"
	damage := []struct{ line, why string }{
		{strings.Repeat("\x00", 17<<20) + after, "zero bytes"},
		{`{"type":"transition","saddr":"` + strings.Repeat("x", 3<<20) + `"}`, "longer than a record can be"},
		{`{"type":"transition","ts":"2026-11-30T12:00:03Z","cookie":5,"netns":1,"family":"inet","saddr":"::1","sport":1,"daddr":"::1","dport":2,"old":"ESTABLISHED","new":"CLOSE_WAIT","dwell_ns":9223372036854775808}`, "dwell_ns 9223372036854775808 is implausible"},
		{conn("0001-01-01T00:00:00Z", good, "5"), "0001-01-01T00:00:00Z is implausible"},
		{conn("2026-11-30T12:00:00Z", "9999-12-31T23:59:59Z", "5"), "end 9999-12-31T23:59:59Z is implausible"},
		{conn("2026-11-30T12:00:00Z", good, "18446744073709551615"), "states[0].dwell_ns 18446744073709551615 is implausible"},
		{`{"type":"stuck","ts":"0001-01-01T00:00:00Z","state":"CLOSE_WAIT","age_ns":5,"age_at_least":false,"cookie":1,"netns":1,"family":"inet","saddr":"::1","sport":1,"daddr":"::1","dport":2}`, "ts 0001-01-01T00:00:00Z is implausible"},
		{`{"type":"states","ts":"1999-12-31T23:59:59Z","counts":{"LISTEN":1}}`, "ts 1999-12-31T23:59:59Z is implausible"},
	}
	in := string(golden(t))
	n := strings.Count(in, "\n")
	goldenTransitions := uint64(strings.Count(in, `"type":"transition"`))
	for _, d := range damage {
		in += d.line + "\n"
	}
	in += "\x00\x00\x00" // the crashed run's tail, nothing after it
	var out, warn bytes.Buffer
	s, err := Replay(strings.NewReader(in), Filter{}, output.NewText(&out, Clock, time.UTC), &warn)
	if err != nil {
		t.Fatalf("replay ended early: %v", err)
	}
	if want := uint64(len(damage) + 1); s.Bad != want || s.Lines != uint64(n)+want {
		t.Errorf("%d lines, %d bad; want %d, %d", s.Lines, s.Bad, uint64(n)+want, want)
	}
	for i, d := range damage {
		if want := fmt.Sprintf("line %d: ", n+i+1); !strings.Contains(warn.String(), want) ||
			!strings.Contains(warn.String(), d.why) {
			t.Errorf("warnings lack %q ... %q:\n%.2000s", want, d.why, warn.String())
		}
	}
	if s.Transitions != goldenTransitions+1 || !strings.Contains(out.String(), "10.0.0.1:1") {
		t.Errorf("%d transitions replayed (want the golden's %d and the one after the zero bytes):\n%s", s.Transitions, goldenTransitions, out.String())
	}
	if m := regexp.MustCompile(`[ (=]-\d`).FindString(out.String()); m != "" {
		t.Errorf("negative duration printed (%q):\n%s", m, out.String())
	}
}

// Lines holds at most MaxLine bytes of any line, however long.
func TestLinesBoundedMemory(t *testing.T) {
	long := io.MultiReader(strings.NewReader(`{"type":`), io.LimitReader(zeroless{}, 1<<30), strings.NewReader("\n{}\n"))
	l := NewLines(long)
	line, ok, err := l.Next()
	if !ok || err != nil || line.Text != nil || !strings.Contains(line.Skipped, "1073741832 bytes") {
		t.Fatalf("long line: %+v %v %v", line, ok, err)
	}
	if cap(l.buf) > 2*MaxLine {
		t.Errorf("held %d bytes of a 1 GiB line", cap(l.buf))
	}
	if line, ok, _ := l.Next(); !ok || string(line.Text) != "{}" || line.Number != 2 {
		t.Errorf("line after it: %+v", line)
	}
	if _, ok, _ := l.Next(); ok {
		t.Error("a line after the end")
	}
}

// zeroless reads as an endless run of 'x'.
type zeroless struct{}

func (zeroless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}
