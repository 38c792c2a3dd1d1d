//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/charmbracelet/x/term"
	flag "github.com/spf13/pflag"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/top"
)

const topUsage = `Usage: sudo tcptrace-bpf top [flags]

A live full-screen view, refreshed every second, the trouble first: the
stuck connections (newest first), the processes holding the most
sockets in CLOSE_WAIT, SYN_SENT, SYN_RECV, FIN_WAIT2 and TIME_WAIT with
the oldest age, listeners' accept queues and half-open handshakes, then
sockets per state with a sparkline, the remote addresses, dwell
p50/p90/p99 per state; the header names the namespaces and filters, and
lost events. Keys: s sorts (count, age, name), f shows one troubled state
in every section, q or Ctrl-C quits and leaves a short summary.
stdout must be a terminal. The tracing flags filter as they do for a
recording; those about the output (--emit, --format, -o, --interval,
--flush, --utc, --cgroup-fields) are refused.

Flags:
`

// topRefuses are the tracing flags about the output, which a view on
// the terminal has none of.
var topRefuses = []string{"emit", "format", "output", "interval", "flush", "utc", "cgroup-fields"}

// notForTop refuses the flags that shape written records, which the live
// view (top, or demo --top: named by view) does not write.
func notForTop(fs *flag.FlagSet, view string) error {
	return refused(fs, topRefuses, fmt.Sprintf("does not apply to %s, which draws on the terminal: drop it, or record without %s", view, view))
}

// runTop runs the top subcommand; it returns the exit code.
func runTop(args []string, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	fs, o := traceFlags(&cfg)
	hideFlags(fs, topRefuses)
	done, err := parseTraceFlagSet(fs, o, &cfg, args, topUsage, stdout)
	if done {
		return 0
	}
	if err == nil {
		err = notForTop(fs, "top")
	}
	if err == nil {
		err = needTerminal(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf top: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := top.Run(ctx, cfg, os.Stdin, stdout, stderr, nil); err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf top: %v\n", err)
		return 1
	}
	return 0
}

// needTerminal refuses a stdout that is not a terminal: the view is a
// screen, not a stream (record with the plain command instead).
func needTerminal(stdout io.Writer) error {
	f, ok := stdout.(*os.File)
	if !ok || !term.IsTerminal(f.Fd()) {
		return fmt.Errorf("stdout is not a terminal: top draws a full-screen view; to record, run tcptrace-bpf without top (e.g. --format text)")
	}
	return nil
}
