package recording

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// MaxLine is the longest line read as a record (1 MiB): the tracer's
// longest records (a connection's timeline, a stuck socket's holders) are
// a few KiB. A longer line is damage; it is skipped without being held.
const MaxLine = 1 << 20

// Lines reads a recording line by line, any line of any length, holding
// at most MaxLine bytes. It also gets past what a crash leaves in a file
// that is appended to: zero bytes (the unwritten tail of the crashed run,
// which the next run's first record follows on the same line). A zero
// byte is never in a JSON record (a string holds it escaped), so what
// precedes the last zero byte of a line is skipped, and what follows is
// read as the line.
type Lines struct {
	r    *bufio.Reader
	buf  []byte
	n    uint64 // the current line's number, from 1
	done bool
}

// NewLines returns a reader of r's lines.
func NewLines(r io.Reader) *Lines { return &Lines{r: bufio.NewReaderSize(r, 64<<10)} }

// Line is one line read.
type Line struct {
	Number uint64
	// Text is the line without its '\n', or what follows its last zero
	// byte; valid until the next call to Next. Empty when Skipped covers
	// the whole line.
	Text []byte
	// Skipped describes what was skipped of the line ("" when nothing):
	// a run of zero bytes, or a line longer than MaxLine (then Text is
	// empty).
	Skipped string
}

// Next returns the next line; ok is false at the end of r, err an error
// reading r.
func (l *Lines) Next() (line Line, ok bool, err error) {
	if l.done {
		return line, false, nil
	}
	l.buf = l.buf[:0]
	var skippedZero, skippedLong uint64 // bytes skipped
	read := false
	for {
		chunk, rerr := l.r.ReadSlice('\n')
		read = read || len(chunk) > 0
		if i := bytes.LastIndexByte(chunk, 0); i >= 0 {
			// Everything so far is damage: restart the line after it.
			skippedZero += uint64(len(l.buf)) + skippedLong + uint64(i+1)
			l.buf, skippedLong, chunk = l.buf[:0], 0, chunk[i+1:]
		}
		text := bytes.TrimSuffix(chunk, []byte{'\n'})
		switch {
		case skippedLong > 0:
			skippedLong += uint64(len(text))
		case len(l.buf)+len(text) > MaxLine:
			skippedLong = uint64(len(l.buf) + len(text))
			l.buf = l.buf[:0]
		default:
			l.buf = append(l.buf, text...)
		}
		switch {
		case rerr == bufio.ErrBufferFull:
			continue
		case rerr == io.EOF:
			l.done = true
			if !read {
				return line, false, nil
			}
		case rerr != nil:
			l.done = true
			return line, false, rerr
		}
		l.n++
		line = Line{Number: l.n, Text: l.buf}
		var why []string
		if skippedZero > 0 {
			why = append(why, fmt.Sprintf("%d bytes ending in zero bytes (the unwritten tail of a crashed run)", skippedZero))
		}
		if skippedLong > 0 {
			why = append(why, fmt.Sprintf("%d bytes, longer than a record can be (%d)", skippedLong, MaxLine))
			line.Text = nil
		}
		line.Skipped = strings.Join(why, ", then ")
		return line, true, nil
	}
}
