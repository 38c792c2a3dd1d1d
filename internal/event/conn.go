package event

import (
	"encoding/binary"
	"fmt"
	"time"
)

// A connection record (struct conn_record in bpf/tcptrace.h, KindConn):
// the record modes without transitions hold each socket's transitions in
// the kernel and send them together, at its CLOSE, when ConnSpans are
// held, and when a socket walk flushes them. The record is a struct event
// (the socket's fields as at its last transition: addresses, owner, how
// it ended) then struct held.
const (
	ConnSpans = 6
	ConnSize  = Size + 128

	offHeldTS     = Size
	offHeldDwell  = offHeldTS + 8*ConnSpans
	offHeldOld    = offHeldDwell + 8*ConnSpans
	offHeldNew    = offHeldOld + ConnSpans
	offHeldFlags  = offHeldNew + ConnSpans
	offHeldN      = offHeldFlags + ConnSpans
	offHeldHSRetx = offHeldN + 2 + 4 // after n, hs_syncookie and hs_us
)

// DecodeConn reads a connection record and calls each with every
// transition it holds, oldest first, as Decode gives a record the kernel
// sent for it alone: the socket's fields on every one, the close figures
// (CloseInfo) on a last one into CLOSE, the handshake's on the
// handshake's end. e is reused: each must not keep it.
func DecodeConn(b []byte, e *Event, each func(*Event)) error {
	if len(b) != ConnSize {
		return fmt.Errorf("connection record of %d bytes, want %d", len(b), ConnSize)
	}
	if err := Decode(b[:Size], e); err != nil {
		return err
	}
	if e.Kind != KindConn {
		return fmt.Errorf("record of kind %d where a connection record was expected", e.Kind)
	}
	n := int(b[offHeldN])
	if n == 0 || n > ConnSpans {
		return fmt.Errorf("connection record holding %d transitions", n)
	}
	ne := binary.NativeEndian
	sock := *e
	for i := range n {
		*e = sock
		e.Kind = KindTransition
		e.Mono = Mono(ne.Uint64(b[offHeldTS+8*i:]))
		e.Dwell = time.Duration(ne.Uint64(b[offHeldDwell+8*i:]))
		e.Old, e.New = State(b[offHeldOld+i]), State(b[offHeldNew+i])
		e.Flags = Flags(b[offHeldFlags+i])
		if !e.Old.Valid() || !e.New.Valid() || e.Flags&^knownFlagSet != 0 {
			return fmt.Errorf("held transition %d: states %d -> %d, flags %#x", i, e.Old, e.New, uint8(e.Flags))
		}
		if i == n-1 && e.New == Close && sock.Flags&CloseInfo != 0 {
			e.Flags |= CloseInfo
		} else {
			e.BytesAcked, e.BytesReceived, e.SRTTMicros, e.TotalRetrans = 0, 0, 0, 0
			e.Err, e.TW = 0, TWNone
		}
		if e.Old == SynRecv && e.New == Established { // any handshake's end, as the kernel sends one
			e.TotalRetrans = ne.Uint32(b[offHeldHSRetx:])
		}
		if e.Flags&Handshake == 0 {
			e.HandshakeMicros, e.SynCookie = 0, false
		}
		each(e)
	}
	return nil
}
