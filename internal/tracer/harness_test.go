//go:build linux

package tracer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	schema "github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// record is any NDJSON record, with the fields the tests look at. Every
// line is first checked against its type in internal/record, the one
// definition of the schema (see parseRecords).
type record struct {
	Type    string  `json:"type"`
	TS      string  `json:"ts"`
	Cookie  uint64  `json:"cookie"`
	Netns   uint32  `json:"netns"`
	Family  string  `json:"family"`
	Saddr   string  `json:"saddr"`
	Sport   int     `json:"sport"`
	Daddr   string  `json:"daddr"`
	Dport   int     `json:"dport"`
	Old     string  `json:"old"`
	New     string  `json:"new"`
	DwellNs *uint64 `json:"dwell_ns"`
	PID     *int    `json:"pid"`
	Comm    string  `json:"comm"`
	Cgroup  string  `json:"cgroup"`
	Unit    string  `json:"unit"`
	Open    bool    `json:"open"`
	Partial bool    `json:"partial"`
	Start   string  `json:"start"`
	States  []struct {
		State    string  `json:"state"`
		TS       string  `json:"ts"`
		DwellNs  *uint64 `json:"dwell_ns"`
		Inferred bool    `json:"inferred"`
		Unseen   bool    `json:"unseen"`
	} `json:"states"`
	TimeWait         *bool `json:"time_wait"`
	FinWait2TimeWait bool  `json:"fin_wait2_timewait"`
	Held             *bool `json:"held"`
	Holders          []struct {
		PID  int    `json:"pid"`
		Comm string `json:"comm"`
	} `json:"holders"`
	CreatorPID     *int              `json:"creator_pid"`
	Accepted       bool              `json:"accepted"`
	Evicted        bool              `json:"evicted"`
	Reset          string            `json:"reset"`
	Error          string            `json:"error"`
	Retransmits    uint64            `json:"retransmits"`
	SynRetransmits uint64            `json:"syn_retransmits"`
	TotalRetrans   *uint64           `json:"total_retrans"`
	BytesAcked     uint64            `json:"bytes_acked"`
	BytesReceived  uint64            `json:"bytes_received"`
	HandshakeRTT   *uint64           `json:"handshake_ns"`
	AgeNs          uint64            `json:"age_ns"`
	AgeAtLeast     bool              `json:"age_at_least"`
	Counts         map[string]uint64 `json:"counts"`
	AcceptQueue    uint64            `json:"accept_queue"`
	AcceptQueueMax uint64            `json:"accept_queue_max"`
	HalfOpen       uint64            `json:"half_open"`
	SynAckRetrans  uint64            `json:"synack_retransmits"`
	State          string            `json:"state"`
	Count          uint64            `json:"count"`
	P50            uint64            `json:"p50_ns"`
	SumNs          uint64            `json:"sum_ns"`
	MinNs          uint64            `json:"min_ns"`
	MaxNs          uint64            `json:"max_ns"`
	Buckets        []struct {
		Ge    uint64 `json:"ge_ns"`
		Le    uint64 `json:"le_ns"`
		Count uint64 `json:"count"`
	} `json:"buckets"`
	Untimed        uint64 `json:"untimed"`
	UntimedReasons *struct {
		NoStart   uint64 `json:"no_start"`
		Gap       uint64 `json:"gap"`
		SynCookie uint64 `json:"syncookie"`
	} `json:"untimed_reasons"`
	Evictions      uint64 `json:"evictions"`
	SynCookie      bool   `json:"syncookie"`
	Drops          uint64 `json:"drops"`
	SynCookies     uint64 `json:"syncookies"`
	SynCookiesSent *bool  `json:"syncookies_sent"`
	Aggregated     uint64 `json:"aggregated"`
	StorageFail    uint64 `json:"storage_fail"`
	Events         uint64 `json:"events"`
	Lost           uint64 `json:"lost"`
	LostInferred   uint64 `json:"lost_inferred"`
	Reclaimed      uint64 `json:"reclaimed"`
	Rescued        uint64 `json:"rescued"`
	Attach         string `json:"attach"`

	// The namespace's identity and the bound interface; on lost and stats
	// records, the kernel's recursion skips and whether (on a filtered
	// run) they are the whole host's.
	NetnsCookie       uint64 `json:"netns_cookie"`
	Ifindex           uint32 `json:"ifindex"`
	Recursion         uint64 `json:"recursion"`
	Unsent            uint64 `json:"unsent"`
	RecursionHostWide bool   `json:"recursion_host_wide"`
	LostHostWide      uint64 `json:"lost_host_wide"`
}

// lockedBuffer is an io.Writer safe for the tracer and the test to share.
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ready != nil && bytes.Contains(p, []byte("tcptrace-bpf: tracing")) {
		b.once.Do(func() { close(b.ready) })
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type traced struct {
	cancel context.CancelFunc
	done   chan error
	out    *lockedBuffer
	errOut *lockedBuffer
}

// startTracer runs Run in the background and returns once the probes are
// attached.
func startTracer(t *testing.T, cfg config.Config) *traced {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traced{cancel: cancel, done: make(chan error, 1), out: &lockedBuffer{},
		errOut: &lockedBuffer{ready: make(chan struct{})}}
	go func() { tr.done <- Run(ctx, cfg, tr.out, tr.errOut) }()
	select {
	case <-tr.errOut.ready:
	case err := <-tr.done:
		cancel()
		t.Fatalf("tracer ended before it was ready: %v\nstderr: %s", err, tr.errOut)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("tracer not ready after 20 s; stderr: %s", tr.errOut)
	}
	t.Cleanup(cancel)
	return tr
}

// stop ends the run like SIGINT would and returns every record written.
func (tr *traced) stop(t *testing.T) []record {
	t.Helper()
	tr.cancel()
	select {
	case err := <-tr.done:
		if err != nil {
			t.Fatalf("tracer: %v\nstderr: %s", err, tr.errOut)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tracer did not stop within 20 s of cancel")
	}
	return parseRecords(t, tr.out.String())
}

func parseRecords(t *testing.T, s string) []record {
	t.Helper()
	var recs []record
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if _, err := schema.DecodeStrict(sc.Bytes()); err != nil {
			t.Fatalf("line is not a record of docs/ndjson.md: %v: %q", err, sc.Text())
		}
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line is not JSON: %v: %q", err, sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

func ofType(recs []record, typ string) []record {
	var out []record
	for _, r := range recs {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// byCookie groups transitions per socket, in arrival order.
func byCookie(recs []record) map[uint64][]record {
	m := map[uint64][]record{}
	for _, r := range ofType(recs, "transition") {
		m[r.Cookie] = append(m[r.Cookie], r)
	}
	return m
}

// path renders a socket's transitions as "CLOSE>SYN_SENT>ESTABLISHED...".
func path(ts []record) string {
	if len(ts) == 0 {
		return ""
	}
	parts := []string{ts[0].Old}
	for _, r := range ts {
		parts = append(parts, r.New)
	}
	return strings.Join(parts, ">")
}
