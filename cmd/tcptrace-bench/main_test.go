//go:build linux

package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// A brief run of the harness, to see it works; the real figures come from
// make bench (docs/performance.md).
func TestBenchHarnessBrief(t *testing.T) {
	nettest.RequirePrivileges(t)
	if testing.Short() {
		t.Skip("-short")
	}
	tracer := filepath.Join(t.TempDir(), "tcptrace-bpf")
	if out, err := exec.Command("go", "build", "-o", tracer, "../tcptrace-bpf").CombinedOutput(); err != nil {
		t.Fatalf("building the tracer: %v: %s", err, out)
	}
	var out bytes.Buffer
	if err := run(tracer, 1, 1, 500, 8, false, &out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	// The statistics run must have produced a cost for both programs' sets.
	if m := regexp.MustCompile(`(?m)\| [0-9]+ \| ([0-9]+) / ([0-9]+) \| [^|]+ \|$`).FindAllStringSubmatch(table, -1); len(m) != 3 {
		t.Errorf("table lacks the BPF cost of both modes and the floor:\n%s", table)
	} else {
		for _, row := range m {
			if row[1] == "0" || row[2] == "0" {
				t.Errorf("BPF cost of zero: %q", row[0])
			}
		}
	}
	for _, want := range []string{"| all records, NDJSON to a file |", "| --emit histograms |", "5000 / 5000"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	out.Reset()
	if err := measureRSS(tracer, 2000, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2000 connections held open") {
		t.Errorf("rss report: %q", out.String())
	}
}

// A brief run of the share table, to see perf, the classifier and the
// tracer rows work together; skipped where perf is not installed (CI does
// not install it: the bench is not run there).
func TestShareBrief(t *testing.T) {
	nettest.RequirePrivileges(t)
	if testing.Short() {
		t.Skip("-short")
	}
	if _, err := exec.LookPath("perf"); err != nil {
		t.Skip("perf not installed")
	}
	tracer := filepath.Join(t.TempDir(), "tcptrace-bpf")
	if out, err := exec.Command("go", "build", "-o", tracer, "../tcptrace-bpf").CombinedOutput(); err != nil {
		t.Fatalf("building the tracer: %v: %s", err, out)
	}
	var out bytes.Buffer
	if err := runShare(tracer, 1, 500, 8, 300, false, &out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, want := range []string{"| untraced (perf alone) |", "| empty BPF program on tp_btf (floor) |", "| tcptrace-bpf --emit histograms |",
		"| tcptrace-bpf, default output, to a file, 300 idle connections watched too |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	// The four tracer rows captured every transition.
	if n := strings.Count(table, "| 5000 / 5000 | 0 |"); n != 4 {
		t.Errorf("%d tracer rows captured everything without loss, want 4:\n%s", n, table)
	}
}
