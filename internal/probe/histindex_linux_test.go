//go:build linux

package probe

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cilium/ebpf"

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
		var in bytes.Buffer
		binary.Write(&in, binary.NativeEndian, &args)
		out := make([]byte, in.Len())
		if _, err := prog.Run(&ebpf.RunOptions{Context: in.Bytes(), ContextOut: out}); err != nil {
			t.Fatalf("running test program: %v", err)
		}
		if err := binary.Read(bytes.NewReader(out), binary.NativeEndian, &args); err != nil {
			t.Fatal(err)
		}
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
	var in bytes.Buffer
	binary.Write(&in, binary.NativeEndian, &args)
	out := make([]byte, in.Len())
	if _, err := prog.Run(&ebpf.RunOptions{Context: in.Bytes(), ContextOut: out}); err != nil {
		t.Fatalf("running test program: %v", err)
	}
	if err := binary.Read(bytes.NewReader(out), binary.NativeEndian, &args); err != nil {
		t.Fatal(err)
	}
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
