//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/demo"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/probe"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/tracer"
)

// trace runs the tracer until a signal, --duration, or a closed stdout.
func trace(cfg config.Config, stdout, stderr io.Writer) int {
	// Writes to a closed stdout return EPIPE instead of killing us, so
	// the run can end cleanly (| head -1).
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := tracer.Run(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "tcptrace-bpf: %v\n", err)
		return 1
	}
	return 0
}

// runRole runs a demo server or client when args name one; it exits.
func runRole(args []string) {
	if len(args) > 0 && args[0] == demo.RoleArg {
		demo.RoleMain(args[1:])
	}
}

// kernelFeatures names what this kernel offers the tracer.
func kernelFeatures() []string { return probe.Features() }

// selfNetns is the inode of this process's network namespace.
func selfNetns() (uint32, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}
