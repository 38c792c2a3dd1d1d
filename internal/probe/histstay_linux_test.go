//go:build linux

package probe

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// The histogram-only mode runs without the backup program: a transition
// the kernel skips is lost (counted as recursion), and the socket's next
// transition leaves a state its entry never saw it enter. That stay must
// not be timed from the last transition seen, which would count two
// states' time as one: it is counted untimed (gap), and so is the stay
// whose end was missed. One socket, ESTABLISHED->FIN_WAIT1 skipped.
func TestHistogramModeNeverTimesAcrossAMissedTransition(t *testing.T) {
	nettest.RequirePrivileges(t)
	spec, err := loadTcptrace()
	if err != nil {
		t.Fatal(err)
	}
	for name := range spec.Programs {
		if name != tcptraceProgHistStayTest {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("loading: %v", err)
	}
	defer coll.Close()
	const ms = 1_000_000
	args := tcptraceHistStayTestArgs{
		Now: [8]uint64{1000 * ms, 1001 * ms, 1500 * ms, 1502 * ms},
		Old: [8]int32{int32(event.Close), int32(event.SynSent), int32(event.FinWait1), int32(event.FinWait2)},
		New: [8]int32{int32(event.SynSent), int32(event.Established), int32(event.FinWait2), int32(event.Close)},
		N:   4,
	}
	var in bytes.Buffer
	binary.Write(&in, binary.NativeEndian, &args)
	if _, err := coll.Programs[tcptraceProgHistStayTest].Run(&ebpf.RunOptions{Context: in.Bytes()}); err != nil {
		t.Fatalf("running test program: %v", err)
	}
	type stays struct{ count, sum, gap uint64 }
	got := map[event.State]stays{}
	for _, st := range []event.State{event.SynSent, event.Established, event.FinWait1, event.FinWait2} {
		var per []tcptraceStateHist
		if err := coll.Maps[tcptraceMapDwellHists].Lookup(uint32(st), &per); err != nil {
			t.Fatal(err)
		}
		var s stays
		for _, h := range per {
			s.count += h.Count
			s.sum += h.Sum
			s.gap += h.Untimed[event.UntimedGap]
		}
		got[st] = s
	}
	want := map[event.State]stays{
		event.SynSent:     {count: 1, sum: 1 * ms},
		event.Established: {gap: 1}, // its end was skipped
		event.FinWait1:    {gap: 1}, // its start was skipped: not 501 ms
		event.FinWait2:    {count: 1, sum: 2 * ms},
	}
	for st, w := range want {
		if got[st] != w {
			t.Errorf("%s: %d timed (sum %d ns), %d untimed for a gap; want %d (sum %d), %d", st, got[st].count, got[st].sum, got[st].gap, w.count, w.sum, w.gap)
		}
	}
}

// The histogram-only mode has no backup program
// (the rule above keeps its figures right without it); every mode that
// writes records, and the aggregation with --pid, keep it.
func TestBackupProgramOnlyWhereRecordsAre(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want bool
	}{
		{Options{Config: config.Config{Attach: config.AttachBTF, Emit: config.EmitConnections}}, true},
		{Options{Config: config.Config{Attach: config.AttachBTF, Emit: config.EmitHistograms, PID: 42}}, true},
		{Options{Config: config.Config{Attach: config.AttachBTF, Emit: config.EmitHistograms}}, false},
	} {
		spec, err := loadTcptrace()
		if err != nil {
			t.Fatal(err)
		}
		c.o.RingSize, c.o.MaxConns = 4096, 16
		if err := configure(spec, c.o); err != nil {
			t.Fatal(err)
		}
		if _, got := spec.Programs[tcptraceProgOnStateBackup]; got != c.want {
			t.Errorf("aggregate %v pid %d: backup program loaded %v, want %v", c.o.Aggregate(), c.o.PID, got, c.want)
		}
	}
}
