//go:build linux

// Command tcptrace-bench measures what tcptrace-bpf costs a busy host: it
// runs the churn load (connect, write, read, close as fast as possible)
// untraced and traced, alternately (A B A B ...), and prints a table of
// throughput ratios, transitions captured against expected, lost events,
// the BPF program's own cost per event and the tracer's CPU time.
//
//	sudo ./tcptrace-bench --tracer ./tcptrace-bpf --pairs 7
//
// With --share it samples every CPU with perf during each run instead and
// prints the share of the busy samples that tracing took, per row and
// round, with its breakdown and the throughput ratio beside it:
//
//	sudo ./tcptrace-bench --tracer ./tcptrace-bpf --share --rounds 2
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/churn"
)

// mode is one way of tracing the load.
type mode struct {
	name     string
	args     []string // tcptrace-bpf's arguments
	script   string   // a bpftrace program: a bpftrace reference row
	floor    bool     // the empty program, loaded by the bench itself
	untraced bool     // nothing attached (the share table's first row)
}

// bpftrace tells a bpftrace reference row.
func (m mode) bpftrace() bool { return m.script != "" }

type sample struct {
	ratio    float64
	captured uint64 // transitions the tracer counted
	expected uint64
	lost     uint64
	// BPF run time per event: the primary program's, and all the
	// attached programs' together.
	nsPrimary, nsAll float64
	cpu              time.Duration
}

