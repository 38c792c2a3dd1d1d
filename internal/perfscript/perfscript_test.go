package perfscript

import (
	"strings"
	"testing"
)

// Samples as `perf script -F comm,pid,tid,cpu,time,period,event,ip,sym,symoff,dso`
// prints them, stacks taken from a run of the churn benchmark under
// tcptrace-bpf (kernel 6.18) and trimmed.
var samples = []struct {
	name string
	text string
	want Class
}{
	{"idle task halted", `swapper     0/0     [000]  1441.842175:    1001001 cpu-clock: 
	ffffffff822601ab pv_native_safe_halt+0xb ([kernel.kallsyms])
	ffffffff82261cb5 default_idle+0x5 ([kernel.kallsyms])
	ffffffff82262a3b default_enter_idle+0x1b ([kernel.kallsyms])
	ffffffff822614b3 cpuidle_enter_state+0x73 ([kernel.kallsyms])
	ffffffff81e60f6d cpuidle_enter+0x2d ([kernel.kallsyms])
	ffffffff813cfed6 do_idle+0x136 ([kernel.kallsyms])
	ffffffff813d0215 cpu_startup_entry+0x25 ([kernel.kallsyms])
`, Idle},
	{"idle task, no stack", `swapper     0/0     [001]  1441.842176:    1001001 cpu-clock: 
`, Idle},
	{"idle task interrupted by a softirq (not idle)", `swapper     0/0     [001]  1441.850001:    1001001 cpu-clock: 
	ffffffff8209541a tcp_v4_rcv+0xe6a ([kernel.kallsyms])
	ffffffff820556f8 ip_protocol_deliver_rcu+0x28 ([kernel.kallsyms])
	ffffffff81eb98d3 process_backlog+0x83 ([kernel.kallsyms])
	ffffffff81eba59e net_rx_action+0x16e ([kernel.kallsyms])
	ffffffff8136963d handle_softirqs+0xcd ([kernel.kallsyms])
	ffffffff81369a1c irq_exit_rcu+0x4c ([kernel.kallsyms])
	ffffffff8226013e sysvec_apic_timer_interrupt+0x7e ([kernel.kallsyms])
	ffffffff81000f4a asm_sysvec_apic_timer_interrupt+0x1a ([kernel.kallsyms])
	ffffffff822601ab pv_native_safe_halt+0xb ([kernel.kallsyms])
	ffffffff82261cb5 default_idle+0x5 ([kernel.kallsyms])
	ffffffff813cfed6 do_idle+0x136 ([kernel.kallsyms])
`, Other},
	{"program, reading the clock", `tcptrace-bench  7388/7388  [000]  1441.823143:    1001001 cpu-clock: 
	ffffffff8130f570 read_tsc+0x0 ([kernel.kallsyms])
	ffffffff8143043d ktime_get_mono_fast_ns+0x2d ([kernel.kallsyms])
	ffffffffc0028c09 bpf_prog_88f2bba56152c7a0_on_state+0x2b5 (bpf_prog_88f2bba56152c7a0_on_state)
	ffffffff814ca648 bpf_trace_run3+0x108 ([kernel.kallsyms])
	ffffffff81f0e9e7 __traceiter_inet_sock_set_state+0x37 ([kernel.kallsyms])
	ffffffff820b9992 inet_sk_state_store+0x62 ([kernel.kallsyms])
	ffffffff8206c0ae tcp_done+0x2e ([kernel.kallsyms])
	ffffffff8225aa01 do_syscall_64+0x71 ([kernel.kallsyms])
	            916e internal/runtime/syscall/linux.Syscall6+0xe (/work/tcptrace-bench)
`, Programs},
	{"program creating socket storage (counted once, as program)", `tcptrace-bench  7391/7395  [001]  1441.825448:    1001001 cpu-clock: 
	ffffffff816a1b4e page_counter_charge+0x4e ([kernel.kallsyms])
	ffffffff81648582 __kmalloc_noprof+0x562 ([kernel.kallsyms])
	ffffffff814e8f9f bpf_map_kzalloc+0x4f ([kernel.kallsyms])
	ffffffff8153cdc0 bpf_selem_alloc+0x70 ([kernel.kallsyms])
	ffffffff8153e1a2 bpf_local_storage_update+0x1b2 ([kernel.kallsyms])
	ffffffff81f2b3c5 bpf_sk_storage_get_tracing+0x75 ([kernel.kallsyms])
	ffffffffc002747d bpf_prog_88f2bba56152c7a0_on_state+0x1a5 (bpf_prog_88f2bba56152c7a0_on_state)
	ffffffff814ca648 bpf_trace_run3+0x108 ([kernel.kallsyms])
	ffffffff81f0e9e7 __traceiter_inet_sock_set_state+0x37 ([kernel.kallsyms])
	ffffffff820b9992 inet_sk_state_store+0x62 ([kernel.kallsyms])
	ffffffff8208fc1f tcp_v4_connect+0x26f ([kernel.kallsyms])
`, Programs},
	{"dispatch before the program", `tcptrace-bench  7391/7394  [000]  1441.815128:    1001001 cpu-clock: 
	ffffffff814ca599 bpf_trace_run3+0x59 ([kernel.kallsyms])
	ffffffff81f0e9e7 __traceiter_inet_sock_set_state+0x37 ([kernel.kallsyms])
	ffffffff820b9992 inet_sk_state_store+0x62 ([kernel.kallsyms])
`, Programs},
	{"program raising the ring's wakeup", `tcptrace-bench  7391/7392  [001]  1441.921553:    1001001 cpu-clock: 
	ffffffff8133ce8d native_write_msr+0xd ([kernel.kallsyms])
	ffffffff81309e24 arch_irq_work_raise+0x24 ([kernel.kallsyms])
	ffffffff814dccd9 irq_work_queue+0x29 ([kernel.kallsyms])
	ffffffff8153c440 bpf_ringbuf_submit+0x60 ([kernel.kallsyms])
	ffffffffc0028122 bpf_prog_88f2bba56152c7a0_on_state+0xe4a (bpf_prog_88f2bba56152c7a0_on_state)
	ffffffff814ca648 bpf_trace_run3+0x108 ([kernel.kallsyms])
`, Programs},
	{"classic tracepoint (bpftrace)", `tcptrace-bench  7391/7393  [000]  1500.000100:    1001001 cpu-clock: 
	ffffffff814c0d31 __bpf_prog_run+0x21 ([kernel.kallsyms])
	ffffffff814c2f10 trace_call_bpf+0xd0 ([kernel.kallsyms])
	ffffffff814b1a20 perf_trace_run_bpf_submit+0x40 ([kernel.kallsyms])
	ffffffff81f0a5d2 perf_trace_inet_sock_set_state+0x152 ([kernel.kallsyms])
	ffffffff81f0e9e7 __traceiter_inet_sock_set_state+0x37 ([kernel.kallsyms])
	ffffffff820b9992 inet_sk_state_store+0x62 ([kernel.kallsyms])
`, Programs},
	{"storage cloned at accept", `tcptrace-bench  7391/7392  [000]  1441.834161:    1001001 cpu-clock: 
	ffffffff816a1b4e page_counter_charge+0x4e ([kernel.kallsyms])
	ffffffff81648582 __kmalloc_noprof+0x562 ([kernel.kallsyms])
	ffffffff814e8f9f bpf_map_kzalloc+0x4f ([kernel.kallsyms])
	ffffffff8153cdc0 bpf_selem_alloc+0x70 ([kernel.kallsyms])
	ffffffff81f2accb bpf_sk_storage_clone+0xcb ([kernel.kallsyms])
	ffffffff81e86d27 sk_clone_lock+0x347 ([kernel.kallsyms])
	ffffffff82095d3e tcp_create_openreq_child+0x1e ([kernel.kallsyms])
	ffffffff82094a9c tcp_v4_rcv+0x4ec ([kernel.kallsyms])
	ffffffff81eba59e net_rx_action+0x16e ([kernel.kallsyms])
	ffffffff8136963d handle_softirqs+0xcd ([kernel.kallsyms])
`, StorageOutside},
	{"storage freed with the socket", `tcptrace-bench  7391/7391  [000]  1441.869201:    1001001 cpu-clock: 
	ffffffff8226e979 _raw_spin_unlock_irqrestore+0x19 ([kernel.kallsyms])
	ffffffff8153da7e bpf_local_storage_destroy+0x13e ([kernel.kallsyms])
	ffffffff81f2ab2e bpf_sk_storage_free+0x3e ([kernel.kallsyms])
	ffffffff81e8578c __sk_destruct+0x7c ([kernel.kallsyms])
	ffffffff820b837f inet_release+0x3f ([kernel.kallsyms])
`, StorageOutside},
	{"storage freed after a grace period, on the idle task", `swapper     0/0     [001]  1441.870001:    1001001 cpu-clock: 
	ffffffff8164a2fa kmem_cache_free+0x50a ([kernel.kallsyms])
	ffffffff8153c9e0 bpf_selem_free_rcu+0x30 ([kernel.kallsyms])
	ffffffff81402b1e rcu_core+0x2ce ([kernel.kallsyms])
	ffffffff8136963d handle_softirqs+0xcd ([kernel.kallsyms])
	ffffffff81369a1c irq_exit_rcu+0x4c ([kernel.kallsyms])
	ffffffff822601ab pv_native_safe_halt+0xb ([kernel.kallsyms])
	ffffffff813cfed6 do_idle+0x136 ([kernel.kallsyms])
`, StorageOutside},
	{"someone else's inode storage (not ours)", `systemd     1/1     [000]  1441.880001:    1001001 cpu-clock: 
	ffffffff8153da7e bpf_local_storage_destroy+0x13e ([kernel.kallsyms])
	ffffffff8153f0a1 bpf_inode_storage_free+0x41 ([kernel.kallsyms])
	ffffffff816f1c2e security_inode_free+0x3e ([kernel.kallsyms])
`, Other},
	{"ring-buffer wakeup from irq_work", `tcptrace-bench  7391/7393  [001]  1441.900001:    1001001 cpu-clock: 
	ffffffff813f7b12 __wake_up_common+0x72 ([kernel.kallsyms])
	ffffffff813f7c1d __wake_up+0x3d ([kernel.kallsyms])
	ffffffff8153c1e5 bpf_ringbuf_notify+0x15 ([kernel.kallsyms])
	ffffffff814dc8e2 irq_work_single+0x42 ([kernel.kallsyms])
	ffffffff814dc9a5 irq_work_run_list+0x25 ([kernel.kallsyms])
	ffffffff814dc9f0 irq_work_run+0x20 ([kernel.kallsyms])
	ffffffff81309d5e __sysvec_irq_work+0x1e ([kernel.kallsyms])
`, Wakeup},
	{"tracer process, user space", `tcptrace-bpf  7333/7344  [000]  1441.900002:    1001001 cpu-clock: 
	          4a1b2c github.com/tcptrace-bpf/tcptrace-bpf/internal/output.(*NDJSON).Transition+0x8c (/work/tcptrace-bpf)
	          4a0f11 github.com/tcptrace-bpf/tcptrace-bpf/internal/tracer.(*pipeline).handle+0x51 (/work/tcptrace-bpf)
`, Tracer},
	{"tracer process, writing its file", `tcptrace-bpf  7333/7340  [001]  1441.900003:    1001001 cpu-clock: 
	ffffffff8159f0b1 filemap_add_folio+0x61 ([kernel.kallsyms])
	ffffffff8172c3a0 ext4_buffered_write_iter+0x70 ([kernel.kallsyms])
	ffffffff816d6e2e vfs_write+0x26e ([kernel.kallsyms])
	            916e internal/runtime/syscall/linux.Syscall6+0xe (/work/tcptrace-bpf)
`, Tracer},
	{"the load", `tcptrace-bench  7391/7396  [000]  1441.900004:    1001001 cpu-clock: 
	ffffffff82141cf6 __inet_bind+0x96 ([kernel.kallsyms])
	ffffffff81e80308 __sys_bind+0xc8 ([kernel.kallsyms])
	           93bc9 syscall.bind+0x29 (/work/tcptrace-bench)
`, Other},
	{"perf itself", `perf  7400/7400  [001]  1441.900005:    1001001 cpu-clock: 
	ffffffff8159f0b1 perf_mmap__push+0x61 ([kernel.kallsyms])
`, Measurer},
	{"default format: comm tid, a command with spaces", `Web Content   812 [001]  1441.900006:    1001001 cpu-clock: 
	          123456 [unknown] ([unknown])
`, Other},
}

