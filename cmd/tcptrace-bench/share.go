//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/churn"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/perfscript"
)

// The bpftrace reference rows of the share table, on the classic
// tracepoint (bpftrace attaches no tp_btf for it): a program that does
// nothing, and a dwell-time histogram per state keyed by the socket's
// address, the smallest useful thing a bpftrace user writes.
const (
	bpftraceEmpty = `tracepoint:sock:inet_sock_set_state {}`
	bpftraceDwell = `tracepoint:sock:inet_sock_set_state {
  $k = args->skaddr;
  if (@ts[$k]) { @d[args->oldstate] = hist(nsecs - @ts[$k]); }
  @ts[$k] = nsecs;
  if (args->newstate == 7) { delete(@ts[$k]); }
}`
)

// shareSample is one run of a row under perf.
type shareSample struct {
	counts   perfscript.Counts
	ready    time.Duration // the tracer's start-up, to its ready line
	ratio    float64       // connections/s against the untraced run right before
	captured uint64
	expected uint64
	lost     uint64
}

// runShare prints the share table: for each row, in rounds interleaved
// (every row once, then again), an untraced run without perf, then the
// row's run with perf sampling every CPU; the share of the busy samples
// that tracing took (docs/performance.md, Method).
func runShare(tracer string, rounds, conns, concurrency, idle int, withBT bool, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (loads BPF programs, samples every CPU): run it with sudo")
	}
	if _, err := exec.LookPath("perf"); err != nil {
		return errors.New("perf not found (Debian: apt-get install linux-perf)")
	}
	ctx := context.Background()
	srv, port, tmp, cleanup, err := setUp(ctx, conns, concurrency)
	if err != nil {
		return err
	}
	defer cleanup()

	rows := []mode{
		{name: "untraced (perf alone)", untraced: true},
		{name: "empty BPF program on tp_btf (floor)", floor: true},
	}
	if withBT && haveBpftrace() {
		unmount, err := mountTracefs()
		if err != nil {
			return err
		}
		defer unmount()
		rows = append(rows,
			mode{name: "bpftrace: empty program, classic tracepoint", script: bpftraceEmpty},
			mode{name: "bpftrace: dwell histogram keyed by socket", script: bpftraceDwell})
	} else if withBT {
		fmt.Fprintln(os.Stderr, "tcptrace-bench: bpftrace not installed: no bpftrace rows")
	}
	rows = append(rows,
		mode{name: "tcptrace-bpf --emit histograms", args: []string{"--port", port, "--emit", "histograms"}},
		mode{name: "tcptrace-bpf, default output, to a file", args: []string{"--port", port}},
		mode{name: "tcptrace-bpf --emit all, to a file", args: []string{"--port", port, "--emit", "all"}},
	)
	if idle > 0 {
		// Held through every row, so that each row's host has the same
		// sockets; only this row's tracer watches them (their ports).
		ic, err := holdIdle(idle)
		if err != nil {
			return fmt.Errorf("idle connections: %w", err)
		}
		defer ic.stop()
		rows = append(rows, mode{name: fmt.Sprintf("tcptrace-bpf, default output, to a file, %d idle connections watched too", idle),
			args: []string{"--port", port + "," + ic.ports}})
	}

	results := make([][]shareSample, len(rows))
	for round := 1; round <= rounds; round++ {
		for i, m := range rows {
			base, err := churn.Run(ctx, srv.Port(), conns, concurrency)
			if err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			s, err := shareRun(ctx, tracer, m, srv, conns, concurrency, tmp)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			s.ratio /= base.Rate()
			results[i] = append(results[i], s)
			fmt.Fprintf(os.Stderr, "round %d %-45s share %5.2f %% of %d busy samples, ratio %.3f, captured %d/%d, lost %d, ready in %v\n",
				round, m.name, 100*s.counts.Share(), s.counts.Busy(), s.ratio, s.captured, s.expected, s.lost, s.ready.Round(time.Millisecond))
		}
	}
	printShareTable(out, rows, results, conns, concurrency)
	return nil
}

