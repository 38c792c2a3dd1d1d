//go:build linux

package probe

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// KernelHZ is the kernel's tick rate, the unit of the jiffies stamps
// sockets hold (tcp_jiffies32: rcv_tstamp, lsndtime), which the socket
// walk turns into ages. It is CONFIG_HZ from the kernel's own config
// (/proc/config.gz, else /boot/config-RELEASE), not the user-visible
// CLK_TCK (always 100); without a config file it is measured: jiffies
// (from /proc/timer_list) against the monotonic clock over 200 ms,
// rounded to the nearest rate Linux offers. 0 when neither works: the
// walk then gives no jiffies-based ages. Found once per process.
var KernelHZ = sync.OnceValue(func() uint32 {
	if hz, err := configHZ(); err == nil {
		return hz
	}
	if hz, err := measureHZ(); err == nil {
		return hz
	}
	return 0
})

func configHZ() (uint32, error) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	for _, path := range []string{"/proc/config.gz", "/boot/config-" + release} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		var r io.Reader = f
		if strings.HasSuffix(path, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				continue
			}
			r = zr
		}
		hz, err := hzFromConfig(r)
		f.Close()
		if err == nil {
			return hz, nil
		}
	}
	return 0, fmt.Errorf("no kernel config with CONFIG_HZ")
}

// hzFromConfig reads CONFIG_HZ from a kernel config.
func hzFromConfig(r io.Reader) (uint32, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_HZ="); ok {
			hz, err := strconv.ParseUint(v, 10, 32)
			if err != nil || hz == 0 {
				return 0, fmt.Errorf("CONFIG_HZ=%q", v)
			}
			return uint32(hz), nil
		}
	}
	return 0, fmt.Errorf("no CONFIG_HZ")
}

// measureHZ counts jiffies over 200 ms of the monotonic clock.
func measureHZ() (uint32, error) {
	j0, err := timerListJiffies()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(200 * time.Millisecond)
	j1, err := timerListJiffies()
	if err != nil {
		return 0, err
	}
	return nearestHZ(float64(j1-j0) / time.Since(t0).Seconds()), nil
}

// nearestHZ rounds a measured tick rate to a rate Linux builds with.
func nearestHZ(rate float64) uint32 {
	best := uint32(0)
	for _, hz := range []uint32{100, 250, 300, 1000} {
		if best == 0 || abs(rate-float64(hz)) < abs(rate-float64(best)) {
			best = hz
		}
	}
	return best
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func timerListJiffies() (uint64, error) {
	f, err := os.Open("/proc/timer_list")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "jiffies: "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no jiffies in /proc/timer_list")
}
