//go:build linux

package main

import (
	"context"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/churn"
)

// floorRun runs the load with an empty program (return 0) attached to
// the tracer's hook, tp_btf/inet_sock_set_state: what the kernel charges
// any BPF tracer of this tracepoint before it does anything, the dispatch
// and, with statistics on, their own clock reads. The floor under the
// tracer's figures in the same run.
func floorRun(ctx context.Context, srv *churn.Server, conns, concurrency int) (sample, error) {
	prog, detach, err := attachFloor()
	if err != nil {
		return sample{}, err
	}
	defer detach()
	r, err := churn.Run(ctx, srv.Port(), conns, concurrency)
	if err != nil {
		return sample{}, err
	}
	st, err := prog.Stats()
	if err != nil {
		return sample{}, err
	}
	s := sample{ratio: r.Rate(), expected: uint64(r.Conns) * 10}
	if st.RunCount > 0 && st.Runtime > 0 {
		s.nsPrimary = float64(st.Runtime.Nanoseconds()) / float64(st.RunCount)
		s.nsAll = s.nsPrimary
	}
	return s, nil
}

// attachFloor loads the empty program and attaches it; detach undoes both.
func attachFloor() (prog *ebpf.Program, detach func(), err error) {
	prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "floor",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     "inet_sock_set_state",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return nil, nil, fmt.Errorf("loading the empty program: %w", err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		prog.Close()
		return nil, nil, fmt.Errorf("attaching the empty program: %w", err)
	}
	return prog, func() { l.Close(); prog.Close() }, nil
}
