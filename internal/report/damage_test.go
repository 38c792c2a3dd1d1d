package report

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/recording"
)

// connWithDwell is a connection whose ESTABLISHED stay lasted dwell ns.
func connWithDwell(dwell uint64) string {
	return fmt.Sprintf(`{"type":"connection","cookie":888,"netns":1,"family":"inet","saddr":"10.0.0.1","sport":1,"daddr":"10.0.0.2","dport":2,`+
		`"end":"2026-11-30T12:00:04Z","open":false,"partial":true,"retransmits":0,"syn_retransmits":0,`+
		`"states":[{"state":"ESTABLISHED","dwell_ns":%d},{"state":"CLOSE","ts":"2026-11-30T12:00:04Z"}]}`+"\n", dwell)
}

// The longest plausible stays draw in the histogram view, with bars
// labelled by positive durations. (Before: a dwell_ns of 2^62 or more
// panicked with an index out of range.)
func TestHistogramViewLongestStays(t *testing.T) {
	for _, dwell := range []uint64{1 << 62, record.MaxDuration, 1 << 63, 1<<64 - 1} {
		if dwell > record.MaxDuration {
			s, err := recording.Replay(strings.NewReader(connWithDwell(dwell)), recording.Filter{}, NewCollector(recording.Clock), &bytes.Buffer{})
			if err != nil || s.Bad != 1 {
				t.Errorf("dwell %d: implausible, yet %d bad lines (%v)", dwell, s.Bad, err)
			}
			continue
		}
		// Connections alone: their spans make the histograms (with
		// transitions in a recording, the transitions' stays do).
		var conns []byte
		for _, l := range bytes.SplitAfter(sampleRecording(t), []byte("\n")) {
			if bytes.Contains(l, []byte(`"type":"connection"`)) {
				conns = append(conns, l...)
			}
		}
		page := renderRecording(t, append(conns, connWithDwell(dwell)...))
		if !strings.Contains(page, `<svg class="chart histogram" data-state="ESTABLISHED"`) {
			t.Errorf("dwell %d: no ESTABLISHED histogram", dwell)
		}
		if m := regexp.MustCompile(`<title>[^<]*-\d[^<]*stays`).FindString(page); m != "" {
			t.Errorf("dwell %d: negative bar label %q", dwell, m)
		}
	}
}

// The report's data path (replay, collector, page) never panics, whatever
// the recording holds.
func FuzzReport(f *testing.F) {
	f.Add(sampleRecording(f))
	f.Add([]byte(connWithDwell(1 << 62)))
	f.Add([]byte(connWithDwell(record.MaxDuration)))
	f.Add([]byte(connWithDwell(1<<64 - 1)))
	f.Add([]byte(`{"type":"states","ts":"0001-01-01T00:00:00Z","counts":{"LISTEN":18446744073709551615}}` + "\n" +
		`{"type":"states","ts":"2199-12-31T23:59:59Z","counts":{"LISTEN":18446744073709551615}}` + "\n"))
	f.Add([]byte(`{"type":"listener","ts":"2026-11-30T12:00:00Z","netns":1,"family":"inet","saddr":"0.0.0.0","sport":80,"accept_queue":18446744073709551615,"accept_queue_max":0,"half_open":0,"synack_retransmits":0}` + "\n"))
	f.Add(append(bytes.Repeat([]byte{0}, 100), sampleRecording(f)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := NewCollector(recording.Clock)
		s, err := recording.Replay(bytes.NewReader(b), recording.Filter{}, c, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("replay of an in-memory recording failed: %v", err)
		}
		if s.Bad > s.Lines {
			t.Fatalf("summary %+v", s)
		}
		if err := c.Render(&bytes.Buffer{}, "fuzz"); err != nil {
			t.Fatal(err)
		}
	})
}

// Two namespaces that had the same inode, one after the other (the
// kernel reuses inodes), each with a listener on 0.0.0.0:8080: two
// listeners, told apart by their namespaces' cookies.
func TestListenersOfReusedInodesApart(t *testing.T) {
	var rec []byte
	for i, ck := range []int{11, 12} {
		rec = fmt.Appendf(rec, `{"type":"listener","ts":"2026-11-30T12:00:0%dZ","netns":4026532300,"netns_cookie":%d,"family":"inet","saddr":"0.0.0.0","sport":8080,"accept_queue":%d,"accept_queue_max":128,"half_open":0,"synack_retransmits":0}`+"\n",
			i, ck, i+1)
	}
	c := NewCollector(recording.Clock)
	if _, err := recording.Replay(bytes.NewReader(rec), recording.Filter{}, c, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if views, n := c.listenerViews(); n != 2 || len(views) != 2 {
		t.Errorf("%d listeners (%d shown), want 2", n, len(views))
	}
}
