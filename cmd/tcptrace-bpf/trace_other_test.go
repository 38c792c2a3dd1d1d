//go:build !linux

package main

import (
	"bytes"
	"strings"
	"testing"
)

// On a system without eBPF tracing, the tracing commands say so in one
// line and fail; the offline commands are tested in main_test.go.
func TestTracingNeedsLinux(t *testing.T) {
	for _, args := range [][]string{{"--port", "8080"}, {"top"}, {"demo"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
		if l := errOut.String(); strings.Count(l, "\n") != 1 || !strings.Contains(l, "needs Linux") {
			t.Errorf("%v: stderr %q, want one line saying it needs Linux", args, l)
		}
	}
}
