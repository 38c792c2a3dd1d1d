//go:build linux

package probe

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// ringWriter is a ring buffer of size bytes and a socket-filter program
// that writes one 8-byte record into it per run: the length of the
// packet it is run on past its Ethernet header, so that each record says
// which run made it.
type ringWriter struct {
	m    *ebpf.Map
	prog *ebpf.Program
}

func newRingWriter(t *testing.T, size uint32, flags int64) *ringWriter {
	t.Helper()
	nettest.RequirePrivileges(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R7, asm.R1, 0, asm.Word), // skb->len
			asm.StoreMem(asm.RFP, -8, asm.R7, asm.DWord),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, int32(flags)),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return &ringWriter{m, prog}
}

// write makes the records first, first+1, ..., first+n-1.
func (w *ringWriter) write(t *testing.T, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		if _, err := w.prog.Run(&ebpf.RunOptions{Data: make([]byte, 14+i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// read takes n records and checks they are first, first+1, ...
func read(t *testing.T, r *ring, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		rec, err := r.next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if len(rec) != 8 || binary.NativeEndian.Uint64(rec) != uint64(i) {
			t.Fatalf("record %d: got %x", i, rec)
		}
	}
}

// The reader hands out every record once, in order, also across the end
// of the ring (a record there is contiguous: the data pages are mapped
// twice), and frees the space it has read: the ring fills, is read, and
// takes as many again.
func TestRingReadsInOrderAcrossTheEnd(t *testing.T) {
	w := newRingWriter(t, 4096, 1) // BPF_RB_NO_WAKEUP; 16 bytes a record
	r, err := newRing(w.m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	r.deadline = time.Now().Add(time.Minute)
	next := 0
	for round := 0; round < 5; round++ {
		w.write(t, next, 200) // 3,200 of the 4,096 bytes
		read(t, r, next, 150)
		w.write(t, next+200, 50) // 250 of the 256 records the ring holds
		read(t, r, next+150, 100)
		next += 250
	}
	// The last record's space goes back at the next call, which finds
	// the ring empty.
	r.deadline = time.Now().Add(10 * time.Millisecond)
	if _, err := r.next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("empty ring: %v, want the deadline", err)
	}
	if r.available() != 0 {
		t.Fatalf("%d bytes not handed back", r.available())
	}
}

// With the ring empty, next waits: until the deadline, then
// os.ErrDeadlineExceeded; until a flush from another goroutine, then the
// records that came first and the flush; until the kernel's wakeup.
func TestRingWaitsForDeadlineFlushAndWakeup(t *testing.T) {
	w := newRingWriter(t, 4096, 0) // a wakeup per record
	r, err := newRing(w.m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()

	start := time.Now()
	r.deadline = start.Add(50 * time.Millisecond)
	if _, err := r.next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("empty ring: %v, want the deadline", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("returned after %v, before the deadline", d)
	}

	r.deadline = time.Time{} // none
	go func() {
		time.Sleep(20 * time.Millisecond)
		r.flush()
	}()
	if _, err := r.next(); err != errRingFlushed {
		t.Fatalf("flushed: %v", err)
	}
	w.write(t, 0, 3)
	r.flush()
	read(t, r, 0, 3) // what is in the ring comes before the flush
	if _, err := r.next(); err != errRingFlushed {
		t.Fatalf("after the records: %v, want the flush", err)
	}

	r.deadline = time.Now().Add(10 * time.Second)
	go func() {
		time.Sleep(20 * time.Millisecond)
		w.write(t, 3, 1)
	}()
	start = time.Now()
	read(t, r, 3, 1)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("woken after %v: the kernel's wakeup was missed", d)
	}
}
