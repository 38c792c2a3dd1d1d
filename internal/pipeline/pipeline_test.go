package pipeline_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/cgroup"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/metrics"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
)

// connectionRecords returns the 10 raw records of one loopback connection
// (client and accepted child, client closes first), as the kernel writes
// them into the ring buffer.
func connectionRecords(clientCookie, childCookie uint64) [][]byte {
	type tr struct {
		cookie     uint64
		sport      uint16
		dport      uint16
		old, new   event.State
		dwellKnown bool
		flags      event.Flags
	}
	seq := []tr{
		{clientCookie, 0, 8080, event.Close, event.SynSent, false, event.Birth},
		{clientCookie, 40000, 8080, event.SynSent, event.Established, true, 0},
		{childCookie, 8080, 40000, event.Listen, event.SynRecv, false, event.Birth | event.Inherited},
		{childCookie, 8080, 40000, event.SynRecv, event.Established, true, 0},
		{clientCookie, 40000, 8080, event.Established, event.FinWait1, true, 0},
		{childCookie, 8080, 40000, event.Established, event.CloseWait, true, 0},
		{clientCookie, 40000, 8080, event.FinWait1, event.FinWait2, true, 0},
		{clientCookie, 40000, 8080, event.FinWait2, event.Close, true, 0},
		{childCookie, 8080, 40000, event.CloseWait, event.LastAck, true, 0},
		{childCookie, 8080, 40000, event.LastAck, event.Close, true, 0},
	}
	out := make([][]byte, len(seq))
	ne := binary.NativeEndian
	for i, s := range seq {
		b := make([]byte, event.Size)
		ne.PutUint64(b[0:], uint64(1_000_000+i*1000))
		ne.PutUint64(b[8:], s.cookie)
		flags := s.flags | event.OwnerKnown
		if s.dwellKnown {
			ne.PutUint64(b[16:], 1000)
			flags |= event.DwellKnown
		}
		copy(b[24:], []byte{127, 0, 0, 1})
		copy(b[40:], []byte{127, 0, 0, 1})
		ne.PutUint32(b[56:], 4026531840)
		ne.PutUint32(b[60:], 4242)
		ne.PutUint16(b[64:], s.sport)
		ne.PutUint16(b[66:], s.dport)
		b[68], b[69], b[70], b[71] = 2, byte(s.old), byte(s.new), byte(flags)
		copy(b[72:], "nginx")
		out[i] = b
	}
	return out
}

// The user-side cost per transition: decode, histogram, timeline and
// NDJSON encoding of everything (transitions and connections), with the
// connection table in steady state. Target: < 300 ns, 0 allocations.
func BenchmarkPipelinePerEvent(b *testing.B) {
	// The owner's cgroup as /proc would give it, for --cgroup-fields.
	proc := b.TempDir()
	os.MkdirAll(filepath.Join(proc, "4242"), 0o755)
	os.WriteFile(filepath.Join(proc, "4242", "cgroup"), []byte("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/"+
		"cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n"), 0o644)
	for _, mode := range []struct {
		name    string
		emit    config.Emit
		cgroups bool
	}{{"all", config.EmitAll, false}, {"default", config.EmitDefault, false}, {"default-cgroup-fields", config.EmitDefault, true}, {"histograms", config.EmitHistograms, false}} {
		b.Run(mode.name, func(b *testing.B) {
			clock := event.NewClock(time.Now(), 0)
			// The kernel source's cache, over a /proc of the test's own.
			idents := cgroup.NewCache(proc, 8192)
			cfg := config.Config{Emit: mode.emit, MaxConns: 1 << 16, CgroupFields: mode.cgroups}
			r := pipeline.New(cfg, cachedSource{c: idents}, output.NewNDJSON(io.Discard, clock), nil, func(error) {})
			recs := connectionRecords(1, 2)
			ne := binary.NativeEndian
			b.ReportAllocs()
			b.ResetTimer()
			var conn uint64
			for i := 0; i < b.N; i++ {
				j := i % len(recs)
				if j == 0 {
					r.Tick(time.Time{}) // as the poll loop does: the held closes go
					conn++              // fresh cookies per connection: client 2n, child 2n+1
					for _, rec := range recs {
						ne.PutUint64(rec[8:], conn*2+uint64(b2i(ne.Uint16(rec[64:]) == 8080)))
					}
				}
				r.Handle(recs[j])
			}
			if r.DecodeErrs != 0 {
				b.Fatalf("%d decode errors", r.DecodeErrs)
			}
			if mode.cgroups && idents.Reads() > 1 {
				b.Fatalf("%d /proc reads for one process in %d connections, want 1", idents.Reads(), r.Conns)
			}
		})
	}
}

