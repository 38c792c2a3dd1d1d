//go:build linux

package tracer

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// readerGone returns a check that reports when w is a pipe or socket
// whose reader has gone (| head -1 exited): a write would fail with
// EPIPE, but with no traffic nothing is written and the tracer would run
// on until killed. It returns nil for anything else (a file, a
// terminal), where no such end exists.
func readerGone(w io.Writer) func() bool {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO && st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	fd := int(f.Fd())
	return func() bool {
		// The write end of a pipe polls POLLERR once no reader is left;
		// a socket whose peer closed, POLLERR or POLLHUP.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n == 1 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
	}
}
