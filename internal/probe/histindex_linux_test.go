//go:build linux

package probe

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/histogram"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// The kernel's bucket function (aggregate mode) must be Go's, value for
// value: run it in the kernel on boundaries and random values.
func TestKernelHistIndexMatchesGo(t *testing.T) {
	prog := testProgram(t, tcptraceProgHistIndexTest)

	var values []uint64
	for i := 0; i < histogram.NumBuckets; i++ {
		lo, hi := histogram.Bounds(i)
		values = append(values, lo, hi)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 4096; i++ {
		values = append(values, rng.Uint64()>>rng.IntN(64))
	}
	values = append(values, 0, 1, 63, 64, 65, math.MaxUint64)
	for len(values)%64 != 0 {
		values = append(values, 0)
	}
	for off := 0; off < len(values); off += 64 {
		var args tcptraceHistIndexArgs
		copy(args.Values[:], values[off:off+64])
		runWithArgs(t, prog, &args)
		for i, v := range args.Values {
			if got, want := int(args.Index[i]), histogram.Index(v); got != want {
				t.Fatalf("value %d: kernel bucket %d, Go bucket %d", v, got, want)
			}
		}
	}
}

// Retransmissions count as the kernel's total_retrans counts them: one
// dropped below TCP (a local firewall: err -EPERM) counts, one given up
// before it was built (err -EBUSY: the original still in the host queue)
// does not; SYN retransmits are the socket's total_retrans itself.
func TestKernelCountsRetransmitsAsTotalRetrans(t *testing.T) {
	prog := testProgram(t, tcptraceProgRetransCountTest)
	const synSent, established, ebusy, eperm = 2, 1, -16, -1
	args := tcptraceRetransTestArgs{
		State:        [8]int32{synSent, synSent, synSent, established, established, established},
		Err:          [8]int32{0, eperm, ebusy, 0, eperm, ebusy},
		TotalRetrans: [8]uint32{1, 2, 2, 2, 3, 3},
		N:            6,
	}
	runWithArgs(t, prog, &args)
	if args.SynRetrans != 2 || args.Retrans != 2 {
		t.Fatalf("counted %d SYN retransmits and %d retransmits, want 2 and 2 (the -EPERM ones were built and counted by the kernel, the -EBUSY ones not)", args.SynRetrans, args.Retrans)
	}
}

// testProgram loads one of the object's syscall test hooks (root).
func testProgram(t *testing.T, name string) *ebpf.Program {
	t.Helper()
	nettest.RequirePrivileges(t)
	spec, err := loadTcptrace()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(spec.Programs[name])
	if err != nil {
		t.Fatalf("loading test program %s: %v", name, err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// The socket entry's rules, run in the kernel: a transition that leaves a
// state other than the one the socket was last seen entering marks a gap
// (its stay is no stay of the old state's) and counts the fewest
// transitions the kernel must have made unseen; the tracepoint fallback
// tells two sockets at one address apart by their ports.
func TestKernelEntryRules(t *testing.T) {
	prog := testProgramWithMaps(t, tcptraceProgEntryRulesTest)
	const (
		est, synSent, finWait1, finWait2, closeWait, lastAck = 1, 2, 4, 5, 8, 9
		gap                                                  = uint32(event.Gap)
	)
	type tc struct {
		name                            string
		last, old                       uint32
		idSport, idDport, sport, dport  uint16
		wantFlags, wantUnseen, wantSame uint32
	}
	cases := []tc{
		{"continuous", est, est, 0, 0, 0, 0, 0, 0, 1},
		{"state unknown (seeded, or fresh)", 0, closeWait, 0, 0, 0, 0, 0, 0, 1},
		// ESTABLISHED->CLOSE_WAIT unseen: the CLOSE_WAIT stay's start.
		{"one unseen", est, closeWait, 0, 0, 0, 0, gap, 1, 1},
		// SYN_SENT->ESTABLISHED->CLOSE_WAIT unseen.
		{"two unseen", synSent, closeWait, 0, 0, 0, 0, gap, 2, 1},
		// FIN_WAIT1->CLOSE, CLOSE->SYN_SENT, SYN_SENT->ESTABLISHED unseen:
		// the struct sock closed and connected again, same socket.
		{"closed and reconnected unseen", finWait1, est, 0, 0, 0, 0, gap, 3, 1},
		{"last ack to its close", lastAck, lastAck, 0, 0, 0, 0, 0, 0, 1},
		{"another socket's ports", finWait2, finWait2, 40000, 8044, 40001, 8044, 0, 0, 0},
		{"local port chosen since", synSent, synSent, 0, 8044, 40000, 8044, 0, 0, 1},
	}
	var args tcptraceEntryTestArgs
	for i, c := range cases {
		a := &args.C[i]
		a.Last, a.Old, a.IdSport, a.IdDport, a.Sport, a.Dport = c.last, c.old, c.idSport, c.idDport, c.sport, c.dport
	}
	args.N = uint32(len(cases))
	runWithArgs(t, prog, &args)
	for i, c := range cases {
		a := args.C[i]
		if a.Flags != c.wantFlags || a.Unseen != c.wantUnseen || a.Same != c.wantSame {
			t.Errorf("%s: flags %#x, %d unseen, same socket %d; want %#x, %d, %d",
				c.name, a.Flags, a.Unseen, a.Same, c.wantFlags, c.wantUnseen, c.wantSame)
		}
	}
}

// testProgramWithMaps loads the test program name with the maps it reads
// (the read-only tables in .rodata), and no other program.
func testProgramWithMaps(t *testing.T, name string) *ebpf.Program {
	t.Helper()
	nettest.RequirePrivileges(t)
	spec, err := loadTcptrace()
	if err != nil {
		t.Fatal(err)
	}
	spec.Programs = map[string]*ebpf.ProgramSpec{name: spec.Programs[name]}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("loading test program %s: %v", name, err)
	}
	t.Cleanup(coll.Close)
	return coll.Programs[name]
}

// runWithArgs runs a syscall test program on args (a pointer to its
// context struct) and reads back what it wrote there.
func runWithArgs(t *testing.T, prog *ebpf.Program, args any) {
	t.Helper()
	var in bytes.Buffer
	binary.Write(&in, binary.NativeEndian, args)
	out := make([]byte, in.Len())
	if _, err := prog.Run(&ebpf.RunOptions{Context: in.Bytes(), ContextOut: out}); err != nil {
		t.Fatalf("running test program: %v", err)
	}
	if err := binary.Read(bytes.NewReader(out), binary.NativeEndian, args); err != nil {
		t.Fatal(err)
	}
}
