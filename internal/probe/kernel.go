//go:build linux

package probe

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/privileges"
)

// checkKernel names the first missing kernel feature the attach mode
// needs. The caller has checked the privileges (privileges.Check).
func checkKernel(a config.Attach) error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel has no BTF (/sys/kernel/btf/vmlinux: %v): a kernel built with CONFIG_DEBUG_INFO_BTF=y, Linux 5.8 or later, is needed", errors.Unwrap(err))
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return fmt.Errorf("kernel has no BPF ring buffer (Linux 5.8 or later is needed): %w", err)
	}
	if a == config.AttachBTF {
		if err := features.HaveMapType(ebpf.SkStorage); err != nil {
			return fmt.Errorf("kernel has no BPF socket storage (Linux 5.12 or later for the tp_btf mode; try --attach tracepoint): %w", err)
		}
	}
	return nil
}

// kernelAtLeast reports whether the running kernel's release is at least
// major.minor (false when it cannot be read).
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	if n, _ := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); n != 2 {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

const tracefsPath = "/sys/kernel/tracing"

// inPrivateTracefs runs fn on a thread of its own with a private mount
// namespace in which tracefs is mounted (if the host has it, it is simply
// there): classic tracepoints are attached by id read from tracefs, and
// once attached need it no more. The host's mounts are never touched, so
// tracers starting at once cannot unmount tracefs under each other. The
// thread is thrown away after (never unlocked).
func inPrivateTracefs(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("creating a private mount namespace for tracefs: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("making the private mount namespace private: %w", err)
			}
			if _, err := os.Stat(tracefsPath + "/events/sock/inet_sock_set_state/id"); err != nil {
				if err := unix.Mount("tracefs", tracefsPath, "tracefs", 0, ""); err != nil {
					return fmt.Errorf("mounting tracefs at %s (or use --attach tp_btf): %w", tracefsPath, err)
				}
			}
			return fn()
		}()
	}()
	return <-errc
}

// MonotonicNow returns the kernel's CLOCK_MONOTONIC in nanoseconds, the
// clock of bpf_ktime_get_ns(). Inside a time namespace (unshare -T) the
// process's CLOCK_MONOTONIC is shifted by the namespace's offset while
// the kernel's timestamps are not: the offset is taken back out.
func MonotonicNow() event.Mono {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return event.Mono(ts.Nano() - monotonicOffset())
}

// monotonicOffset is this process's time namespace offset of
// CLOCK_MONOTONIC in ns (0 in the initial namespace, or without
// /proc/self/timens_offsets: kernels before 5.6).
var monotonicOffset = sync.OnceValue(func() int64 {
	b, err := os.ReadFile("/proc/self/timens_offsets")
	if err != nil {
		return 0
	}
	return parseMonotonicOffset(string(b))
})

// parseMonotonicOffset reads the monotonic line of timens_offsets:
// "monotonic <seconds> <nanoseconds>".
func parseMonotonicOffset(s string) int64 {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || (f[0] != "monotonic" && f[0] != "1") {
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			return sec*1e9 + nsec
		}
	}
	return 0
}

// Features describes what this kernel offers the tracer, for
// `--version --verbose`. Probing needs the same privileges as tracing.
func Features() []string {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	out := []string{"kernel " + unix.ByteSliceToString(uts.Release[:])}
	yes := func(err error) string {
		if err == nil {
			return "yes"
		}
		return "no (" + err.Error() + ")"
	}
	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	out = append(out, "BTF (/sys/kernel/btf/vmlinux): "+yes(btfErr))
	if err := privileges.Check(); err != nil {
		return append(out, "BPF features: unknown (probing them "+err.Error()+")")
	}
	out = append(out,
		"BPF ring buffer (5.8+): "+yes(features.HaveMapType(ebpf.RingBuf)),
		"BPF socket storage (tp_btf mode, 5.12+): "+yes(features.HaveMapType(ebpf.SkStorage)),
		"attach modes: tp_btf (default), tracepoint (--attach tracepoint; tracefs mounted privately if needed)")
	return out
}