func TestClassify(t *testing.T) {
	c := Classifier{TracerPID: 7333, MeasurerPID: 7400}
	for _, tc := range samples {
		t.Run(tc.name, func(t *testing.T) {
			var got []Class
			if err := Parse(strings.NewReader(tc.text), func(s Sample) { got = append(got, c.Classify(s)) }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("classes %v, want [%v]", got, tc.want)
			}
		})
	}
}

func TestCount(t *testing.T) {
	var all strings.Builder
	for _, tc := range samples {
		all.WriteString(tc.text)
		all.WriteString("\n")
	}
	n, err := Count(strings.NewReader(all.String()), Classifier{TracerPID: 7333, MeasurerPID: 7400})
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Other: 4, Idle: 2, Programs: 5, StorageOutside: 3, Wakeup: 1, Tracer: 2, Measurer: 1}
	if n != want {
		t.Fatalf("counts %v, want %v", n, want)
	}
	if n.Busy() != 15 || n.Tracing() != 11 {
		t.Errorf("busy %d tracing %d, want 15 and 11", n.Busy(), n.Tracing())
	}
	if s := n.Share(); s != 11.0/15 {
		t.Errorf("share %v", s)
	}
}

// The same samples in the default format (comm tid, no pid): a
// multithreaded tracer is then found only through its main thread, which
// is why the bench asks perf script for pid/tid.
func TestParseDefaultFormat(t *testing.T) {
	text := "tcptrace-bpf  7344 [000]  1441.900002:    1001001 cpu-clock: \n\t4a1b2c main.main+0x8c (/work/tcptrace-bpf)\n"
	var got []Sample
	if err := Parse(strings.NewReader(text), func(s Sample) { got = append(got, s) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Comm != "tcptrace-bpf" || got[0].PID != 7344 || got[0].TID != 7344 ||
		len(got[0].Symbols) != 1 || got[0].Symbols[0] != "main.main" {
		t.Errorf("%+v", got)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, text := range []string{"\tffffffff8130f570 read_tsc+0x0 ([kernel.kallsyms])\n", "no header here\n"} {
		if err := Parse(strings.NewReader(text), func(Sample) {}); err == nil {
			t.Errorf("no error for %q", text)
		}
	}
}

func TestTracerPart(t *testing.T) {
	for _, tc := range []struct {
		stack []string
		want  Part
	}{
		// A connection record's write runs under the timeline and the
		// encoder: it is the write.
		{[]string{"copy_folio_from_iter_atomic", "ksys_write", "syscall.write", "bufio.(*Writer).Flush",
			"github.com/x/internal/output.(*NDJSON).start", "github.com/x/internal/output.(*NDJSON).Connection",
			"github.com/x/internal/timeline.(*Tracker).ReleaseClosed", "github.com/x/internal/tracer.(*run).loop"}, PartWrite},
		{[]string{"runtime.memmove", "github.com/x/internal/output.(*NDJSON).Connection",
			"github.com/x/internal/timeline.(*Tracker).emitAndRecycle", "github.com/x/internal/timeline.(*Tracker).Observe"}, PartFormat},
		{[]string{"runtime.mapaccess1_fast64", "github.com/x/internal/timeline.(*Tracker).Observe",
			"github.com/x/internal/pipeline.(*Pipeline).Handle"}, PartTimeline},
		{[]string{"github.com/x/internal/probe.(*ring).next", "github.com/x/internal/tracer.(*run).loop"}, PartRing},
		{[]string{"finish_task_switch.isra.0", "do_nanosleep", "runtime.usleep.abi0", "runtime.sysmon"}, PartScheduler},
		{[]string{"established_get_first", "bpf_iter_tcp_batch", "github.com/x/internal/probe.runIterIn.func1"}, PartWalk},
		{[]string{"github.com/x/internal/pipeline.(*Pipeline).WalkAndWrite", "github.com/x/internal/tracer.(*run).finish"}, PartClosing},
		{[]string{"clear_page_erms"}, PartOther},
	} {
		if got := TracerPart(Sample{Symbols: tc.stack}); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.stack[0], got, tc.want)
		}
	}
}
