//go:build linux

package event

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The errno table is Linux's: every number unix.ErrnoName names on Linux,
// and nothing else.
func TestErrnoTableMatchesLinux(t *testing.T) {
	n := 0
	for e := 1; e < 4096; e++ {
		want := unix.ErrnoName(syscall.Errno(e))
		if got := linuxErrnoNames[uint16(e)]; got != want {
			t.Errorf("errno %d: table %q, Linux %q", e, got, want)
		}
		if want != "" {
			n++
		}
	}
	if n != len(linuxErrnoNames) {
		t.Errorf("table has %d names, Linux %d", len(linuxErrnoNames), n)
	}
}
