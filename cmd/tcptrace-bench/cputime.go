//go:build linux

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
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/perfscript"
)

// The tracer process's own CPU per transition: a measure that holds on a
// machine shared with other work, where the share of busy CPU does not
// (the other tenants are in its denominator). The CPU time a process was
// given for a fixed amount of work moves little with the load beside it;
// what still moves it (caches, frequency) moves every build alike when
// the builds' runs are interleaved in the same minutes.

// cpuSample is one run of one tracer build in one mode.
type cpuSample struct {
	cpu      time.Duration // the tracer's CPU from the load's start to 300 ms after its end
	captured uint64
	expected uint64
	lost     uint64
	rate     float64 // transitions per second during the load
	perThous float64 // µs of tracer CPU per 1,000 transitions
	// parts: with --profile, perThous divided by where perf's samples
	// of the tracer process went (perfscript.TracerPart).
	parts     [perfscript.NumParts]float64
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
	srv, port, tmp, cleanup, err := setUp(ctx, conns, concurrency)
	if err != nil {
		return err
	}
	defer cleanup()
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
				fmt.Fprintf(os.Stderr, "round %d %-28s %-10s tracer CPU %6.1f ms, %6.1f µs per 1,000 transitions, %6.0f transitions/s, captured %d/%d, lost %d%s\n",
					round, m.name, b.name, s.cpu.Seconds()*1000, s.perThous, s.rate, s.captured, s.expected, s.lost, partsLine(&s.parts))
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
	if profileDir == "" {
		return nil
	}
	fmt.Fprint(out, "\nWhere the tracer process's CPU went (perf samples of the process, by stack), µs per 1,000 transitions, median of the runs:\n\n")
	fmt.Fprint(out, "| part |")
	for _, m := range modes {
		for _, b := range bs {
			fmt.Fprintf(out, " %s, %s |", m.name, b.name)
		}
	}
	fmt.Fprint(out, "\n|---|")
	for range len(modes) * len(bs) {
		fmt.Fprint(out, "---|")
	}
	fmt.Fprintln(out)
	for part := range perfscript.NumParts {
		fmt.Fprintf(out, "| %s |", part)
		for mi := range modes {
			for bi := range bs {
				var v []float64
				for _, s := range results[[2]int{mi, bi}] {
					v = append(v, s.parts[part])
				}
				fmt.Fprintf(out, " %.0f |", median(v))
			}
		}
		fmt.Fprintln(out)
	}
	return nil
}

// partsLine is one run's parts, for its progress line.
func partsLine(parts *[perfscript.NumParts]float64) string {
	var b strings.Builder
	for p, v := range parts {
		if v >= 0.5 {
			fmt.Fprintf(&b, ", %s %.0f", perfscript.Part(p), v)
		}
	}
	return b.String()
}

// profileParts divides perThous by where the profile's samples went.
func profileParts(prof string, perThous float64) (parts [perfscript.NumParts]float64, err error) {
	cmd := exec.Command("perf", "script", "-i", prof, "-F", "comm,pid,tid,cpu,ip,sym,symoff,dso")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return parts, err
	}
	if err := cmd.Start(); err != nil {
		return parts, fmt.Errorf("perf script: %w", err)
	}
	var n [perfscript.NumParts]int
	total := 0
	err = perfscript.Parse(stdout, func(s perfscript.Sample) {
		n[perfscript.TracerPart(s)]++
		total++
	})
	if err != nil {
		io.Copy(io.Discard, stdout)
	}
	if werr := cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("perf script: %w", werr)
	}
	// The closing records are after the CPU's window (perf stops a
	// little after it): not divided into it.
	total -= n[perfscript.PartClosing]
	for p := range parts {
		if total > 0 && perfscript.Part(p) != perfscript.PartClosing {
			parts[p] = perThous * float64(n[p]) / float64(total)
		}
	}
	return parts, err
}

// cpuRun runs the load once under a tracer; with prof set, perf records
// the tracer's process (call graphs by frame pointer) over the same
// window as the CPU time.
func cpuRun(ctx context.Context, tracer string, m mode, srv *churn.Server, conns, concurrency int, outFile, prof string) (cpuSample, error) {
	tl, err := tracedLoad(tracer, m, outFile, prof, func() (churn.Result, error) {
		return churn.Run(ctx, srv.Port(), conns, concurrency)
	})
	if err != nil {
		return cpuSample{}, err
	}
	r, st := tl.load, tl.stats
	s := cpuSample{cpu: tl.cpu, expected: uint64(r.Conns) * 10}
	s.captured, s.lost = st.captured(), st.Lost
	s.rate = float64(s.expected) / r.Duration.Seconds()
	if s.captured > 0 {
		s.perThous = float64(s.cpu.Microseconds()) / float64(s.captured) * 1000
	}
	if prof != "" {
		s.parts, err = profileParts(prof, s.perThous)
	}
	return s, err
}

