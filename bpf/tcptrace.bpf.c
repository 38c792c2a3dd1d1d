// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcptrace-bpf: every TCP state transition, with the socket's owner and the
 * time it spent in the state it leaves, pushed into one BPF ring buffer.
 * This file holds the entry points; the logic is in the headers beside it:
 *
 *   maps.h     every map, with its key, value, insert and delete
 *   filters.h  the user's filters, one function
 *   sockets.h  each socket's entry: owner, cookie, entry time
 *   record.h   the one record-fill path (tp_btf and the fallback)
 *   hist.h     aggregate mode: histograms in the kernel
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

#define AF_INET 2
#define AF_INET6 10

/* Filters and tuning, set from Go before load (frozen .rodata). */
const volatile __u8 filter_family = 0;   /* 0: any, 4: IPv4 (and v4-mapped), 6: IPv6 */
const volatile __u8 filter_ports = 0;    /* 1: only sockets with a port in port_bitmap */
const volatile __u32 filter_netns = 0;   /* 0: any, else this netns inode */
const volatile __u32 filter_pid = 0;     /* 0: any, else this owner tgid */
const volatile __u64 wakeup_bytes = 0;   /* 0: kernel default wakeups; else wake the
					  * reader only once this many bytes wait */
const volatile __u8 port_bitmap[8192] = {}; /* bit p set: port p selected */
const volatile __u8 aggregate_only = 0;  /* 1: fill dwell_hists, send no records */
const volatile __u64 filter_cgroup = 0;  /* 0: any, else this cgroup v2 id or below it */
const volatile __u32 filter_cgroup_level = 0; /* that cgroup's depth in the hierarchy */
const volatile __u64 min_dwell_ns = 0;   /* send only transitions out of a state held this long */
const volatile __u64 syn_recv_stuck_ns = 0; /* --stuck SYN_RECV limit; 0: not watched */
const volatile __u32 hist_slot_mask = 0; /* hist_slots' size - 1 (a power of two) */

/* Keeps these types in the object's BTF so bpf2go can generate Go twins. */
const struct event *unused_event __attribute__((unused));
const struct sock_snap *unused_snap __attribute__((unused));
const struct walk_group_key *unused_group_key __attribute__((unused));
const struct walk_group *unused_group __attribute__((unused));
const enum event_flags *unused_flags __attribute__((unused));
const enum event_kind *unused_kind __attribute__((unused));
const enum event_rst *unused_rst __attribute__((unused));
const enum event_tw *unused_tw __attribute__((unused));
const enum untimed_reason *unused_untimed __attribute__((unused));

/* Tracer-assigned ids for the tracepoint fallback: bit 52 set, so they
 * stay exact in any JSON reader that uses doubles (below 2^53) and clear
 * of the kernel's cookies, a counter from 1 that never gets near 2^52. */
#define SYNTH_COOKIE_BASE (1ULL << 52)
__u64 next_synth_cookie = 0;

/* The histogram-only mode needs no owners (without --pid). */
#define HIST_ONLY (aggregate_only && !filter_pid)

#include "maps.h"
#include "filters.h"
#include "sockets.h"
#include "record.h"
#include "hist.h"
#include "trouble.h"
#include "walker.h"

/*
 * After the socket's entry is advanced: --pid, the histogram of aggregate
 * mode, --min-dwell, and the record (with a held birth record first).
 */
static __always_inline void deliver(struct counters *c, const struct transition *t,
				 struct tcp_sock *tp, bool typed, struct sock_info *si,
				 __u64 dwell, __u8 flags)
{
	__u64 hs = flags & EV_HANDSHAKE ? handshake_ns(t, tp, typed) : 0;
	if (aggregate_only) {
		aggregate(c, t->old, t->new, dwell, flags, hs);
		return;
	}
	if (!si) {
		emit(c, t, tp, typed, si, t->now, 0, dwell, t->old, t->new, flags, hs);
		return;
	}
	if (!si->cookie && si->birth_ts)
		return; /* an accepted child without its own cookie yet (6.1) */
	if (si->birth_ts) {
		if (!min_dwell_ns) /* a birth has no dwell to pass --min-dwell */
			emit(c, t, tp, typed, si, si->birth_ts, si->cookie, 0, TCP_LISTEN,
			     TCP_SYN_RECV, EV_BIRTH | EV_INHERITED | (si->pid ? EV_OWNER_KNOWN : 0), 0);
		si->birth_ts = 0;
	}
	if (min_dwell_ns && (!(flags & EV_DWELL_KNOWN) || (flags & EV_GAP) || dwell < min_dwell_ns)) {
		c->filtered++;
		return;
	}
	__u8 synth = !typed && (si->cookie & SYNTH_COOKIE_BASE) ? EV_COOKIE_SYNTH : 0;
	emit(c, t, tp, typed, si, t->now, si->cookie, dwell, t->old, t->new, flags | synth, hs);
}

