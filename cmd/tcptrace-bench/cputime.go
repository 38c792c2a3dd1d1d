package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/churn"
)

// The tracer process's own CPU per transition: a measure that holds on a
// machine shared with other work, where the share of busy CPU does not
// (the other tenants are in its denominator). The CPU time a process was
// given for a fixed amount of work moves little with the load beside it;
// what still moves it (caches, frequency) moves every build alike when
// the builds' runs are interleaved in the same minutes.

// cpuSample is one run of one tracer build in one mode.
type cpuSample struct {
	cpu       time.Duration // the tracer's CPU from the load's start to 300 ms after its end
	captured  uint64
	expected  uint64
	lost      uint64
	rate      float64 // transitions per second during the load
	perThous  float64 // µs of tracer CPU per 1,000 transitions
	buildName string
}

// runCPU runs the load under each build in each mode, rounds times,
// interleaved (every build and mode, then again), and prints the median
// CPU per 1,000 transitions of each. builds are name=path pairs.
func runCPU(builds []string, rounds, conns, concurrency int, profileDir string, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (loads BPF programs): run it with sudo")
	}
	type build struct{ name, path string }
	var bs []build
	for _, b := range builds {
		name, path, ok := strings.Cut(b, "=")
		if !ok {
			name, path = filepath.Base(b), b
		}
		bs = append(bs, build{name, path})
	}
	ctx := context.Background()
	srv, tmp, cleanup, err := setUp(ctx, conns, concurrency)
	if err != nil {
		return err
	}
	defer cleanup()
	port := fmt.Sprint(srv.Port())
	modes := []mode{
		{name: "default output, to a file", args: []string{"--port", port}},
		{name: "--emit all, to a file", args: []string{"--port", port, "--emit", "all"}},
	}
	results := map[[2]int][]cpuSample{}
	for round := 1; round <= rounds; round++ {
		for mi, m := range modes {
			for bi, b := range bs {
				prof := ""
				if profileDir != "" {
					prof = filepath.Join(profileDir, fmt.Sprintf("%s-%d-%d.perf.data", b.name, mi, round))
				}
				s, err := cpuRun(ctx, b.path, m, srv, conns, concurrency, filepath.Join(tmp, "out"), prof)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", b.name, m.name, err)
				}
				s.buildName = b.name
				results[[2]int{mi, bi}] = append(results[[2]int{mi, bi}], s)
				fmt.Fprintf(os.Stderr, "round %d %-28s %-10s tracer CPU %6.1f ms, %6.1f µs per 1,000 transitions, %6.0f transitions/s, captured %d/%d, lost %d\n",
					round, m.name, b.name, s.cpu.Seconds()*1000, s.perThous, s.rate, s.captured, s.expected, s.lost)
			}
		}
	}
	fmt.Fprintf(out, "Tracer process CPU per 1,000 transitions, %s; churn: %d clients, %d connections (%d transitions) per run, %d rounds interleaved\n\n",
		machine(), concurrency, conns, conns*10, rounds)
	fmt.Fprintln(out, "| mode | build | µs of tracer CPU per 1,000 transitions (median) | per run | transitions/s (median) | captured / expected (worst run) | lost (all runs) |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	for mi, m := range modes {
		for bi, b := range bs {
			ss := results[[2]int{mi, bi}]
			var per, rates []float64
			var runs []string
			worst, lost := ss[0], uint64(0)
			for _, s := range ss {
				per = append(per, s.perThous)
				rates = append(rates, s.rate)
				runs = append(runs, strconv.FormatFloat(s.perThous, 'f', 0, 64))
				if s.captured < worst.captured {
					worst = s
				}
				lost += s.lost
			}
			fmt.Fprintf(out, "| %s | %s | **%.0f** | %s | %.0f | %d / %d | %d |\n",
				m.name, b.name, median(per), strings.Join(runs, " "), median(rates), worst.captured, worst.expected, lost)
		}
	}
	return nil
}

// cpuRun runs the load once under a tracer; with prof set, perf records
// the tracer's process (call graphs by frame pointer) over the same
// window as the CPU time.
func cpuRun(ctx context.Context, tracer string, m mode, srv *churn.Server, conns, concurrency int, outFile, prof string) (cpuSample, error) {
	p, err := startTracer(tracer, m, outFile)
	if err != nil {
		return cpuSample{}, err
	}
	defer p.kill()
	pid := p.cmd.Process.Pid
	var perf *exec.Cmd
	if prof != "" {
		perf = exec.Command("perf", "record", "-g", "-F", "1999", "-p", strconv.Itoa(pid), "-o", prof)
		perf.Stdout, perf.Stderr = io.Discard, io.Discard
		if err := perf.Start(); err != nil {
			return cpuSample{}, fmt.Errorf("perf: %w", err)
		}
		time.Sleep(500 * time.Millisecond) // perf attached
	}
	cpu0, err := threadsCPU(pid)
	if err != nil {
		return cpuSample{}, err
	}
	r, err := churn.Run(ctx, srv.Port(), conns, concurrency)
	if err != nil {
		return cpuSample{}, err
	}
	time.Sleep(300 * time.Millisecond) // the tracer reads its ring at most every 100 ms
	cpu1, err := threadsCPU(pid)
	if err != nil {
		return cpuSample{}, err
	}
	if perf != nil {
		perf.Process.Signal(syscall.SIGINT)
		perf.Wait()
	}
	if err := p.stop(); err != nil {
		return cpuSample{}, err
	}
	if prof != "" { // the run's output beside its profile
		if b, err := os.ReadFile(outFile); err == nil {
			os.WriteFile(strings.TrimSuffix(prof, ".perf.data")+".ndjson", b, 0o644)
		}
	}
	s := cpuSample{cpu: cpu1 - cpu0, expected: uint64(r.Conns) * 10}
	st, err := lastStats(outFile)
	if err != nil {
		return s, err
	}
	s.captured, s.lost = st.captured(), st.Lost
	s.rate = float64(s.expected) / r.Duration.Seconds()
	if s.captured > 0 {
		s.perThous = float64(s.cpu.Microseconds()) / float64(s.captured) * 1000
	}
	return s, nil
}

// threadsCPU is a process's CPU time so far, summed over its threads'
// scheduler run time (/proc/PID/task/TID/schedstat, first field, ns):
// precise, where /proc/PID/stat counts 10 ms ticks. Go's threads live as
// long as the process, so none of the window's time leaves with one.
func threadsCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // the thread just exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		sum += ns
	}
	return time.Duration(sum), nil
}
