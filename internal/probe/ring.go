//go:build linux

package probe

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ring reads the BPF ring buffer in batches, in place. cilium/ebpf's
// ringbuf.Reader copies each record out and, per record, takes a mutex,
// loads the producer position (a cache line the kernel's CPUs write at
// every reserve) and stores the consumer position (one they read at every
// reserve): at ~200,000 records a second that was a tenth of the
// tracer's time. Here the producer position is loaded once per batch,
// records are handed out where the kernel wrote them, and the consumer
// position is stored each time the records known are read (before the
// producer position is loaded again), every commitEvery bytes in a long
// batch, and always before a wait, since the programs compare it with
// their wakeup watermark.
//
// The layout is the kernel's (kernel/bpf/ringbuf.c): one page holding the
// consumer position (mapped writable), one holding the producer position,
// then the data pages mapped twice in a row, so that a record that wraps
// around the end is contiguous. Each record has an 8-byte header: its
// length with the busy and discard bits, and is padded to 8 bytes.
type ring struct {
	mapped  [2][]byte // the consumer page; the producer page and the data, twice
	data    []byte
	consPos *uint64
	prodPos *uint64
	mask    uint64
	size    int
	// commitEvery: in a long batch, the consumer position is stored at
	// least this often (bytes), so that the kernel sees the space free
	// long before the ring could fill.
	commitEvery uint64

	// f is the ring's file descriptor (a duplicate) in Go's poller, which
	// waits for the kernel's wakeups without a thread blocked in a
	// system call: a blocking epoll_wait of tens of milliseconds made the
	// runtime's monitor thread take the thread's P back and then poll
	// every 20 µs for a while, ~600 wakeups a second of the tracer's
	// process doing nothing.
	f        *os.File
	raw      syscall.RawConn
	deadline time.Time
	flushed  atomic.Bool

	pos       uint64 // the next record's position, not yet stored in consPos
	prod      uint64 // the producer position of this batch
	committed uint64 // what consPos holds
	// pending: the wait ended (deadline or flush); what is left in the
	// ring is read first, then this is returned.
	pending error
}

const (
	ringHdrSize = 8
	ringBusyBit = 1 << 31
	ringDiscard = 1 << 30
	ringLenMask = ringDiscard - 1
)

// errRingFlushed is what next returns once a flush has been drained.
var errRingFlushed = errors.New("ring buffer flushed")

func newRing(m *ebpf.Map) (r *ring, err error) {
	size := int(m.MaxEntries())
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d is not a power of two", size)
	}
	page := os.Getpagesize()
	r = &ring{size: size, mask: uint64(size - 1), commitEvery: min(256<<10, uint64(size)/16)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.mapped[0], err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the ring's consumer page: %w", err)
	}
	if r.mapped[1], err = unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the ring's data pages: %w", err)
	}
	r.consPos = (*uint64)(unsafe.Pointer(&r.mapped[0][0]))
	r.prodPos = (*uint64)(unsafe.Pointer(&r.mapped[1][0]))
	r.data = r.mapped[1][page:]
	r.pos = atomic.LoadUint64(r.consPos)
	r.committed, r.prod = r.pos, r.pos

	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicating the ring's descriptor: %w", err)
	}
	// Non-blocking, so that os.NewFile puts it in the poller (a map's
	// descriptor has no read or write that the flag could change).
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ring descriptor: %w", err)
	}
	r.f = os.NewFile(uintptr(fd), "ringbuf")
	if r.raw, err = r.f.SyscallConn(); err != nil {
		return nil, fmt.Errorf("ring descriptor: %w", err)
	}
	if err := r.f.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("ring descriptor not pollable: %w", err)
	}
	return r, nil
}

// next returns the next record, in place: valid until the following call.
// With the ring empty it stores the consumer position and waits for the
// kernel's wakeup, the deadline (os.ErrDeadlineExceeded) or a flush
// (errRingFlushed); either of the last two is returned once what the ring
// holds has been read.
func (r *ring) next() ([]byte, error) {
	for {
		if r.pos == r.prod {
			// All the records known are read: hand their space back
			// before looking for more (one store per look).
			r.commit()
			r.prod = atomic.LoadUint64(r.prodPos)
		}
		for r.pos != r.prod {
			hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[r.pos&r.mask])))
			if hdr&ringBusyBit != 0 {
				// Reserved, not yet committed: the program runs on
				// another CPU and commits within nanoseconds; the
				// records after it wait for it (they are in order).
				r.commit()
				continue
			}
			if r.pos-r.committed >= r.commitEvery {
				r.commit() // the records before this one are done with
			}
			n := uint64(hdr & ringLenMask)
			start := r.pos + ringHdrSize
			r.pos = start + (n+7)&^7
			if hdr&ringDiscard != 0 {
				continue
			}
			s := start & r.mask
			return r.data[s : s+n : s+n], nil
		}
		r.commit()
		if err := r.pending; err != nil {
			r.pending = nil
			return nil, err
		}
		if err := r.wait(); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && err != errRingFlushed {
				return nil, err
			}
			r.pending = err // after what is in the ring
		}
		r.prod = atomic.LoadUint64(r.prodPos)
	}
}

// commit tells the kernel the space up to pos is free.
func (r *ring) commit() {
	if r.committed != r.pos {
		atomic.StoreUint64(r.consPos, r.pos)
		r.committed = r.pos
	}
}

// wait blocks until the kernel wakes the reader (nil), the deadline
// passes (os.ErrDeadlineExceeded) or flush is called (errRingFlushed).
func (r *ring) wait() error {
	if r.flushed.Swap(false) {
		return errRingFlushed
	}
	if err := r.f.SetReadDeadline(r.deadline); err != nil {
		return err
	}
	if r.flushed.Load() { // a flush between the two lines above
		r.f.SetReadDeadline(time.Now())
	}
	waited := false
	err := r.raw.Read(func(uintptr) bool {
		// First call: wait for the descriptor to turn readable, which
		// the ring does only when the kernel wakes it up.
		done := waited
		waited = true
		return done
	})
	if r.flushed.Swap(false) {
		return errRingFlushed
	}
	return err
}

// flush makes a waiting next return: the records still in the ring
// first, then errRingFlushed. Safe from another goroutine.
func (r *ring) flush() error {
	r.flushed.Store(true)
	return r.f.SetReadDeadline(time.Now())
}

// available is the number of bytes waiting in the ring (safe from another
// goroutine: it reads the positions the kernel sees).
func (r *ring) available() uint64 {
	return atomic.LoadUint64(r.prodPos) - atomic.LoadUint64(r.consPos)
}

func (r *ring) close() {
	if r.f != nil {
		r.f.Close()
	}
	for _, m := range r.mapped {
		if m != nil {
			unix.Munmap(m)
		}
	}
}