// The same with 64 connections in flight, their records interleaved as a
// busy host's are, and the held closes written at each poll: the
// connection table's map and lists at a realistic size.
func BenchmarkPipelineInterleaved(b *testing.B) {
	const inFlight = 64
	for _, mode := range []struct {
		name string
		emit config.Emit
	}{{"all", config.EmitAll}, {"default", config.EmitDefault}} {
		b.Run(mode.name, func(b *testing.B) {
			clock := event.NewClock(time.Now(), 0)
			cfg := config.Config{Emit: mode.emit, MaxConns: 1 << 16}
			r := pipeline.New(cfg, fakeSource{}, output.NewNDJSON(io.Discard, clock), nil, func(error) {})
			var conns [inFlight][][]byte
			for k := range conns {
				conns[k] = connectionRecords(0, 0)
			}
			perConn := len(conns[0])
			ne := binary.NativeEndian
			b.ReportAllocs()
			var conn uint64
			for i := 0; b.Loop(); i++ {
				n := i % (inFlight * perConn)
				if n == 0 {
					r.Tick(time.Time{})
					for k := range conns {
						conn++
						for _, rec := range conns[k] {
							ne.PutUint64(rec[8:], conn*2+uint64(b2i(ne.Uint16(rec[64:]) == 8080)))
						}
					}
				}
				r.Handle(conns[n%inFlight][n/inFlight])
			}
			if r.DecodeErrs != 0 {
				b.Fatalf("%d decode errors", r.DecodeErrs)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// An abortive close: the kernel records ESTABLISHED->CLOSE, then sends the
// reset (tcp_send_reset with state CLOSE), which reaches user space as a
// record of its own. The connection record and the closed-connections
// metric carry it.
func TestResetAfterCloseReachesConnectionAndMetrics(t *testing.T) {
	var out bytes.Buffer
	clock := event.NewClock(time.Unix(1700000000, 0), 0)
	sink, m := output.NewNDJSON(&out, clock), metrics.New()
	r := pipeline.New(config.Config{Emit: config.EmitConnections, MaxConns: 16}, fakeSource{}, sink, []pipeline.Observer{m}, func(error) {})
	recs := connectionRecords(1, 2)[:2] // CLOSE->SYN_SENT->ESTABLISHED
	abort := bytes.Clone(recs[1])
	ne := binary.NativeEndian
	ne.PutUint64(abort[0:], 2_000_000)
	abort[69], abort[70], abort[71] = byte(event.Established), byte(event.Close), byte(event.OwnerKnown|event.DwellKnown|event.CloseInfo)
	reset := make([]byte, event.Size)
	ne.PutUint64(reset[0:], 2_000_500)
	ne.PutUint64(reset[8:], 1)
	reset[68], reset[69], reset[70] = 2, byte(event.Close), byte(event.Close)
	reset[117] = event.ResetSent // rst
	reset[119] = byte(event.KindResetAfterClose)
	for _, rec := range append(recs, abort, reset) {
		r.Handle(rec)
	}
	if r.DecodeErrs != 0 {
		t.Fatalf("%d decode errors", r.DecodeErrs)
	}
	r.Tick(time.Time{}) // the kernel clock is past the hold
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"reset":"sent"`) {
		t.Errorf("connection record lacks the reset: %s", out.String())
	}
	if r.Events != 3 {
		t.Errorf("%d transitions counted, want 3: the reset record is not one", r.Events)
	}
	if got := closedCount(t, m, "ESTABLISHED", "sent"); got != 1 {
		t.Errorf("connections_closed_total{from=ESTABLISHED,reset=sent} = %v, want 1", got)
	}
}

// closedCount reads connections_closed_total{from, reset} from m.
func closedCount(t *testing.T, m *metrics.Metrics, from, reset string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "tcptrace_connections_closed_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["from"] == from && labels["reset"] == reset {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// fakeSource is a kernel side with no walker whose clock is far past every
// record's time (so Tick releases every held connection); idents are the
// owners' cgroup identities by PID.
type fakeSource struct{ idents map[uint32]*event.Identity }

func (f fakeSource) Identity(pid uint32, _ [16]byte) *event.Identity { return f.idents[pid] }

// cachedSource answers identities as the kernel source does, from /proc
// through a cache.
type cachedSource struct {
	fakeSource
	c *cgroup.Cache
}

func (s cachedSource) Identity(pid uint32, comm [16]byte) *event.Identity {
	return s.c.Lookup(pid, comm)
}

func (fakeSource) HasWalker() bool                                      { return false }
func (fakeSource) Walk(event.WalkDetail) ([]byte, error)                { return nil, nil }
func (fakeSource) Holders(map[uint64]bool) map[uint64][]pipeline.Holder { return nil }
func (fakeSource) Now() event.Mono                                      { return 1 << 62 }
func (fakeSource) Recorded() bool                                       { return false }
func (fakeSource) Sysctls(uint32) (pipeline.Sysctls, error)             { return pipeline.Sysctls{}, nil }

// connRecordsOf packs one connection's transition records (in order) into
// a connection record (struct conn_record, event.DecodeConn): the last
// one's fields as the socket's, then each transition's time, dwell,
// states and flags.
func connRecordsOf(recs [][]byte) []byte {
	ne := binary.NativeEndian
	b := make([]byte, event.ConnSize)
	copy(b, recs[len(recs)-1])
	b[119] = byte(event.KindConn) // struct event.kind
	h := b[event.Size:]
	for i, r := range recs {
		ne.PutUint64(h[8*i:], ne.Uint64(r[0:]))     // ts
		ne.PutUint64(h[48+8*i:], ne.Uint64(r[16:])) // dwell
		h[96+i], h[102+i], h[108+i] = r[69], r[70], r[71]
	}
	h[114] = byte(len(recs))
	return b
}

// The default output's user side with connection records
// (config.ConnRecords): one record a connection, expanded into its five
// transitions for the connection table and the NDJSON connection record;
// the histograms are the kernel's. Per transition: ns/op / 5. 0
// allocations.
func BenchmarkPipelineConnRecords(b *testing.B) {
	clock := event.NewClock(time.Now(), 0)
	cfg := config.Config{Emit: config.EmitDefault, MaxConns: 1 << 16}
	r := pipeline.New(cfg, cachedSource{c: cgroup.NewCache(b.TempDir(), 16)}, output.NewNDJSON(io.Discard, clock), nil, func(error) {})
	r.KernelHistograms()
	recs := connectionRecords(1, 2)
	ne := binary.NativeEndian
	var client, server [][]byte
	for _, rec := range recs {
		if ne.Uint16(rec[64:]) == 8080 {
			server = append(server, rec)
		} else {
			client = append(client, rec)
		}
	}
	conns := [][]byte{connRecordsOf(client), connRecordsOf(server)}
	b.ReportAllocs()
	b.ResetTimer()
	var conn uint64
	for i := 0; i < b.N; i++ {
		j := i % 2
		if j == 0 {
			r.Tick(time.Time{})
			conn++
			ne.PutUint64(conns[0][8:], conn*2)
			ne.PutUint64(conns[1][8:], conn*2+1)
		}
		r.Handle(conns[j])
	}
	if r.DecodeErrs != 0 || r.Events != uint64(b.N)*5 {
		b.Fatalf("%d decode errors, %d transitions from %d records", r.DecodeErrs, r.Events, b.N)
	}
}
