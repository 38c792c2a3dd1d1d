//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/churn"
)

// soak runs the churn load for d under the tracer (all records to a file,
// metrics on) and samples the tracer's RSS and goroutines every step:
// both must stay flat.
func soak(tracer string, d, step time.Duration, out io.Writer) error {
	srv, err := churn.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer srv.Close()
	tmp, err := os.MkdirTemp("", "tcptrace-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	metrics := "127.0.0.1:19917"
	cmd := exec.Command(tracer, "--port", fmt.Sprint(srv.Port()), "-o", tmp+"/out.ndjson", "--metrics", metrics, "--interval", "30s")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	if err := waitReady(stderr, ""); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var conns int
	done := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			r, err := churn.Run(ctx, srv.Port(), 5000, 16)
			conns += r.Conns
			if err != nil && ctx.Err() == nil {
				done <- err
				return
			}
			// Trim the output file now and then: a soak tests the tracer, not the disk.
			os.Truncate(tmp+"/out.ndjson", 0)
		}
		done <- nil
	}()
	fmt.Fprintf(out, "\nsoak: %s of churn under the tracer, sampled every %s\n\n| elapsed | RSS (MiB) | goroutines | transitions read |\n|---|---|---|---|\n", d, step)
	tick := time.NewTicker(step)
	defer tick.Stop()
	began := time.Now()
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
			fmt.Fprintf(out, "\n%d connections in %s\n", conns, time.Since(began).Round(time.Second))
			return nil
		case <-tick.C:
			rss, _ := vm(cmd.Process.Pid, "VmRSS")
			g, ev := scrape(metrics)
			fmt.Fprintf(out, "| %s | %d | %s | %s |\n", time.Since(began).Round(time.Second), rss>>10, g, ev)
		}
	}
}

// scrape reads go_goroutines and tcptrace_events_total from /metrics.
func scrape(addr string) (goroutines, events string) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "?", "?"
	}
	defer resp.Body.Close()
	goroutines, events = "?", "?"
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_goroutines":
			goroutines = fmt.Sprint(int(v))
		case "tcptrace_events_total":
			events = fmt.Sprint(int64(v))
		}
	}
	return goroutines, events
}
