// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcptrace-bpf: every TCP state transition, with the socket's owner and the
 * time it spent in the state it leaves, pushed into one BPF ring buffer.
 * This file holds the entry points; the logic is in the headers beside it:
 *
 *   settings.h the filters and tuning set from Go before load
 *   maps.h     every map, with its key, value, insert and delete
 *   filters.h  the user's filters, one function
 *   sockets.h  each socket's entry: owner, cookie, entry time; the
 *              predicates of a transition (a birth, a handshake's end)
 *   record.h   the one record-fill path (tp_btf and the fallback)
 *   hist.h     aggregate mode: histograms in the kernel
 *   conn.h     a connection's transitions held and sent together
 *   state.h    one transition: filters, entry, histogram or record
 *   trouble.h  retransmits and resets
 *   walker.h   the socket walker (iter/tcp)
 *
 * Test hooks (syscall programs, never attached): hist_index_test,
 * hist_stay_test, retrans_count_test.
 *
 * Entry points:
 *   on_state         tp_btf/inet_sock_set_state, the primary program.
 *   on_state_backup  the same hook, a second program that records only the
 *                    events the primary is skipped for (see below).
 *   on_state_tp      the classic tracepoint, for kernels without tp_btf.
 *   on_retransmit, on_retransmit_synack, on_send_reset, on_receive_reset
 *                    and their _tp twins: trouble counters.
 *   walk_sockets     iter/tcp: the sockets that exist.
 *
 * Why a backup program: the kernel does not run a tracing program on a CPU
 * where that same program is already running. When a softirq that changes
 * socket states interrupts the primary (or the primary is preempted), those
 * transitions are skipped and only counted in the primary's recursion_misses.
 * The backup is a different program, so it still runs; it records an event
 * only when the primary's per-CPU busy flag is set, that is when the primary
 * is below it on this CPU's stack and has therefore missed the event. Events
 * lost despite this = primary recursion_misses - rescued; user space reports
 * that number.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tcptrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Keeps these types in the object's BTF so bpf2go can generate Go twins. */
const struct event *unused_event __attribute__((unused));
const struct sock_snap *unused_snap __attribute__((unused));
const struct conn_record *unused_conn __attribute__((unused));
const struct walk_group_key *unused_group_key __attribute__((unused));
const struct walk_group *unused_group __attribute__((unused));
const enum event_flags *unused_flags __attribute__((unused));
const enum event_kind *unused_kind __attribute__((unused));
const enum event_rst *unused_rst __attribute__((unused));
const enum event_tw *unused_tw __attribute__((unused));
const enum untimed_reason *unused_untimed __attribute__((unused));

#include "settings.h"
#include "maps.h"
#include "filters.h"
#include "sockets.h"
#include "record.h"
#include "hist.h"
#include "conn.h"
#include "state.h"
#include "trouble.h"
#include "walker.h"

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c)
		return 0;
	c->busy = 1;
	handle_btf(sk, oldstate, newstate, c, 0);
	c->busy = 0;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_backup, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c || !c->busy)
		return 0; /* the primary ran, or will run, for this event */
	__sync_fetch_and_add(&c->rescued, 1);
	handle_btf(sk, oldstate, newstate, c, 1);
	return 0;
}

/* The classic tracepoint fallback: the record's fields, CO-RE reads. */
SEC("tracepoint/sock/inet_sock_set_state")
int on_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c || ctx->protocol != IPPROTO_TCP)
		return 0;
	/* (t.sk inside BPF_CORE_READ would ask CO-RE for struct transition) */
	struct sock *sk = (struct sock *)ctx->skaddr;
	struct transition t = { .sk = sk };
	t.old = ctx->oldstate;
	t.new = ctx->newstate;
	t.family = ctx->family;
	t.sport = ctx->sport;
	t.dport = ctx->dport;
	t.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	t.now = bpf_ktime_get_ns();
	handle_state(c, &t, reads_tcp_sock(t.old, t.new) ? (struct tcp_sock *)t.sk : 0, false);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	int err = 0;
	/* The err argument came with the record field of the same name
	 * (6.11); before it, reading a third argument would not load. */
	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err))
		err = (int)ctx[2];
	struct sock_info *si = find_entry((struct sock *)sk, true);
	int state = sk->__sk_common.skc_state;
	if (si)
		count_retransmit(si, state, err,
				 state == TCP_SYN_SENT ? total_retrans_of((struct sock *)sk, true) : 0);
	return 0;
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(on_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	on_synack_retransmit((struct sock *)sk, req, true);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_send_reset, const struct sock *sk)
{
	if (sk) /* else a reset for a segment that matched no socket */
		on_reset_sent((struct sock *)sk, sk->__sk_common.skc_state, true);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk)
{
	struct sock_info *si = find_entry(sk, true);
	if (si)
		si->rst |= RST_RECEIVED;
	return 0;
}

/*
 * The leading fields of the classic tcp tracepoints' records. Their event
 * classes were renamed across kernels (tcp_send_reset had its own class
 * only from 6.10, tcp_retransmit_skb from 6.x), so CO-RE cannot match them
 * by type name; the fields these programs read have kept their place in
 * the tracepoint format since 4.x, after the common 8-byte header.
 */
