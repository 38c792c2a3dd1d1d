// Package perfscript reads the text of `perf script` (samples with call
// stacks, from `perf record -a -g -e cpu-clock`) and sorts each sample by
// who the CPU was working for: the idle task, BPF tracing (the programs
// and what they call, socket storage cloned and freed outside them, the
// ring buffer's wakeups), the tracer's own process, or anything else. The
// share of the busy samples that tracing takes is the benchmark's cost
// measure (docs/performance.md, Method). Pure text processing: it needs
// neither root nor perf.
package perfscript

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Sample is one sample: its task and its stack, innermost frame first.
type Sample struct {
	Comm     string
	PID, TID int
	Symbols  []string // function names, without the +0x offset
}

// Class is what a sample's CPU time went to.
type Class int

const (
	// Other is busy work that is not tracing: the load, the kernel's
	// network stack, other processes.
	Other Class = iota
	// Idle is the idle task waiting for work.
	Idle
	// Programs is the tracepoint's BPF dispatch, the programs and
	// everything they call (socket storage, ring buffer, helpers).
	Programs
	// StorageOutside is socket storage cloned at accept and freed at
	// socket destruction, outside any program.
	StorageOutside
	// Wakeup is the ring buffer's deferred wakeup of its reader
	// (bpf_ringbuf_notify, run from irq_work).
	Wakeup
	// Tracer is every other sample of the tracer's process.
	Tracer
	// Measurer is the sampling tool's own process (perf), on neither
	// side of the ratio.
	Measurer
	numClasses
)

var classNames = [numClasses]string{"other", "idle", "programs", "storage outside", "wakeup", "tracer process", "measurer"}

func (c Class) String() string {
	if c < 0 || c >= numClasses {
		return fmt.Sprintf("Class(%d)", int(c))
	}
	return classNames[c]
}

// Classifier sorts samples. A zero PID matches no process.
type Classifier struct {
	TracerPID   int // the tracer's process (tcptrace-bpf, bpftrace)
	MeasurerPID int // perf record's process
}

// Classify tells what one sample's CPU time went to. Tracing frames win
// over the task: a program run from the load's system call, or from a
// softirq that interrupted the idle task, is tracing.
func (c Classifier) Classify(s Sample) Class {
	var program, storage, otherStorage, wakeup, idle, interrupt bool
	for _, sym := range s.Symbols {
		switch {
		case isProgram(sym):
			program = true
		case isSockStorage(sym):
			storage = true
		case isOtherStorage(sym):
			otherStorage = true
		case sym == "bpf_ringbuf_notify":
			wakeup = true
		case isIdle(sym):
			idle = true
		case isInterruptWork(sym):
			interrupt = true
		}
	}
	switch {
	case program:
		// Anything under a program frame is the program's, its
		// socket-storage calls included: counted once.
		return Programs
	case storage && !otherStorage:
		// inode, task or cgroup storage (someone else's LSM
		// programs) shares bpf_local_storage_*: not ours.
		return StorageOutside
	case wakeup:
		return Wakeup
	}
	// The idle task is idle unless it was interrupted to do work
	// (softirq, irq_work) on the way.
	return c.byTask(s, (idle || s.PID == 0) && !interrupt)
}

func (c Classifier) byTask(s Sample, idle bool) Class {
	switch {
	case c.TracerPID != 0 && s.PID == c.TracerPID:
		return Tracer
	case c.MeasurerPID != 0 && s.PID == c.MeasurerPID:
		return Measurer
	case idle:
		return Idle
	}
	return Other
}

// isProgram: a BPF program's JIT image, or the dispatch that runs
// programs from a tracepoint (tp_btf: __traceiter_*, bpf_trace_run*;
// classic tracepoints: perf_trace_*, trace_call_bpf).
func isProgram(sym string) bool {
	return strings.HasPrefix(sym, "bpf_prog_") ||
		strings.HasPrefix(sym, "bpf_trace_run") ||
		strings.HasPrefix(sym, "__bpf_trace_") ||
		sym == "trace_call_bpf" ||
		sym == "perf_trace_run_bpf_submit" ||
		sym == "__traceiter_inet_sock_set_state" ||
		sym == "perf_trace_inet_sock_set_state" ||
		sym == "trace_event_raw_event_inet_sock_set_state"
}

// isSockStorage: socket storage's own functions and the generic local
// storage under them (allocation, linking, RCU-deferred frees).
func isSockStorage(sym string) bool {
	return strings.HasPrefix(sym, "bpf_sk_storage_") ||
		strings.HasPrefix(sym, "bpf_local_storage_") ||
		strings.HasPrefix(sym, "bpf_selem_")
}

func isOtherStorage(sym string) bool {
	return strings.HasPrefix(sym, "bpf_inode_storage_") ||
		strings.HasPrefix(sym, "bpf_task_storage_") ||
		strings.HasPrefix(sym, "bpf_cgrp_storage_")
}

func isIdle(sym string) bool {
	switch sym {
	case "do_idle", "cpu_idle_poll", "default_idle", "default_idle_call",
		"default_enter_idle", "poll_idle", "arch_cpu_idle", "cpu_startup_entry":
		return true
	}
	return strings.HasPrefix(sym, "cpuidle_")
}

// isInterruptWork: deferred work run on whatever task was interrupted.
func isInterruptWork(sym string) bool {
	return sym == "handle_softirqs" || sym == "__do_softirq" ||
		strings.HasPrefix(sym, "irq_work_run") || sym == "irq_work_single"
}

// Counts are samples per class.
type Counts [numClasses]uint64

