//go:build linux

package probe

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NetSysctls reads the named settings under /proc/sys/net (such as
// "ipv4/ip_local_port_range") as the network namespace at nsPath sees
// them: /proc/sys/net shows the namespace of the thread that opens it, so
// the reads run on a locked thread that enters the namespace and is
// thrown away after (no other goroutine ever runs there). Each value is
// the file's fields, as numbers.
func NetSysctls(nsPath string, names []string) (map[string][]uint64, error) {
	type result struct {
		v   map[string][]uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		v, err := func() (map[string][]uint64, error) {
			f, err := os.Open(nsPath)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("entering network namespace %s: %w", nsPath, err)
			}
			out := map[string][]uint64{}
			for _, name := range names {
				b, err := os.ReadFile("/proc/sys/net/" + name)
				if err != nil {
					return nil, err
				}
				for _, field := range strings.Fields(string(b)) {
					n, err := strconv.ParseUint(field, 10, 64)
					if err != nil {
						return nil, fmt.Errorf("/proc/sys/net/%s: %w", name, err)
					}
					out[name] = append(out[name], n)
				}
			}
			return out, nil
		}()
		done <- result{v, err}
	}()
	r := <-done
	return r.v, r.err
}