struct tcp_skb_tp_ctx { /* tcp_retransmit_skb, tcp_send_reset */
	__u64 common;
	const void *skbaddr;
	const void *skaddr;
	int state;
};

struct tcp_sk_tp_ctx { /* tcp_receive_reset */
	__u64 common;
	const void *skaddr;
};

struct tcp_synack_tp_ctx { /* tcp_retransmit_synack */
	__u64 common;
	const void *skaddr;
	const void *req;
};

SEC("tracepoint/tcp/tcp_retransmit_skb")
int on_retransmit_tp(struct tcp_skb_tp_ctx *ctx)
{
	int err = 0;
	struct trace_event_raw_tcp_retransmit_skb *rec = (void *)ctx;
	if (bpf_core_field_exists(rec->err)) /* 6.11 on; see on_retransmit */
		err = rec->err;
	struct sock_info *si = find_entry((struct sock *)ctx->skaddr, false);
	if (si)
		count_retransmit(si, ctx->state, err,
				 ctx->state == TCP_SYN_SENT ?
					 total_retrans_of((struct sock *)ctx->skaddr, false) : 0);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int on_retransmit_synack_tp(struct tcp_synack_tp_ctx *ctx)
{
	on_synack_retransmit((struct sock *)ctx->skaddr, ctx->req, false);
	return 0;
}

SEC("tracepoint/tcp/tcp_send_reset")
int on_send_reset_tp(struct tcp_skb_tp_ctx *ctx)
{
	if (ctx->skaddr)
		on_reset_sent((struct sock *)ctx->skaddr, ctx->state, false);
	return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset")
int on_receive_reset_tp(struct tcp_sk_tp_ctx *ctx)
{
	struct sock_info *si = find_entry((struct sock *)ctx->skaddr, false);
	if (si)
		si->rst |= RST_RECEIVED;
	return 0;
}

/*
 * Test hooks, never attached (BPF_PROG_TEST_RUN on syscall programs): the
 * kernel's bucket function against internal/histogram.Index, and the
 * retransmit counting rule.
 */
struct hist_index_args {
	__u64 values[64];
	__u32 index[64];
};

SEC("syscall")
int hist_index_test(struct hist_index_args *args)
{
	/* Unrolled: context accesses need constant offsets. */
#pragma unroll
	for (int i = 0; i < 64; i++)
		args->index[i] = hist_index(args->values[i]);
	return 0;
}

/*
 * The histogram-only mode's stay rule on one socket (the fallback's
 * table, keyed by the socket's address, here a made-up one): n
 * transitions at the given times, into dwell_hists.
 */
struct hist_stay_test_args {
	__u64 now[8];
	__s32 old[8];
	__s32 new[8];
	__u32 n;
	__u32 _pad;
};

SEC("syscall")
int hist_stay_test(struct hist_stay_test_args *args)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c)
		return 0;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i >= args->n)
			break;
		struct transition t = { .sk = (struct sock *)0x1000, .netns = 1, .family = AF_INET,
					.now = args->now[i], .old = args->old[i], .new = args->new[i] };
		handle_hist(&t, 0, false, c);
	}
	return 0;
}

struct retrans_test_args {
	__s32 state[8];
	__s32 err[8];
	__u32 total_retrans[8]; /* the socket's total_retrans after each call */
	__u32 n;
	__u32 retrans;
	__u32 syn_retrans;
	__u32 _pad;
};

SEC("syscall")
int retrans_count_test(struct retrans_test_args *args)
{
	struct sock_info si = {};
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (i < args->n)
			count_retransmit(&si, args->state[i], args->err[i], args->total_retrans[i]);
	args->retrans = si.retrans;
	args->syn_retrans = si.syn_retrans;
	return 0;
}

/* The entry's rules: continuity (a gap and how many transitions it hides)
 * and the fallback's identity check, on entries built here. */
struct entry_test_case {
	__u32 last;   /* sock_info.last */
	__u32 old;    /* the next transition's old state */
	__u16 id_sport, id_dport, sport, dport; /* the entry's ports, the transition's */
	__u32 flags;  /* out: EV_GAP or 0 */
	__u32 unseen; /* out: transitions counted lost */
	__u32 same;   /* out: same_socket on the fallback */
	__u32 _pad;
};

struct entry_test_args {
	struct entry_test_case c[8];
	__u32 n;
	__u32 _pad;
};

SEC("syscall")
int entry_rules_test(struct entry_test_args *args)
{
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i >= args->n)
			break;
		struct entry_test_case *tc = &args->c[i];
		struct counters c = {};
		struct sock_info si = { .last = tc->last, .id_sport = tc->id_sport,
					.id_dport = tc->id_dport };
		struct transition t = { .old = tc->old, .sport = tc->sport, .dport = tc->dport };
		tc->flags = check_continuity(&si, tc->old, &c);
		tc->unseen = c.gap_lost;
		tc->same = same_socket(&si, &t, false);
	}
	return 0;
}
