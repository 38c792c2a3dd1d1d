//go:build linux

package tracer

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/output"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
)

// destination is where a run's records go: Run's output file or stdout,
// or RunWith's sink. start opens it before the privileges are dropped,
// builds its sink once the clock is known, and watches it through the
// run.
type destination interface {
	open() error
	sink(clock event.Clock) pipeline.Sink
	// watch gives the run loop its checks: a stdout reader gone (nil:
	// nothing to watch) and SIGHUP (nil: no file to reopen).
	watch(r *run)
	// describe says, for the start-up line, what the run shows and where.
	describe(cfg *config.Config) string
	close()
}

// toWriter is Run's destination: records encoded as cfg.Format to
// cfg.Output, or stdout.
type toWriter struct {
	cfg    config.Config
	stdout io.Writer
	w      io.Writer
	closeW func()
	hup    chan os.Signal
}

func (d *toWriter) open() (err error) {
	d.w, d.closeW, err = openOutput(d.cfg.Output, d.stdout)
	return err
}

func (d *toWriter) sink(clock event.Clock) pipeline.Sink {
	if d.cfg.Format == config.FormatText {
		return output.NewText(d.w, clock, d.cfg.TextZone())
	}
	return output.NewNDJSON(d.w, clock)
}

func (d *toWriter) watch(r *run) {
	if d.cfg.Output == "" || d.cfg.Output == "-" {
		r.readerGone = readerGone(d.stdout)
		return
	}
	// logrotate: SIGHUP reopens the output file.
	d.hup = make(chan os.Signal, 1)
	signal.Notify(d.hup, syscall.SIGHUP)
	r.hup, r.closeOut = d.hup, &d.closeW
}

func (d *toWriter) describe(cfg *config.Config) string { return cfg.Describe() }

func (d *toWriter) close() {
	if d.hup != nil {
		signal.Stop(d.hup)
	}
	if d.closeW != nil {
		d.closeW()
	}
}

// openOutput opens the output file (created 0640, appended to), or
// returns stdout.
func openOutput(path string, stdout io.Writer) (io.Writer, func(), error) {
	if path == "" || path == "-" {
		return stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open output file: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// toSink is RunWith's destination: a sink of the caller's, no writer to
// watch or reopen.
type toSink struct{ newSink NewSink }

func (d toSink) open() error                          { return nil }
func (d toSink) sink(clock event.Clock) pipeline.Sink { return d.newSink(clock) }
func (d toSink) watch(*run)                           {}
func (d toSink) describe(cfg *config.Config) string   { return cfg.DescribeView() }
func (d toSink) close()                               {}