// shareRun runs the load once under the row's tracer with perf sampling
// every CPU from the load's start to 300 ms after its end (the tracer
// reads its ring at most every 100 ms); sample.ratio holds the rate.
func shareRun(ctx context.Context, tracer string, m mode, srv *churn.Server, conns, concurrency int, dir string) (shareSample, error) {
	outFile := filepath.Join(dir, "out")
	var p *tracerProc
	switch {
	case m.floor:
		_, detach, err := attachFloor()
		if err != nil {
			return shareSample{}, err
		}
		defer detach()
	case !m.untraced:
		var err error
		if p, err = startTracer(tracer, m, outFile); err != nil {
			return shareSample{}, err
		}
		defer p.kill()
	}
	rec, err := startPerf(dir)
	if err != nil {
		return shareSample{}, err
	}
	defer rec.kill()
	if err := rec.control("enable"); err != nil {
		return shareSample{}, err
	}
	r, err := churn.Run(ctx, srv.Port(), conns, concurrency)
	if err != nil {
		return shareSample{}, err
	}
	time.Sleep(300 * time.Millisecond)
	if err := rec.control("disable"); err != nil {
		return shareSample{}, err
	}
	if err := rec.stop(); err != nil {
		return shareSample{}, err
	}
	s := shareSample{ratio: r.Rate(), expected: uint64(r.Conns) * 10}
	cl := perfscript.Classifier{MeasurerPID: rec.cmd.Process.Pid}
	if p != nil {
		cl.TracerPID = p.cmd.Process.Pid
		s.ready = p.ready
		if err := p.stop(); err != nil {
			return s, err
		}
		if !m.bpftrace() {
			st, err := lastStats(outFile)
			if err != nil {
				return s, err
			}
			s.captured, s.lost = st.captured(), st.Lost
		}
	}
	s.counts, err = rec.counts(cl)
	return s, err
}

// perfRecord is `perf record -a -g -e cpu-clock` started with its events
// off and switched on and off through its control FIFO, so that the
// samples cover the load and not perf's own start-up.
type perfRecord struct {
	cmd    *exec.Cmd
	data   string
	ctl    *os.File
	ack    *bufio.Reader
	ackF   *os.File
	errOut tailBuffer
	waited bool
}

func startPerf(dir string) (*perfRecord, error) {
	ctlPath, ackPath := filepath.Join(dir, "perf.ctl"), filepath.Join(dir, "perf.ack")
	p := &perfRecord{data: filepath.Join(dir, "perf.data")}
	for _, f := range []string{ctlPath, ackPath, p.data} {
		os.Remove(f)
	}
	for _, f := range []string{ctlPath, ackPath} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			return nil, fmt.Errorf("perf control fifo: %w", err)
		}
	}
	// Read-write, so that neither open waits for perf to open its end.
	var err error
	if p.ctl, err = os.OpenFile(ctlPath, os.O_RDWR, 0); err != nil {
		return nil, err
	}
	if p.ackF, err = os.OpenFile(ackPath, os.O_RDWR, 0); err != nil {
		p.ctl.Close()
		return nil, err
	}
	p.ack = bufio.NewReader(p.ackF)
	p.cmd = exec.Command("perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "999",
		"-D", "-1", "--control", "fifo:"+ctlPath+","+ackPath, "-o", p.data)
	p.cmd.Stdout, p.cmd.Stderr = &p.errOut, &p.errOut
	if err := p.cmd.Start(); err != nil {
		p.ctl.Close()
		p.ackF.Close()
		return nil, fmt.Errorf("perf record: %w", err)
	}
	return p, nil
}

// control sends perf a command ("enable", "disable") and waits for its
// acknowledgement.
func (p *perfRecord) control(c string) error {
	if _, err := io.WriteString(p.ctl, c+"\n"); err != nil {
		return fmt.Errorf("perf %s: %w", c, err)
	}
	got := make(chan error, 1)
	go func() {
		line, err := p.ack.ReadString('\n')
		// perf writes "ack\n" with its terminating NUL, which
		// comes before the next answer.
		if err == nil && strings.Trim(line, "\x00\n") != "ack" {
			err = fmt.Errorf("answer %q", line)
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			return fmt.Errorf("perf %s: %w", c, err)
		}
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("perf %s: no acknowledgement in 60 s: %s", c, p.errOut.String())
	}
}

