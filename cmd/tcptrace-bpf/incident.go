//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/incident"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/tracer"
)

const incidentUsage = `Usage: sudo tcptrace-bpf incident [flags]

Only trouble, grouped: the answer to a pile in netstat -nat. One line
when a group appears, at most one more per --every while its count
changes, and one when it clears:

  CLOSE_WAIT, FIN_WAIT2, LAST_ACK past their --stuck limit, by owning
    process and local address (a server's listener)
  SYN_SENT past its limit, by remote host:port (the upstream that does
    not answer), naming a process that waits
  half-open handshakes older than the SYN_RECV limit, by listener and
    remote prefix (/24, /64)
  TIME_WAIT past --pile toward one destination (no owner: the kernel
    keeps none for a timewait socket)

  demo-leaky[4312]: 3 in CLOSE_WAIT on 127.0.0.1:9003, oldest 12.5s (stuck past 2s)

Lines name the network namespace when the run spans several (no
--netns). --format ndjson writes incident records (docs/ndjson.md).
The sockets are walked every second.

Flags (the tracing filters, --stuck, and these):
`

// incidentRefuses: the tracing flags about other records.
var incidentRefuses = []string{"emit", "interval", "output", "cgroup-fields", "min-dwell"}

// runIncident runs the incident subcommand; it returns the exit code.
func runIncident(args []string, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	fs, o := traceFlags(&cfg)
	hideFlags(fs, incidentRefuses)
	pile := fs.String("pile", config.DefaultPiles, "a group of more than N sockets in STATE is trouble: STATE=N (TIME_WAIT toward one destination; none: off)")
	every := fs.Duration("every", 10*time.Second, "at most one line per group per DURATION while its count changes")
	done, err := parseTraceFlagSet(fs, o, &cfg, args, incidentUsage, stdout)
	if done {
		return 0
	}
	if err == nil {
		err = refused(fs, incidentRefuses, "does not apply to incident, which writes only incident lines: drop it, or record without incident")
	}
	var piles [event.NumStates]uint64
	if err == nil {
		piles, err = config.ParsePiles(*pile)
	}
	if err == nil && *every <= 0 {
		err = fmt.Errorf("--every must be positive (got %s)", *every)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf incident: %v\n", err)
		return 2
	}
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := traceIncidents(ctx, cfg, piles, *every, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf incident: %v\n", err)
		return 1
	}
	return 0
}

// traceIncidents traces with cfg (its filters, --stuck, --format) and
// writes incident lines to stdout until ctx ends or cfg.Duration passes.
func traceIncidents(ctx context.Context, cfg config.Config, piles [event.NumStates]uint64, every time.Duration, stdout, stderr io.Writer) error {
	icfg := incident.Config{Stuck: cfg.Stuck, Piles: piles, Every: every, ShowNetns: cfg.Netns == 0}
	format, loc := cfg.Format, cfg.TextZone()
	cfg.UTC = false // the zone is the writer's; the tracer writes no text
	// Stuck records and a socket walk a second are what groups are made
	// of; the view writes its own lines.
	cfg.Emit, cfg.Interval = config.EmitStuck|config.EmitStates, time.Second
	return tracer.RunWith(ctx, cfg, func(clock event.Clock) pipeline.Sink {
		var w incident.Writer = incident.NewNDJSON(stdout)
		if format == config.FormatText {
			w = incident.NewText(stdout, loc)
		}
		return incident.New(icfg, clock, w)
	}, stderr)
}
