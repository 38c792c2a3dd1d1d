//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/demo"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/top"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/tracer"
)

var demoUsage = fmt.Sprintf(`Usage: sudo tcptrace-bpf demo [--top] [flags]

Reproduce the four classic TCP piles in a private network namespace and
trace them: a connect whose SYNs are dropped (stuck in SYN_SENT), a
handshake whose final ACK is lost for 5 s (half-open SYN_RECV), a server
leaking CLOSE_WAIT, and clients closing first (TIME_WAIT). Ends after
--duration (default %[3]s) or at Ctrl-C, and removes the namespace (its
nftables rules go with it) and every process it started. Needs root,
ip (iproute2) and nft (nftables).

Defaults differ from a plain run so something shows within seconds:
--stuck %[1]s,
--interval %[2]s (NDJSON only: text shows its tables once, at the end),
--duration %[3]s. --top shows it in the live view instead; --incident only
the trouble, grouped (--pile %[4]s, a line per group at most
every %[2]s).

Flags (--top or --incident, and the tracing flags but --netns):
`, demoStuck, demoInterval, demoDuration, demoPile)

// The demo's own defaults (a plain run's are config.Defaults), written
// into its usage from here.
const (
	demoStuck    = "SYN_SENT=2s,SYN_RECV=2s,CLOSE_WAIT=2s,LAST_ACK=5s,FIN_WAIT2=5s"
	demoInterval = 5 * time.Second
	demoDuration = 30 * time.Second
)

// demoPile is the demo's TIME_WAIT pile for --incident: its clients close
// two connections a second, so 20 is passed within seconds.
const demoPile = "TIME_WAIT=20"

// runDemo runs the demo subcommand; it returns the exit code.
func runDemo(args []string, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	fs, o := traceFlags(&cfg)
	withTop := fs.Bool("top", false, "show the demo in the live view (top) instead of records")
	withIncident := fs.Bool("incident", false, fmt.Sprintf("show only the trouble, grouped (the incident command, with --pile %s --every %s), instead of records", demoPile, demoInterval))
	done, err := parseTraceFlagSet(fs, o, &cfg, args, demoUsage, stdout)
	if done {
		return 0
	}
	if err == nil && fs.Changed("netns") {
		err = fmt.Errorf("--netns: the demo traces the namespace it makes")
	}
	if err == nil && !fs.Changed("stuck") {
		cfg.Stuck, err = config.ParseStuck(demoStuck)
	}
	if !fs.Changed("duration") {
		cfg.Duration = demoDuration
	}
	// Records every demoInterval, so a pipeline sees the piles grow;
	// text is for a person, who gets the histograms once, at the end
	// (cumulative tables repeated would say nothing new), and an --emit
	// without the periodic records gets none.
	if !fs.Changed("interval") && cfg.Format == config.FormatNDJSON && cfg.Emit&(config.EmitHistograms|config.EmitStates) != 0 {
		cfg.Interval = demoInterval
	}
	if err == nil && *withTop && *withIncident {
		err = fmt.Errorf("--top and --incident are two views: give one")
	}
	if err == nil && *withIncident {
		err = refused(fs, incidentRefuses, "does not apply to --incident, which writes only incident lines")
	}
	if err == nil && *withTop {
		if err = notForTop(fs, "--top"); err == nil {
			err = needTerminal(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf demo: %v\n", err)
		return 2
	}
	signal.Ignore(syscall.SIGPIPE)
	// SIGHUP too: a closed terminal (demo --top in a window that is
	// closed) must clean up as Ctrl-C does, not leave the namespace.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// The demo ends the trace itself (its own timer, then cleanup).
	d := cfg.Duration
	cfg.Duration = 0
	trace := func(ctx context.Context, netns uint32, ready func()) error {
		cfg.Netns = netns
		tap := func(line string) {
			if strings.HasPrefix(line, "tcptrace-bpf: tracing") {
				ready()
			}
		}
		if *withTop {
			return top.Run(ctx, cfg, os.Stdin, stdout, stderr, tap)
		}
		if *withIncident {
			piles, err := config.ParsePiles(demoPile)
			if err != nil {
				return err
			}
			return traceIncidents(ctx, cfg, piles, demoInterval, stdout, &lineTap{w: stderr, tap: tap})
		}
		return tracer.Run(ctx, cfg, stdout, &lineTap{w: stderr, tap: tap})
	}
	demoErr := stderr
	var held syncBuffer
	if *withTop {
		demoErr = &held // not over the screen: written once it is restored
	}
	err = demo.Run(ctx, d, trace, demoErr)
	io.WriteString(stderr, held.String())
	if err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf demo: %v\n", err)
		return 1
	}
	return 0
}

// syncBuffer is a bytes.Buffer several goroutines write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lineTap passes writes through and calls tap with each whole line.
type lineTap struct {
	w    io.Writer
	tap  func(string)
	part []byte
}

func (l *lineTap) Write(b []byte) (int, error) {
	l.part = append(l.part, b...)
	for {
		i := strings.IndexByte(string(l.part), '\n')
		if i < 0 {
			break
		}
		l.tap(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	return l.w.Write(b)
}