// Busy is every sample but the idle task's and the measurer's.
func (n Counts) Busy() uint64 {
	var b uint64
	for c, v := range n {
		if Class(c) != Idle && Class(c) != Measurer {
			b += v
		}
	}
	return b
}

// Tracing is what tracing took: programs, storage outside them, wakeups
// and the tracer's process.
func (n Counts) Tracing() uint64 {
	return n[Programs] + n[StorageOutside] + n[Wakeup] + n[Tracer]
}

// Share is Tracing over Busy (0 without busy samples).
func (n Counts) Share() float64 { return n.Of(n.Tracing()) }

// Of is v over Busy (0 without busy samples).
func (n Counts) Of(v uint64) float64 {
	b := n.Busy()
	if b == 0 {
		return 0
	}
	return float64(v) / float64(b)
}

// Add adds m's samples to n.
func (n *Counts) Add(m Counts) {
	for c := range n {
		n[c] += m[c]
	}
}

// Count reads `perf script` output and counts its samples by class.
func Count(r io.Reader, c Classifier) (Counts, error) {
	var n Counts
	err := Parse(r, func(s Sample) { n[c.Classify(s)]++ })
	return n, err
}

// header matches a sample's first line: "comm pid/tid [cpu] ..." with
// -F comm,pid,tid,..., or "comm tid [cpu] ..." in the default format (the
// one number is then taken as the PID too). The command may hold spaces.
var header = regexp.MustCompile(`^(.*?)\s+(-?\d+)(?:/(-?\d+))?\s+\[\d+\]`)

// Parse calls fn for each sample of `perf script` output: a header line
// at column 0, then indented frames "addr symbol+off (dso)", then a blank
// line.
func Parse(r io.Reader, fn func(Sample)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur *Sample
	flush := func() {
		if cur != nil {
			fn(*cur)
			cur = nil
		}
	}
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		switch {
		case strings.TrimSpace(t) == "":
			flush()
		case t[0] == ' ' || t[0] == '\t':
			if cur == nil {
				return fmt.Errorf("perf script line %d: a frame outside a sample: %q", line, t)
			}
			cur.Symbols = append(cur.Symbols, frameSymbol(t))
		default:
			flush()
			m := header.FindStringSubmatch(t)
			if m == nil {
				return fmt.Errorf("perf script line %d: not a sample header: %q", line, t)
			}
			s := Sample{Comm: m[1]}
			s.PID, _ = strconv.Atoi(m[2])
			s.TID = s.PID
			if m[3] != "" {
				s.TID, _ = strconv.Atoi(m[3])
			}
			cur = &s
		}
	}
	flush()
	return sc.Err()
}

// frameSymbol takes "ffffffff814ca648 bpf_trace_run3+0x108 ([kernel.kallsyms])"
// to "bpf_trace_run3".
func frameSymbol(t string) string {
	t = strings.TrimSpace(t)
	if i := strings.LastIndex(t, " ("); i >= 0 {
		t = t[:i]
	}
	if i := strings.IndexByte(t, ' '); i >= 0 {
		t = t[i+1:] // the address
	}
	if i := strings.LastIndex(t, "+0x"); i >= 0 {
		t = t[:i]
	}
	return t
}

// Part is where a sample of the tracer process went, judged by its stack
// (TracerPart): the breakdown of docs/performance.md, "Where the tracer
// process spends its time".
type Part int

const (
	PartWrite Part = iota
	PartFormat
	PartRing
	PartDecode
	PartHistograms
	PartTimeline
	PartPipeline
	PartWalk
	PartClosing
	PartGC
	PartScheduler
	PartLoop
	PartOther
	NumParts
)

// partRules: the first rule one of whose patterns is in a frame of the
// stack names the part; the order matters (a connection record's
// formatting runs under the timeline's emit, a write under the encoder).
var partRules = []struct {
	part     Part
	name     string
	patterns []string
}{
	{PartClosing, "closing records and walk (after the load)", []string{"tracer.(*run).finish"}},
	{PartWalk, "socket walks (stuck and half-open watch)", []string{"probe.runIterIn", "bpf_iter_"}},
	{PartWrite, "write(2) of the output (kernel)", []string{"syscall.write", "bufio.(*Writer).Flush", "ksys_write"}},
	{PartFormat, "NDJSON formatting", []string{"output.(*NDJSON)", "output.(*timeCache)", "output.append"}},
	{PartRing, "ring reading", []string{"ringbuf.", "probe.(*Probe).Next", "probe.(*ring)"}},
	{PartDecode, "decode", []string{"event.Decode"}},
	{PartHistograms, "histograms", []string{"histogram."}},
	{PartTimeline, "timeline (connection table)", []string{"timeline."}},
	{PartPipeline, "pipeline, the rest", []string{"pipeline."}},
	{PartGC, "GC and allocation", []string{"runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.mallocgc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcStart", "runtime.markroot", "runtime.wbBuf"}},
	{PartScheduler, "Go scheduler, sysmon, timers", []string{"runtime.sysmon", "runtime.schedule", "runtime.findRunnable", "runtime.mstart", "runtime.park_m", "runtime.goexit0", "runtime.usleep", "runtime.futex", "runtime.notesleep", "runtime.mcall"}},
	{PartLoop, "run loop, the rest", []string{"tracer.(*run)"}},
}

func (p Part) String() string {
	for _, r := range partRules {
		if r.part == p {
			return r.name
		}
	}
	return "other"
}

// TracerPart says where a sample of the tracer process went.
func TracerPart(s Sample) Part {
	for _, r := range partRules {
		for _, f := range s.Symbols {
			for _, pat := range r.patterns {
				if strings.Contains(f, pat) {
					return r.part
				}
			}
		}
	}
	return PartOther
}