// processCPU reads the CPU time a process has had so far, with every
// thread it ever had (a socket walk runs on a thread that exits after):
// precisely, from a cpu accounting cgroup of its own (cgroup v2's
// cpu.stat, or v1's cpuacct), or else from /proc/PID/stat in 10 ms ticks.
type processCPU struct {
	dir     string // the cgroup, "" if none
	v2      bool
	pid     int
	cleanup func()
}

func newProcessCPU(pid int) *processCPU {
	p := &processCPU{pid: pid, cleanup: func() {}}
	for _, c := range []struct {
		root string
		v2   bool
	}{{"/sys/fs/cgroup", true}, {"/sys/fs/cgroup/cpuacct", false}} {
		if _, err := os.Stat(filepath.Join(c.root, map[bool]string{true: "cgroup.controllers", false: "cpuacct.usage"}[c.v2])); err != nil {
			continue
		}
		dir := filepath.Join(c.root, fmt.Sprintf("tcptrace-bench-%d", pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			os.Remove(dir)
			continue
		}
		p.dir, p.v2 = dir, c.v2
		p.cleanup = func() { os.Remove(dir) } // empty once the tracer has exited
		break
	}
	return p
}

func (p *processCPU) read() (time.Duration, error) {
	if p.dir == "" {
		return procCPU(p.pid)
	}
	if !p.v2 {
		b, err := os.ReadFile(filepath.Join(p.dir, "cpuacct.usage"))
		if err != nil {
			return 0, err
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns), err
	}
	b, err := os.ReadFile(filepath.Join(p.dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, errors.New("no usage_usec in cpu.stat")
}

// tracedRun is one load under a tracer: the tracer process's CPU over the
// load and 300 ms after it (elapsed), the load's result and the tracer's
// closing stats.
type tracedRun struct {
	cpu, elapsed time.Duration
	load         churn.Result
	stats        stats
}

// tracedLoad starts the mode's tracer, runs load under it and stops it;
// with prof set, perf records the tracer's process over the same window,
// its output kept beside the profile.
func tracedLoad(tracer string, m mode, outFile, prof string, load func() (churn.Result, error)) (tracedRun, error) {
	p, err := startTracer(tracer, m, outFile)
	if err != nil {
		return tracedRun{}, err
	}
	defer p.kill()
	pid := p.cmd.Process.Pid
	acct := newProcessCPU(pid)
	defer func() { p.kill(); acct.cleanup() }() // the cgroup goes once empty
	var perf *exec.Cmd
	if prof != "" {
		perf = exec.Command("perf", "record", "-g", "--sample-cpu", "-F", "1999", "-p", strconv.Itoa(pid), "-o", prof)
		perf.Stdout, perf.Stderr = io.Discard, io.Discard
		if err := perf.Start(); err != nil {
			return tracedRun{}, fmt.Errorf("perf: %w", err)
		}
		time.Sleep(500 * time.Millisecond) // perf attached
	}
	cpu0, err := acct.read()
	if err != nil {
		return tracedRun{}, err
	}
	t0 := time.Now()
	r, err := load()
	if err != nil {
		return tracedRun{}, err
	}
	time.Sleep(300 * time.Millisecond) // the tracer reads its ring at most every 100 ms
	cpu1, err := acct.read()
	if err != nil {
		return tracedRun{}, err
	}
	elapsed := time.Since(t0)
	if perf != nil {
		perf.Process.Signal(syscall.SIGINT)
		perf.Wait()
	}
	if err := p.stop(); err != nil {
		return tracedRun{}, err
	}
	if prof != "" { // the run's output beside its profile
		if b, err := os.ReadFile(outFile); err == nil {
			os.WriteFile(strings.TrimSuffix(prof, ".perf.data")+".ndjson", b, 0o644)
		}
	}
	st, err := lastStats(outFile)
	return tracedRun{cpu: cpu1 - cpu0, elapsed: elapsed, load: r, stats: st}, err
}