/*
 * One transition, on either path. tp: the socket as a tcp_sock, for the
 * transitions that read its fields (->CLOSE, handshake end), else 0.
 */
static __always_inline void handle_state(struct counters *c, const struct transition *t,
					 struct tcp_sock *tp, bool typed)
{
	bool quiet;
	if (!passes_filters(t, &quiet)) {
		c->filtered++;
		return;
	}
	note_listener(t, typed); /* record.h: listen_socks */
	if (HIST_ONLY) {
		if (quiet)
			c->filtered++;
		else
			handle_hist(t, tp, typed, c);
		return;
	}
	__u64 dwell = 0;
	__u8 flags = 0;
	bool missing = false;
	struct sock_info *si = sock_entry(t, typed, &flags, &missing, c);
	if (missing || !si)
		__sync_fetch_and_add(&c->storage_fail, 1);
	if (missing) /* the transitions since its birth were not seen */
		__sync_fetch_and_add(&c->gap_lost, unseen_since_birth(t->old));
	if (si) {
		/* A child's cookie is settled at its birth (child_entry); one
		 * still 0 after it is taken now (6.1: see adopt_child). */
		if (!si->cookie && !aggregate_only && !(t->old == TCP_LISTEN && t->new == TCP_SYN_RECV))
			si->cookie = sock_cookie(t->sk, typed);
		if (!typed) { /* the fallback's identity (same_socket) */
			if (!si->id_sport)
				si->id_sport = t->sport;
			if (!si->id_dport)
				si->id_dport = t->dport;
		}
		flags |= check_continuity(si, t->old, c);
		flags |= advance(si, t->old, t->new, t->now, &dwell);
	}
	if (quiet || (filter_pid && (!si || si->pid != filter_pid)))
		c->filtered++;
	else
		deliver(c, t, tp, typed, si, dwell, flags);
	settle_entry(t, typed, si);
}

/* The tp_btf path: plain loads from the typed socket. */
static __always_inline void handle_btf(struct sock *sk, int old, int new,
				       struct counters *c)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return;
	struct transition t = { .sk = sk, .old = old, .new = new };
	t.family = sk->__sk_common.skc_family;
	/* The local port as the tracepoint itself reports it, inet_sport. It
	 * equals skc_num (a plain load) while the socket holds its port; when
	 * a closing socket has given its port back, skc_num is already 0 and
	 * only inet_sport, past struct sock, still has it: that read needs the
	 * socket typed as a tcp_sock (a helper call), done only then and for
	 * the transitions that read tcp_sock fields anyway. */
	t.sport = sk->__sk_common.skc_num;
	struct tcp_sock *tp = 0;
	if (!t.sport || new == TCP_CLOSE || (old == TCP_SYN_RECV && new == TCP_ESTABLISHED)) {
		tp = bpf_skc_to_tcp_sock(sk);
		if (tp)
			t.sport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	}
	t.dport = bpf_ntohs(sk->__sk_common.skc_dport);
	/* The histogram-only mode reads it only to filter (and handshake_ns
	 * when a SYN-ACK was retransmitted): a pointer chase saved. */
	if (!HIST_ONLY || filter_netns)
		t.netns = sk->__sk_common.skc_net.net->ns.inum;
	t.now = bpf_ktime_get_ns();
	handle_state(c, &t, tp, true);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c)
		return 0;
	c->busy = 1;
	handle_btf(sk, oldstate, newstate, c);
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
	handle_btf(sk, oldstate, newstate, c);
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
	bool reads_tcp = t.new == TCP_CLOSE || (t.old == TCP_SYN_RECV && t.new == TCP_ESTABLISHED);
	handle_state(c, &t, reads_tcp ? (struct tcp_sock *)t.sk : 0, false);
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
