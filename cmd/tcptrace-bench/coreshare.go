//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/churn"
)

// coreSample is one run of a mode at a fixed connection rate.
type coreSample struct {
	rate     float64       // connections/s made
	elapsed  time.Duration // the load and the 300 ms after it
	tracer   time.Duration // the tracer process's CPU over elapsed
	bpf      time.Duration // the programs' run time (bpf_stats) over the run
	runs     uint64        // program runs
	captured uint64
	expected uint64
	lost     uint64
}

// runCoreShare prints, for each rate of connections/s (10 transitions
// each), the share of one core that each mode takes: the tracer
// process's CPU and the kernel programs' run time, over the load's
// seconds. The figures a user compares with other tools': kernel ns per
// transition, tracer CPU per 1,000 transitions, share of one core.
func runCoreShare(tracer string, rates []int, d time.Duration, concurrency int, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (loads BPF programs): run it with sudo")
	}
	restore, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer restore()
	ctx := context.Background()
	srv, port, tmp, cleanup, err := setUp(ctx, 2000, concurrency)
	if err != nil {
		return err
	}
	defer cleanup()
	modes := []mode{
		{name: "--emit histograms", args: []string{"--port", port, "--emit", "histograms"}},
		{name: "default output, to a file", args: []string{"--port", port}},
		{name: "--emit all, to a file", args: []string{"--port", port, "--emit", "all"}},
	}
	fmt.Fprintf(out, "\ntcptrace-bench --core-share: a paced churn of N connections/s (10 transitions each) for %v, %d concurrent clients; %s\n",
		d, concurrency, machine())
	fmt.Fprintln(out, "share of one core = (the tracer process's CPU, from its own cpu accounting cgroup, + the kernel programs' run time, from bpf_stats) over the load's seconds; the programs' run time leaves out the kernel's dispatch to them (about 30 ns a program and transition, the floor row of the share table).")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| connections/s (made) | mode | share of one core | kernel programs | tracer process | kernel ns per transition (all programs) | tracer µs per 1,000 transitions | captured / expected | lost |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, rate := range rates {
		for _, m := range modes {
			s, err := coreRun(ctx, tracer, m, srv, rate, d, concurrency, filepath.Join(tmp, "out"))
			if err != nil {
				return fmt.Errorf("%d/s, %s: %w", rate, m.name, err)
			}
			pct := func(x time.Duration) string { return fmt.Sprintf("%.2f %%", 100*x.Seconds()/s.elapsed.Seconds()) }
			nsPer := float64(s.bpf.Nanoseconds()) / float64(max(s.expected, 1))
			usPerK := float64(s.tracer.Microseconds()) / float64(max(s.captured, 1)) * 1000
			fmt.Fprintf(out, "| %d (%.0f) | %s | **%s** | %s | %s | %.0f | %.0f | %d / %d | %d |\n",
				rate, s.rate, m.name, pct(s.tracer+s.bpf), pct(s.bpf), pct(s.tracer), nsPer, usPerK, s.captured, s.expected, s.lost)
		}
	}
	return nil
}

// coreRun runs the paced load once under the mode's tracer.
func coreRun(ctx context.Context, tracer string, m mode, srv *churn.Server, rate int, d time.Duration, concurrency int, outFile string) (coreSample, error) {
	tl, err := tracedLoad(tracer, m, outFile, "", func() (churn.Result, error) {
		return churn.RunAt(ctx, srv.Port(), rate, d, concurrency)
	})
	if err != nil {
		return coreSample{}, err
	}
	r, st := tl.load, tl.stats
	return coreSample{rate: r.Rate(), elapsed: tl.elapsed, tracer: tl.cpu, bpf: time.Duration(st.BPFRunTimeNs),
		runs: st.BPFRuns, captured: st.captured(), expected: uint64(r.Conns) * 10, lost: st.Lost}, nil
}

// parseRates reads "1000,10000".
func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--core-share %q: want connection rates such as 1000,10000", s)
		}
		out = append(out, n)
	}
	return out, nil
}