// stop interrupts perf record and waits for it to write its file.
func (p *perfRecord) stop() error {
	p.cmd.Process.Signal(syscall.SIGINT)
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	p.waited = true
	defer p.ctl.Close()
	defer p.ackF.Close()
	select {
	case err := <-exited:
		// perf record, done writing, ends itself by the signal it got.
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("perf record: %w: %s", err, p.errOut.String())
		}
		return nil
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-exited
		return errors.New("perf record did not exit within 60 s of SIGINT")
	}
}

// kill ends a perf record that was not stopped (on an error path).
func (p *perfRecord) kill() {
	if p.waited {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.ctl.Close()
	p.ackF.Close()
	p.waited = true
}

// counts runs perf script on the recording and classifies its samples.
// The fields are named so that each header carries pid/tid: the tracer
// is found by its process, whichever of its threads ran.
func (p *perfRecord) counts(cl perfscript.Classifier) (perfscript.Counts, error) {
	cmd := exec.Command("perf", "script", "-i", p.data,
		"-F", "comm,pid,tid,cpu,time,period,event,ip,sym,symoff,dso")
	var errOut tailBuffer
	cmd.Stderr = &errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return perfscript.Counts{}, err
	}
	if err := cmd.Start(); err != nil {
		return perfscript.Counts{}, fmt.Errorf("perf script: %w", err)
	}
	n, err := perfscript.Count(stdout, cl)
	if err != nil {
		io.Copy(io.Discard, stdout)
	}
	if werr := cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("perf script: %w: %s", werr, errOut.String())
	}
	return n, err
}

func printShareTable(out io.Writer, rows []mode, results [][]shareSample, conns, concurrency int) {
	fmt.Fprintf(out, "\ntcptrace-bench --share: %d connections per run (%d transitions), %d concurrent clients, %d rounds; %s\n",
		conns, conns*10, concurrency, len(results[0]), machine())
	fmt.Fprintln(out, "share: samples of BPF programs, socket storage outside them, ring-buffer wakeups and the tracer's process, over busy samples (every CPU, perf record -a -g -e cpu-clock -F 999, idle task and perf itself left out); breakdown over all rounds.")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| row | share of busy CPU, per round | programs | storage outside | wakeup | tracer process | busy samples per round | captured / expected (worst round) | lost (all rounds) | throughput ratio per round | ready (start to ready line) per round |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|---|")
	pct := func(f float64) string { return fmt.Sprintf("%.2f %%", 100*f) }
	for i, m := range rows {
		var total perfscript.Counts
		var shares, busy, ratios, ready []string
		var lost uint64
		worst := results[i][0]
		for _, s := range results[i] {
			total.Add(s.counts)
			shares = append(shares, pct(s.counts.Share()))
			busy = append(busy, fmt.Sprint(s.counts.Busy()))
			ratios = append(ratios, fmt.Sprintf("%.2f", s.ratio))
			ready = append(ready, fmt.Sprintf("%.2f s", s.ready.Seconds()))
			lost += s.lost
			if float64(s.captured)/float64(max(s.expected, 1)) < float64(worst.captured)/float64(max(worst.expected, 1)) {
				worst = s
			}
		}
		capCol, lostCol, readyCol := fmt.Sprintf("%d / %d", worst.captured, worst.expected), fmt.Sprint(lost), strings.Join(ready, " / ")
		if m.untraced || m.floor || m.bpftrace() {
			capCol, lostCol, readyCol = "n/a", "n/a", "n/a"
		}
		fmt.Fprintf(out, "| %s | **%s** | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m.name,
			strings.Join(shares, " / "),
			pct(total.Of(total[perfscript.Programs])), pct(total.Of(total[perfscript.StorageOutside])),
			pct(total.Of(total[perfscript.Wakeup])), pct(total.Of(total[perfscript.Tracer])),
			strings.Join(busy, " / "), capCol, lostCol, strings.Join(ratios, " / "), readyCol)
	}
}
