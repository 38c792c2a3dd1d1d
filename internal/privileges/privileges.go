//go:build linux

// Package privileges checks what the tracer may do and gives up what it no
// longer needs once the probes are attached: every capability but the few
// that reading the ring, walking sockets and finding namespaces need, and
// no_new_privs.
package privileges

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capabilities kept after the probes are attached, and why.
var keptCaps = []struct {
	cap  uint
	name string
}{
	{capBPF, "CAP_BPF"},              // bpf(): read the ring buffer, maps, program stats; socket walks
	{capPerfmon, "CAP_PERFMON"},      // tracing-related bpf() calls on kernels that check it
	{capSysAdmin, "CAP_SYS_ADMIN"},   // setns() into each network namespace for socket walks; bpf() before 5.8
	{capSysPtrace, "CAP_SYS_PTRACE"}, // read other processes' /proc/PID/ns/net to find namespaces
}

const (
	capSysPtrace = 19
	capLast      = 40 // CAP_CHECKPOINT_RESTORE, the highest in Linux 6.x
)

// KeptCapabilities names the capabilities Drop keeps: what a
// deployment must grant (deploy/ is tested against it).
func KeptCapabilities() []string {
	names := make([]string, len(keptCaps))
	for i, k := range keptCaps {
		names[i] = k.name
	}
	return names
}

// ErrCgo means the binary cannot change every thread's credentials:
// AllThreadsSyscall refuses when cgo is linked in.
var ErrCgo = errors.New("cannot drop capabilities in a binary built with cgo (build with CGO_ENABLED=0, as the Makefile does)")

// Drop keeps only the capabilities the running tracer still
// needs (see keptCaps), on every thread: it empties the bounding set of
// the rest and the inheritable set, and sets no_new_privs so that nothing
// this process executes can gain privileges. It returns the names kept.
func Drop() ([]string, error) {
	var keep uint64
	for _, k := range keptCaps {
		keep |= 1 << k.cap
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		if e == syscall.ENOTSUP {
			return nil, ErrCgo
		}
		return nil, fmt.Errorf("setting no_new_privs: %w", e)
	}
	for c := uint(0); c <= capLast; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		// Already out of the bounding set (a systemd CapabilityBoundingSet=,
		// a container's cap drop): nothing to drop, and dropping would need
		// CAP_SETPCAP, which such a set leaves out.
		if in, _, e := syscall.Syscall(unix.SYS_PRCTL, unix.PR_CAPBSET_READ, uintptr(c), 0); e == 0 && in == 0 {
			continue
		}
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != syscall.EINVAL {
			return nil, fmt.Errorf("dropping capability %d from the bounding set: %w", c, e)
		}
	}
	caps, err := effectiveCaps()
	if err != nil {
		return nil, err
	}
	keep &= caps
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return nil, fmt.Errorf("setting capabilities: %w", e)
	}
	return KeptCapabilities(), nil
}

// Capability numbers (linux/capability.h); x/sys/unix lacks the two newest.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// ErrPrivileges is returned when the process may not load BPF programs.
var ErrPrivileges = errors.New("needs root, or the capabilities CAP_BPF and CAP_PERFMON: run it with sudo")

// effectiveCaps returns the effective capability set as a bitmask.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("reading capabilities: %w", err)
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// Check fails with ErrPrivileges unless the process holds
// CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, which implies both).
func Check() error {
	caps, err := effectiveCaps()
	if err != nil {
		return err
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
		return nil
	}
	return ErrPrivileges
}