func main() {
	var (
		tracer      = flag.String("tracer", "./tcptrace-bpf", "tcptrace-bpf binary to measure")
		pairs       = flag.Int("pairs", 7, "untraced/traced pairs per mode (0: only the BPF cost runs)")
		costRuns    = flag.Int("cost-runs", 3, "runs per mode with BPF run-time statistics on")
		conns       = flag.Int("conns", 20000, "connections per run")
		concurrency = flag.Int("c", 32, "concurrent clients")
		withBT      = flag.Bool("bpftrace", true, "add a bpftrace reference row when bpftrace is installed")
		rss         = flag.Int("rss", 0, "instead: hold this many connections open and report the tracer's peak RSS")
		soakFor     = flag.Duration("soak", 0, "instead: run churn for this long and sample the tracer's RSS and goroutines")
		share       = flag.Bool("share", false, "instead: the share of busy CPU that tracing takes, from perf samples of every CPU (docs/performance.md, Method)")
		rounds      = flag.Int("rounds", 2, "with --share or --cpu: rounds of all rows, interleaved")
		idle        = flag.Int("idle", 0, "with --share: hold this many idle connections open through every row, and add a row of the default output watching them too (the periodic walk's cost; its start-up time)")
		cpu         = flag.String("cpu", "", "instead: the tracer process's CPU per 1,000 transitions of each build of this comma-separated list of name=path, interleaved")
		profileDir  = flag.String("profile", "", "with --cpu: perf record the tracer of every run into this directory")
		coreShare   = flag.String("core-share", "", "instead: the share of one core each mode takes at these connection rates (a comma-separated list of connections/s, e.g. 1000,10000)")
		coreFor     = flag.Duration("core-seconds", 10*time.Second, "with --core-share: how long each paced load runs")
	)
	flag.Parse()
	if *coreShare != "" {
		rates, err := parseRates(*coreShare)
		if err == nil {
			err = runCoreShare(*tracer, rates, *coreFor, *concurrency, os.Stdout)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tcptrace-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *cpu != "" {
		if err := runCPU(strings.Split(*cpu, ","), *rounds, *conns, *concurrency, *profileDir, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "tcptrace-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *share {
		if err := runShare(*tracer, *rounds, *conns, *concurrency, *idle, *withBT, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "tcptrace-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *soakFor > 0 {
		if err := soak(*tracer, *soakFor, *soakFor/10, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "tcptrace-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *rss > 0 {
		if err := measureRSS(*tracer, *rss, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "tcptrace-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*tracer, *pairs, *costRuns, *conns, *concurrency, *withBT, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "tcptrace-bench: %v\n", err)
		os.Exit(1)
	}
}

func run(tracer string, pairs, costRuns, conns, concurrency int, withBT bool, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (loads BPF programs): run it with sudo")
	}
	ctx := context.Background()
	srv, port, tmp, cleanup, err := setUp(ctx, conns, concurrency)
	if err != nil {
		return err
	}
	defer cleanup()

	modes := []mode{
		{name: "all records, NDJSON to a file", args: []string{"--port", port}},
		{name: "--emit histograms", args: []string{"--port", port, "--emit", "histograms"}},
		{name: "empty BPF program on the same hook (floor)", floor: true},
	}
	if withBT && haveBpftrace() {
		unmount, err := mountTracefs()
		if err != nil {
			return err
		}
		defer unmount()
		modes = append(modes, mode{name: "bpftrace, printing each transition (reference)", script: bpftracePrintScript(srv.Port())})
	}
	results := make([][]sample, len(modes))
	for p := 0; p < pairs; p++ {
		for i, m := range modes {
			base, err := churn.Run(ctx, srv.Port(), conns, concurrency)
			if err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			s, err := traced(ctx, tracer, m, srv, conns, concurrency, filepath.Join(tmp, "out"))
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			s.nsPrimary, s.nsAll = 0, 0 // measured below, with statistics on
			s.ratio /= base.Rate()
			results[i] = append(results[i], s)
			fmt.Fprintf(os.Stderr, "pair %d %-45s baseline %6.0f conn/s, ratio %.3f, captured %d/%d, lost %d\n",
				p+1, m.name, base.Rate(), s.ratio, s.captured, s.expected, s.lost)
		}
	}
	// The program's own cost, from the kernel's run-time statistics. They
	// are switched on only for these runs: collecting them costs two clock
	// reads per program run, which would bias the ratios above.
	restore, err := enableBPFStats()
	if err != nil {
		return err
	}
	for i, m := range modes {
		if m.bpftrace() || costRuns <= 0 {
			continue
		}
		var prim, all []float64
		for k := 0; k < costRuns; k++ {
			s, err := traced(ctx, tracer, m, srv, conns, concurrency, filepath.Join(tmp, "out"))
			if err != nil {
				restore()
				return fmt.Errorf("%s with BPF statistics: %w", m.name, err)
			}
			prim = append(prim, s.nsPrimary)
			all = append(all, s.nsAll)
			fmt.Fprintf(os.Stderr, "BPF cost %-45s primary %4.0f ns/event, all programs %4.0f ns/event\n", m.name, s.nsPrimary, s.nsAll)
		}
		if pairs == 0 {
			results[i] = []sample{{}}
		}
		for j := range results[i] {
			results[i][j].nsPrimary, results[i][j].nsAll = median(prim), median(all)
		}
	}
	restore()
	if pairs == 0 {
		return nil
	}
	printTable(out, modes, results, conns, concurrency)
	return nil
}

// traced runs the load under one mode; sample.ratio holds the traced rate.
func traced(ctx context.Context, tracer string, m mode, srv *churn.Server, conns, concurrency int, outFile string) (sample, error) {
	if m.floor {
		return floorRun(ctx, srv, conns, concurrency)
	}
	p, err := startTracer(tracer, m, outFile)
	if err != nil {
		return sample{}, err
	}
	defer p.kill()
	cpu0, err := procCPU(p.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	r, err := churn.Run(ctx, srv.Port(), conns, concurrency)
	if err != nil {
		return sample{}, err
	}
	time.Sleep(300 * time.Millisecond) // let the last closes finish
	cpu1, err := procCPU(p.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	if err := p.stop(); err != nil {
		return sample{}, err
	}
	s := sample{ratio: r.Rate(), expected: uint64(r.Conns) * 10, cpu: cpu1 - cpu0}
	if m.bpftrace() {
		n, err := countLines(outFile)
		s.captured = n - 1 // the "Attaching" line
		return s, err
	}
	st, err := lastStats(outFile)
	if err != nil {
		return s, err
	}
	s.captured, s.lost = st.captured(), st.Lost
	if st.BPFRuns > 0 {
		s.nsPrimary = float64(st.BPFPrimaryRunTimeNs) / float64(st.BPFRuns)
		s.nsAll = float64(st.BPFRunTimeNs) / float64(st.BPFRuns)
	}
	return s, nil
}

// tracerProc is a running tracer: tcptrace-bpf or bpftrace.
type tracerProc struct {
	cmd      *exec.Cmd
	ready    time.Duration // from its start to its ready line
	bpftrace bool
	errTail  tailBuffer
	waited   bool
}

// startTracer starts the mode's tracer writing to outFile and waits until
// it is attached.
func startTracer(tracer string, m mode, outFile string) (*tracerProc, error) {
	os.Remove(outFile)
	p := &tracerProc{bpftrace: m.bpftrace()}
	if p.bpftrace {
		p.cmd = exec.Command("bpftrace", "-o", outFile, "-e", m.script)
	} else {
		p.cmd = exec.Command(tracer, append([]string{"-o", outFile}, m.args...)...)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	stderrTee := io.TeeReader(stderr, &p.errTail)
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	btOut := ""
	if p.bpftrace {
		btOut = outFile
	}
	t0 := time.Now()
	if err := waitReady(stderrTee, btOut); err != nil {
		p.kill()
		return nil, fmt.Errorf("%w: %s", err, p.errTail.String())
	}
	p.ready = time.Since(t0)
	return p, nil
}

// stop interrupts the tracer and waits for it to write its last records.
func (p *tracerProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGINT)
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	p.waited = true
	select {
	case err := <-exited:
		if err != nil && !p.bpftrace {
			return fmt.Errorf("tracer: %w: %s", err, p.errTail.String())
		}
	case <-time.After(15 * time.Second):
		// bpftrace 0.17 sometimes never exits on SIGINT; what it wrote
		// so far still counts.
		p.cmd.Process.Kill()
		<-exited
		if !p.bpftrace {
			return errors.New("tracer did not exit within 15 s of SIGINT")
		}
	}
	return nil
}

// kill ends a tracer that was not stopped (on an error path).
func (p *tracerProc) kill() {
	if p.waited {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.waited = true
}

func haveBpftrace() bool {
	_, err := exec.LookPath("bpftrace")
	return err == nil
}

// mountTracefs mounts tracefs where bpftrace looks for classic
// tracepoints, unless it is there; unmount undoes it.
func mountTracefs() (unmount func(), err error) {
	if _, err := os.Stat("/sys/kernel/tracing/events/sock"); err == nil {
		return func() {}, nil
	}
	if err := syscall.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return nil, fmt.Errorf("mounting tracefs for bpftrace: %w", err)
	}
	return func() { syscall.Unmount("/sys/kernel/tracing", syscall.MNT_DETACH) }, nil
}

// waitReady waits for the tracer's ready line: tcptrace-bpf writes it to
// stderr; bpftrace with -o writes "Attaching" into its output file.
func waitReady(stderr io.Reader, bpftraceOut string) error {
	deadline := time.Now().Add(30 * time.Second)
	if bpftraceOut != "" {
		go io.Copy(io.Discard, stderr)
		for time.Now().Before(deadline) {
			if b, _ := os.ReadFile(bpftraceOut); strings.Contains(string(b), "Attaching") {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return errors.New("bpftrace not attached after 30 s")
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "tcptrace-bpf: tracing") {
				ready <- nil
				io.Copy(io.Discard, stderr)
				return
			}
		}
		ready <- errors.New("tracer exited before it was ready")
	}()
	select {
	case err := <-ready:
		return err
	case <-time.After(time.Until(deadline)):
		return errors.New("tracer not ready after 30 s")
	}
}

type stats struct {
	Events       uint64 `json:"events"`
	Aggregated   uint64 `json:"aggregated"`
	Lost         uint64 `json:"lost"`
	BPFRuns      uint64 `json:"bpf_runs"`
	BPFRunTimeNs uint64 `json:"bpf_run_time_ns"`
	// BPFPrimaryRunTimeNs is the primary program's share of BPFRunTimeNs.
	BPFPrimaryRunTimeNs uint64 `json:"bpf_primary_run_time_ns"`
}

// captured is the transitions the tracer saw: those read from the ring,
// or in histogram mode, where nothing crosses to user space, those the
// kernel aggregated.
func (st stats) captured() uint64 {
	if st.Events == 0 {
		return st.Aggregated
	}
	return st.Events
}

func lastStats(path string) (stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return stats{}, err
	}
	defer f.Close()
	var st stats
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"type":"stats"`) {
			found = json.Unmarshal(sc.Bytes(), &st) == nil
		}
	}
	if !found {
		return st, fmt.Errorf("no stats record in %s", path)
	}
	return st, nil
}

func countLines(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// bpftracePrintScript prints every transition on port, as the peer scripts do.
func bpftracePrintScript(port int) string {
	return fmt.Sprintf(`tracepoint:sock:inet_sock_set_state /args->protocol == 6 && (args->sport == %d || args->dport == %d)/ {
  printf("%%llu %%d %%s %%d %%d %%d %%d\n", nsecs, pid, comm, args->sport, args->dport, args->oldstate, args->newstate);
}`, port, port)
}

// procCPU returns a process's user+system CPU time so far
// (/proc/PID/stat fields 14 and 15, in clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command (field 2) may hold spaces; fields restart after ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func enableBPFStats() (restore func(), err error) {
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("enabling BPF run-time statistics: %w", err)
	}
	return func() { _ = os.WriteFile(path, old, 0o644) }, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printTable(out io.Writer, modes []mode, results [][]sample, conns, concurrency int) {
	fmt.Fprintf(out, "\ntcptrace-bench: %d connections per run (%d transitions), %d concurrent clients, %d pairs; %s\n\n",
		conns, conns*10, concurrency, len(results[0]), machine())
	fmt.Fprintln(out, "| mode | median ratio | ratio per pair | captured / expected (worst run) | lost (all runs) | BPF ns/event, primary / all programs (median of the statistics runs) | tracer CPU per 200k events during the load (median) |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	for i, m := range modes {
		var ratios, cpu []float64
		var lost uint64
		worstS := results[i][0]
		worst := float64(worstS.captured) / float64(worstS.expected)
		for _, s := range results[i] {
			ratios = append(ratios, s.ratio)
			cpu = append(cpu, s.cpu.Seconds()*200000/float64(max(s.expected, 1)))
			lost += s.lost
			if f := float64(s.captured) / float64(s.expected); f <= worst {
				worst, worstS = f, s
			}
		}
		per := make([]string, len(ratios))
		for j, r := range ratios {
			per[j] = fmt.Sprintf("%.2f", r)
		}
		nsCol := fmt.Sprintf("%.0f / %.0f", results[i][0].nsPrimary, results[i][0].nsAll)
		capCol := fmt.Sprintf("%d / %d", worstS.captured, worstS.expected)
		cpuCol := fmt.Sprintf("%.2f s", median(cpu))
		switch {
		case m.bpftrace():
			nsCol = "n/a"
		case m.floor:
			capCol, cpuCol = "n/a (records nothing)", "n/a (no process)"
		}
		fmt.Fprintf(out, "| %s | **%.3f** | %s | %s | %d | %s | %s |\n", m.name, median(ratios), strings.Join(per, " "),
			capCol, lost, nsCol, cpuCol)
	}
}

// setUp starts the load's server and a scratch folder, and warms up:
// first runs are slower (page cache, CPU frequency). port is the server's,
// as the tracer's --port value.
func setUp(ctx context.Context, conns, concurrency int) (srv *churn.Server, port, tmp string, cleanup func(), err error) {
	srv, err = churn.Listen("127.0.0.1:0")
	if err != nil {
		return nil, "", "", nil, err
	}
	tmp, err = os.MkdirTemp("", "tcptrace-bench")
	if err != nil {
		srv.Close()
		return nil, "", "", nil, err
	}
	cleanup = func() { srv.Close(); os.RemoveAll(tmp) }
	if _, err := churn.Run(ctx, srv.Port(), conns/2, concurrency); err != nil {
		cleanup()
		return nil, "", "", nil, err
	}
	return srv, fmt.Sprint(srv.Port()), tmp, cleanup, nil
}

// machine names the kernel, the host and the day, for a table's heading.
func machine() string {
	host, _ := os.Hostname()
	var uts syscall.Utsname
	syscall.Uname(&uts)
	return fmt.Sprintf("kernel %s, host %s, %s", utsString(uts.Release[:]), host, time.Now().UTC().Format("2006-01-02"))
}

func utsString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// tailBuffer keeps the last 2 KiB written to it: a tracer's last words.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2048 {
		t.buf = t.buf[len(t.buf)-2048:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
