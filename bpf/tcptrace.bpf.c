// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcptrace-bpf: every TCP state transition, with the socket's owner and the
 * time it spent in the state it leaves, pushed into one BPF ring buffer.
 *
 * Entry points:
 *   on_state         tp_btf/inet_sock_set_state, the primary program.
 *   on_state_backup  the same hook, a second program that records only the
 *                    events the primary is skipped for (see below).
 *   on_state_tp      the classic tracepoint, for kernels without tp_btf.
 *   walk_sockets     iter/tcp: the sockets that exist, for live state counts;
 *                    on its first run it gives them their owner.
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

/* Keeps struct event in the object's BTF so bpf2go can generate its Go twin. */
const struct event *unused_event __attribute__((unused));
const struct sock_snap *unused_snap __attribute__((unused));
const enum event_flags *unused_flags __attribute__((unused));
const enum event_kind *unused_kind __attribute__((unused));
const enum event_rst *unused_rst __attribute__((unused));
const enum event_tw *unused_tw __attribute__((unused));

/* Tracer-assigned ids for the tracepoint fallback: bit 52 set, so they
 * stay exact in any JSON reader that uses doubles (below 2^53) and clear
 * of the kernel's cookies, a counter from 1 that never gets near 2^52. */
#define SYNTH_COOKIE_BASE (1ULL << 52)
__u64 next_synth_cookie = 0;

/*
 * events: the transition records (struct event), read by the Go loader.
 * Size set from Go (--ring-size).
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/*
 * sock_infos: per-socket owner and state-entry time (tp_btf path).
 * Key: the socket. Inserted at the first transition seen for a socket, or
 * by walk_sockets at start. Deleted by the kernel when the socket is freed,
 * so nothing leaks and there is no capacity to run out of. BPF_F_CLONE: an
 * accepted child is cloned from its listener and inherits the listener's
 * entry; the cookie in the entry tells the two apart.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_info);
} sock_infos SEC(".maps");

/*
 * health: per-CPU health counters and the primary's busy flag (key 0).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} health SEC(".maps");

/*
 * seed_inodes: socket inode -> owner, filled by user space from /proc
 * before walk_sockets first runs, then emptied. Size set from Go.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct sock_info);
} seed_inodes SEC(".maps");

/*
 * tp_socks: the tracepoint fallback's stand-in for sock_infos (classic
 * tracepoints may not use socket storage). Key: socket address. Inserted
 * at the first transition seen, deleted when the socket reaches CLOSE.
 * Size set from Go; 1 entry when the fallback is not in use.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct sock_info);
} tp_socks SEC(".maps");

/*
 * hist_socks: the per-socket state of the histogram-only mode (--emit
 * histograms, no --pid), instead of sock_infos: dwell times need only
 * when each socket entered its state, not its owner, so no socket
 * storage is created, cloned at accept and freed per socket (that was
 * most of the kernel-side cost). Key: socket address. Value: entry time
 * and SI_* flags. Inserted at a socket's first transition, updated at
 * each, deleted at ->CLOSE; a birth (CLOSE->..., LISTEN->SYN_RECV)
 * overwrites what a socket at the same address left if its CLOSE was
 * lost. LRU and preallocated: no allocation on the hot path, and an
 * entry whose CLOSE was never seen ages out; an entry aged out early
 * only makes one dwell unknown (counted in storage_fail). Size set from
 * Go (--max-conns); 1 entry in the other modes.
 */
struct hist_sock {
	__u64 ts_ns;
	__u32 flags; /* SI_* */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct hist_sock);
} hist_socks SEC(".maps");

/*
 * tp_closed: the tracepoint fallback's memory of sockets that just reached
 * CLOSE (their tp_socks entry is gone), so that a reset the kernel sends
 * right after the CLOSE can name the connection. Key: socket address;
 * value: its cookie. Inserted at ->CLOSE, deleted when the reset is seen;
 * LRU, so the rest age out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u64);
} tp_closed SEC(".maps");

/*
 * dwell_hists: per-CPU dwell-time histograms, key = the state left. Filled
 * only in aggregate mode; read and summed over CPUs by user space.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_STATES);
	__type(key, __u32);
	__type(value, struct state_hist);
} dwell_hists SEC(".maps");

/*
 * synack_first: when a handshake's first SYN-ACK was sent (tcp_clock_us,
 * CLOCK_MONOTONIC in µs), for handshakes whose SYN-ACK was retransmitted.
 * Key: the 4-tuple. Inserted at the first tcp_retransmit_synack, deleted
 * at the child's SYN_RECV->ESTABLISHED; LRU, so handshakes that never
 * complete age out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct hs_key);
	__type(value, __u64);
} synack_first SEC(".maps");

struct listen_key {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

/*
 * tp_listeners: the tracepoint fallback's way to give an accepted child its
 * listener's owner (no clone inheritance without socket storage). Key:
 * netns and local port. Inserted at ->LISTEN, deleted at LISTEN->CLOSE.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct listen_key);
	__type(value, struct sock_info);
} tp_listeners SEC(".maps");

static __always_inline bool port_selected(__u32 port)
{
	/* Older verifiers (6.1) lose a value's range after a byte swap: keep
	 * an explicit mask the compiler cannot prove redundant. */
	__u32 idx = port >> 3;
	asm volatile("" : "+r"(idx));
	return port_bitmap[idx & 0x1fff] & (1 << (port & 7));
}

static __always_inline bool ports_match(__u16 sport, __u16 dport)
{
	return !filter_ports || port_selected(sport) || port_selected(dport);
}

static __always_inline bool v4mapped(const struct in6_addr *a)
{
	return a->in6_u.u6_addr32[0] == 0 && a->in6_u.u6_addr32[1] == 0 &&
	       a->in6_u.u6_addr32[2] == bpf_htonl(0x0000ffff);
}

/* Runs only with -4/-6, so reading both v6 addresses costs nothing otherwise.
 * A listener is always kept (see quiet_listener). */
static __always_inline bool family_match(__u16 family, struct sock *sk)
{
	if (!filter_family)
		return true;
	bool v4 = family == AF_INET;
	if (family == AF_INET6) {
		struct in6_addr s6, d6;
		BPF_CORE_READ_INTO(&s6, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&d6, sk, __sk_common.skc_v6_daddr);
		v4 = v4mapped(&s6) || v4mapped(&d6);
	}
	return filter_family == 4 ? v4 : !v4;
}

/*
 * --cgroup: the socket's cgroup (v2) is the one of the task that created
 * it, recorded by the kernel in sk_cgrp_data and inherited by accepted
 * children. It matches when the filter's cgroup is it or one of its
 * ancestors. Runs only with --cgroup.
 */
static __always_inline bool cgroup_match(struct sock *sk)
{
	if (!filter_cgroup)
		return true;
	struct cgroup *cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	if (!cg || BPF_CORE_READ(cg, level) < (int)filter_cgroup_level)
		return false;
	if (!bpf_core_field_exists(cg->ancestors)) /* before 6.1: only the cgroup itself */
		return BPF_CORE_READ(cg, kn, id) == filter_cgroup;
	struct cgroup *anc = 0;
	bpf_probe_read_kernel(&anc, sizeof(anc), &cg->ancestors[filter_cgroup_level & 0xff]);
	return anc && BPF_CORE_READ(anc, kn, id) == filter_cgroup;
}

/*
 * A listener that -4/-6 filters out may still accept sockets that pass:
 * a dual-stack [::] listener accepts IPv4 clients as v4-mapped sockets.
 * Its own transitions are not sent, but its entry (the owner its children
 * inherit) is kept, as for any listener.
 */
static __always_inline bool is_listener_transition(int old, int new)
{
	return new == TCP_LISTEN || old == TCP_LISTEN;
}

/*
 * Transitions the kernel makes in the syscall of the socket's owner:
 * connect(), listen(), close()/shutdown(). Only there is `current` the
 * owner; elsewhere (softirq) it is whatever task the CPU interrupted.
 */
static __always_inline bool in_owner_syscall(int old, int new)
{
	return (old == TCP_CLOSE && (new == TCP_SYN_SENT || new == TCP_LISTEN)) ||
	       (old == TCP_ESTABLISHED && new == TCP_FIN_WAIT1) ||
	       (old == TCP_CLOSE_WAIT && new == TCP_LAST_ACK);
}

/* A socket's birth: a new socket leaves CLOSE, an accepted child LISTEN. */
static __always_inline bool is_birth(int old, int new)
{
	return old == TCP_CLOSE || (old == TCP_LISTEN && new == TCP_SYN_RECV);
}

/*
 * Advance a socket's info to this transition: dwell in the old state (so
 * far, for a repeated set), new entry time, owner if this is the owner's
 * own syscall. Returns EV_*.
 */
static __always_inline __u8 advance(struct sock_info *si, int old, int new,
				    __u64 now, __u64 *dwell)
{
	__u8 flags = 0;

	if (si->ts_ns) {
		*dwell = now - si->ts_ns;
		flags |= EV_DWELL_KNOWN;
	}
	/* A repeated set (FIN_WAIT1 -> FIN_WAIT1) does not start a new stay:
	 * the next transition's dwell covers the whole time in the state. */
	if (old != new)
		si->ts_ns = now;
	if (!si->pid && in_owner_syscall(old, new)) {
		si->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(si->comm, sizeof(si->comm));
	}
	if (si->pid)
		flags |= EV_OWNER_KNOWN;
	return flags;
}

/* Bucket of value v, as internal/histogram.Index. */
static __always_inline __u32 hist_index(__u64 v)
{
	if (v < HIST_EXACT_BELOW)
		return v;
	__u32 e = 0;
	__u64 x = v;
	if (x >> 32) { x >>= 32; e += 32; }
	if (x >> 16) { x >>= 16; e += 16; }
	if (x >> 8) { x >>= 8; e += 8; }
	if (x >> 4) { x >>= 4; e += 4; }
	if (x >> 2) { x >>= 2; e += 2; }
	if (x >> 1) { e += 1; }
	__u32 shift = e - HIST_SUB_BITS; /* >= 1 */
	return HIST_EXACT_BELOW + (shift - 1) * (1 << HIST_SUB_BITS) +
	       (__u32)(v >> shift) - (1 << HIST_SUB_BITS);
}

/*
 * Aggregate mode: count the completed stay in the kernel instead of sending
 * a record. The same rules as user space (internal/pipeline's stay rule,
 * pinned by TestKernelAggregationMatchesUserSpace): a known dwell; not
 * CLOSE (where sockets start and end); not a repeated set; not an accepted
 * child's birth (LISTEN->SYN_RECV: the child never was in LISTEN); an
 * accepted child's SYN_RECV is its handshake time.
 */
static __always_inline void aggregate(struct counters *c, int old, int new,
				      __u64 dwell, __u8 flags, __u64 handshake)
{
	c->aggregated++;
	if (flags & EV_HANDSHAKE) {
		/* SYN_RECV's histogram holds the server's real handshake time,
		 * not the full socket's microseconds in SYN_RECV. */
		if (!handshake)
			return;
		dwell = handshake;
		flags |= EV_DWELL_KNOWN;
	}
	if (!(flags & EV_DWELL_KNOWN) || old == TCP_CLOSE || old == new ||
	    (old == TCP_LISTEN && new == TCP_SYN_RECV))
		return;
	__u32 key = old;
	struct state_hist *h = bpf_map_lookup_elem(&dwell_hists, &key);
	if (!h)
		return;
	/* hist_index is < HIST_BUCKETS; the mask is for the verifier. */
	__u32 i = hist_index(dwell) & (HIST_SLOTS - 1);
	if (!h->count || dwell < h->min)
		h->min = dwell;
	if (dwell > h->max)
		h->max = dwell;
	h->count++;
	h->sum += dwell;
	h->buckets[i]++;
}

/*
 * No wakeup per record: the reader polls on a timer, and is woken early
 * only when wakeup_bytes are waiting. Reading the ring's fill is a helper
 * call, so each CPU looks at it every 8th record it submits (at most 7
 * records per CPU past the mark: nothing next to a mark of an eighth of
 * the ring).
 */
static __always_inline __u64 submit_flags(struct counters *c)
{
	if (!wakeup_bytes)
		return 0;
	if (++c->submitted & 7)
		return BPF_RB_NO_WAKEUP;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void fill_owner(struct event *e, const struct sock_info *si)
{
	if (si) {
		e->pid = si->pid;
		__builtin_memcpy(e->comm, si->comm, sizeof(e->comm));
	} else {
		e->pid = 0;
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	}
}


/*
 * A field of a kernel object: a plain load where the verifier knows the
 * pointer's type (tp_btf, after bpf_skc_to_tcp_sock), a CO-RE probe read
 * where it does not (the classic tracepoint's addresses). `typed` is a
 * constant at every call site, so only one of the two is compiled; the
 * plain load saves a helper call per field on the hot path.
 */
#define KREAD(typed, p, field) ((typed) ? (p)->field : BPF_CORE_READ(p, field))

/*
 * The server-side handshake of an accepted socket, read at its
 * SYN_RECV->ESTABLISHED: from the first SYN-ACK sent to the final ACK.
 * Without SYN-ACK retransmits that is the kernel's first RTT sample
 * (srtt_us, taken from the request's snt_synack); with them, the time
 * since the first SYN-ACK that on_retransmit_synack kept in synack_first.
 * Returns 0 when unknown. Addresses and ports are the child's: local =
 * server.
 */
static __always_inline __u64 handshake_ns(struct tcp_sock *tp, bool typed, __u16 family,
					  __u32 netns, __u16 sport, __u16 dport)
{
	struct sock *sk = (struct sock *)tp;
	if (!tp)
		return 0;
	if (!KREAD(typed, tp, total_retrans))
		return (__u64)(KREAD(typed, tp, srtt_us) >> 3) * 1000;
	struct hs_key k = {};
	k.netns = netns;
	k.sport = sport;
	k.dport = dport;
	if (family == AF_INET) {
		*(__u32 *)k.saddr = KREAD(typed, sk, __sk_common.skc_rcv_saddr);
		*(__u32 *)k.daddr = KREAD(typed, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&k.saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&k.daddr, sk, __sk_common.skc_v6_daddr);
	}
	__u64 *first = bpf_map_lookup_elem(&synack_first, &k);
	if (!first)
		return 0;
	__u64 now_us = bpf_ktime_get_ns() / 1000;
	__u64 ns = now_us > *first ? (now_us - *first) * 1000 : 0;
	bpf_map_delete_elem(&synack_first, &k);
	return ns;
}

/*
 * Accumulated trouble on every record; at ->CLOSE also what tcplife users
 * want, the error, and whether a timewait socket lives on: the full socket
 * of an active closer goes FIN_WAIT2 (or CLOSING) -> CLOSE while
 * tcp_time_wait() leaves a timewait socket behind, which no tracepoint
 * reports. It is TIME_WAIT when the peer's FIN was received and no error
 * ended the socket; an orphan closed in FIN_WAIT2 before the peer's FIN
 * leaves one in its FIN_WAIT2 substate instead. The peer's FIN is
 * SOCK_DONE (set by tcp_fin()), not RCV_SHUTDOWN: close() sets
 * sk_shutdown to SHUTDOWN_MASK whether the peer's FIN came or not.
 * tp is the socket as a tcp_sock; typed: see KREAD.
 */
static __always_inline void fill_close_info(struct event *e, struct tcp_sock *tp, bool typed,
					    const struct sock_info *si, int old,
					    int new, __u8 *flags)
{
	e->retrans = si ? si->retrans : 0;
	e->syn_retrans = si ? si->syn_retrans : 0;
	e->rst = si ? si->rst : 0;
	e->bytes_acked = 0;
	e->bytes_received = 0;
	e->srtt_us = 0;
	e->total_retrans = 0;
	e->err = 0;
	e->tw = TW_NONE;
	e->kind = KIND_TRANSITION;
	e->handshake_us = 0;
	e->_pad2 = 0;
	bool closing = new == TCP_CLOSE;
	if (!tp || (!closing && !(old == TCP_SYN_RECV && new == TCP_ESTABLISHED)))
		return;
	struct sock *sk = (struct sock *)tp;
	e->srtt_us = KREAD(typed, tp, srtt_us) >> 3;
	e->total_retrans = KREAD(typed, tp, total_retrans);
	if (!closing)
		return;
	*flags |= EV_CLOSE_INFO;
	e->bytes_acked = KREAD(typed, tp, bytes_acked);
	e->bytes_received = KREAD(typed, tp, bytes_received);
	int err = KREAD(typed, sk, sk_err);
	e->err = err;
	if (!err && (old == TCP_FIN_WAIT2 || old == TCP_CLOSING)) {
		unsigned long skflags = KREAD(typed, sk, __sk_common.skc_flags);
		if (skflags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE)))
			e->tw = TW_TIME_WAIT;
		else if (old == TCP_FIN_WAIT2)
			e->tw = TW_FIN_WAIT2;
	}
}

/* Reserve, fill and submit one record of the tp_btf path. */
static __always_inline void emit_btf(struct counters *c, struct sock *sk, struct tcp_sock *tp,
				     const struct sock_info *si, __u64 ts, __u64 cookie,
				     __u64 dwell, __u16 family, __u16 sport, __u16 dport,
				     __u32 netns, int old, int new, __u8 flags, __u64 hs)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&c->ringbuf_drops, 1);
		return;
	}
	e->ts_ns = ts;
	e->cookie = cookie;
	e->dwell_ns = dwell;
	if (family == AF_INET) {
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		*(__u32 *)e->saddr = sk->__sk_common.skc_rcv_saddr;
		*(__u32 *)e->daddr = sk->__sk_common.skc_daddr;
	} else {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_v6_rcv_saddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_v6_daddr, sizeof(e->daddr));
	}
	e->netns = netns;
	e->sport = sport;
	e->dport = dport;
	e->family = family;
	e->oldstate = old;
	e->newstate = new;
	fill_owner(e, si);
	fill_close_info(e, tp, true, si, old, new, &flags);
	e->handshake_us = hs / 1000;
	e->flags = flags;
	bpf_ringbuf_submit(e, submit_flags(c));
}

/*
 * The entry of an accepted child at its birth (LISTEN->SYN_RECV), cloned
 * from its listener's (BPF_F_CLONE): the owner is the listener's; its time
 * in LISTEN, its counts and its cookie are not the child's. Returns the
 * child's cookie when the record can go out now, 0 when it must wait for
 * the child's next transition: on some kernels (6.1) the child still
 * carries its listener's cookie here and gets its own right after.
 */
static __always_inline __u64 adopt_child(struct sock_info *si, struct sock *sk)
{
	__u64 listener = si->cookie;
	si->cookie = 0;
	si->ts_ns = 0;
	si->retrans = 0;
	si->syn_retrans = 0;
	si->rst = 0;
	si->flags = SI_ACCEPTED;
	si->birth_ts = 0;
	if (aggregate_only || !listener)
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);
	if (cookie == listener)
		return 0;
	si->cookie = cookie;
	return cookie;
}

static __always_inline void handle_btf(struct sock *sk, int old, int new,
				       struct counters *c, __u8 extra)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return;

	__u16 family = sk->__sk_common.skc_family;
	/* The local port as the tracepoint itself reports it, inet_sport. It
	 * equals skc_num (a plain load) while the socket holds its port; when
	 * a closing socket has given its port back, skc_num is already 0 and
	 * only inet_sport, past struct sock, still has it: that read needs the
	 * socket typed as a tcp_sock (a helper call), done only then and for
	 * the transitions that read tcp_sock fields anyway. */
	__u16 sport = sk->__sk_common.skc_num;
	bool handshake_done = old == TCP_SYN_RECV && new == TCP_ESTABLISHED;
	struct tcp_sock *tp = 0;
	if (!sport || new == TCP_CLOSE || handshake_done) {
		tp = bpf_skc_to_tcp_sock(sk);
		if (tp)
			sport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	}
	__u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
	__u32 netns = sk->__sk_common.skc_net.net->ns.inum;
	if (!ports_match(sport, dport) ||
	    (filter_netns && netns != filter_netns) || !cgroup_match(sk)) {
		c->filtered++;
		return;
	}
	bool quiet = !family_match(family, sk);
	if (quiet && !is_listener_transition(old, new)) {
		c->filtered++;
		return;
	}

	__u64 now = bpf_ktime_get_ns();
	__u64 cookie = 0;
	__u64 dwell = 0;
	__u8 flags = extra;
	/* A listener never goes to SYN_RECV: this is an accepted child, just
	 * cloned from its listener, whose entry it inherited (BPF_F_CLONE). */
	bool child_birth = old == TCP_LISTEN && new == TCP_SYN_RECV;
	/* One call finds or creates the entry; a new one is zeroed, and no
	 * socket has cookie 0. */
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (si && child_birth) {
		cookie = adopt_child(si, sk);
		flags |= EV_BIRTH | EV_INHERITED;
	} else if (si && si->cookie) {
		/* A socket's cookie never changes once it has one: the entry's
		 * copy saves the helper call. */
		cookie = si->cookie;
	} else if (!aggregate_only) { /* histograms need no identity */
		cookie = bpf_get_socket_cookie(sk);
		if (si) {
			si->cookie = cookie;
			if (is_birth(old, new))
				flags |= EV_BIRTH;
		}
	}
	if (si) {
		flags |= advance(si, old, new, now, &dwell);
		if (handshake_done && (si->flags & SI_ACCEPTED))
			flags |= EV_HANDSHAKE;
	} else {
		__sync_fetch_and_add(&c->storage_fail, 1);
	}

	if (quiet || (filter_pid && (!si || si->pid != filter_pid))) {
		c->filtered++;
		return;
	}
	__u64 hs = 0;
	if (flags & EV_HANDSHAKE)
		hs = handshake_ns(tp, true, family, netns, sport, dport);
	if (aggregate_only) {
		aggregate(c, old, new, dwell, flags, hs);
		return;
	}
	if (child_birth && si && !cookie) {
		si->birth_ts = now; /* sent with the child's next record */
		return;
	}
	if (si && si->birth_ts) {
		if (!min_dwell_ns) /* a birth has no dwell to pass --min-dwell */
			emit_btf(c, sk, tp, si, si->birth_ts, cookie, 0, family, sport, dport, netns,
				 TCP_LISTEN, TCP_SYN_RECV, EV_BIRTH | EV_INHERITED | (si->pid ? EV_OWNER_KNOWN : 0), 0);
		si->birth_ts = 0;
	}
	if (min_dwell_ns && (!(flags & EV_DWELL_KNOWN) || dwell < min_dwell_ns)) {
		c->filtered++;
		return;
	}
	emit_btf(c, sk, tp, si, now, cookie, dwell, family, sport, dport, netns, old, new, flags, hs);
}

/*
 * The histogram-only mode's path: filters, the socket's entry time from
 * hist_socks, the stay counted in the kernel. No owner, no cookie, no
 * record.
 */
static __always_inline void handle_hist(struct sock *sk, int old, int new, struct counters *c)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return;
	__u16 family = sk->__sk_common.skc_family;
	__u16 sport = sk->__sk_common.skc_num;
	bool handshake_done = old == TCP_SYN_RECV && new == TCP_ESTABLISHED;
	struct tcp_sock *tp = 0;
	if (!sport || handshake_done) {
		tp = bpf_skc_to_tcp_sock(sk);
		if (tp)
			sport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	}
	__u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
	__u32 netns = sk->__sk_common.skc_net.net->ns.inum;
	if (!ports_match(sport, dport) || (filter_netns && netns != filter_netns) ||
	    !family_match(family, sk) || !cgroup_match(sk)) {
		c->filtered++;
		return;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)sk;
	__u64 dwell = 0;
	__u8 flags = 0;
	struct hist_sock *h = is_birth(old, new) ? 0 : bpf_map_lookup_elem(&hist_socks, &key);
	__u32 si_flags = old == TCP_LISTEN && new == TCP_SYN_RECV ? SI_ACCEPTED : 0;
	if (h) {
		si_flags = h->flags;
		if (h->ts_ns) {
			dwell = now - h->ts_ns;
			flags |= EV_DWELL_KNOWN;
		}
	} else if (!is_birth(old, new)) {
		__sync_fetch_and_add(&c->storage_fail, 1); /* older than the tracer, or aged out */
	}
	if (new == TCP_CLOSE) {
		if (h)
			bpf_map_delete_elem(&hist_socks, &key);
	} else if (old != new) { /* a repeated set does not start a new stay */
		if (h) {
			h->ts_ns = now;
		} else {
			struct hist_sock fresh = { .ts_ns = now, .flags = si_flags };
			bpf_map_update_elem(&hist_socks, &key, &fresh, BPF_ANY);
		}
	}
	__u64 hs = 0;
	if (handshake_done && (si_flags & SI_ACCEPTED)) {
		flags |= EV_HANDSHAKE;
		hs = handshake_ns(tp, true, family, netns, sport, dport);
	}
	aggregate(c, old, new, dwell, flags, hs);
}

/* The histogram-only mode needs no owners (without --pid). */
#define HIST_ONLY (aggregate_only && !filter_pid)

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c)
		return 0;
	c->busy = 1;
	if (HIST_ONLY)
		handle_hist(sk, oldstate, newstate, c);
	else
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
	if (HIST_ONLY)
		handle_hist(sk, oldstate, newstate, c);
	else
		handle_btf(sk, oldstate, newstate, c, EV_RESCUED);
	return 0;
}

/*
 * Remember when a handshake's first SYN-ACK left, at its first
 * retransmission: the request socket keeps the time (snt_synack), the
 * child socket will not.
 */
static __always_inline void remember_synack(__u32 netns, const struct request_sock *req)
{
	struct hs_key k = {};
	k.netns = netns;
	k.sport = BPF_CORE_READ(req, __req_common.skc_num);
	k.dport = bpf_ntohs(BPF_CORE_READ(req, __req_common.skc_dport));
	if (BPF_CORE_READ(req, __req_common.skc_family) == AF_INET) {
		*(__u32 *)k.saddr = BPF_CORE_READ(req, __req_common.skc_rcv_saddr);
		*(__u32 *)k.daddr = BPF_CORE_READ(req, __req_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&k.saddr, req, __req_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&k.daddr, req, __req_common.skc_v6_daddr);
	}
	__u64 first = BPF_CORE_READ((struct tcp_request_sock *)req, snt_synack);
	if (first)
		bpf_map_update_elem(&synack_first, &k, &first, BPF_NOEXIST);
}

/* The counting shared by the tp_btf programs and their classic fallbacks.
 * err: the tracepoint's result of the retransmission (kernels from 6.11
 * report it; 0 before): a retransmission the queue below TCP refused
 * (-EBUSY, ...) sent nothing and is not counted, as the kernel's own
 * total_retrans does not count it. */
static __always_inline void count_retransmit(struct sock_info *si, int state, int err)
{
	if (!si || err)
		return;
	if (state == TCP_SYN_SENT) {
		if (si->syn_retrans < 0xff)
			si->syn_retrans++;
	} else if (si->retrans < 0xffff) {
		si->retrans++;
	}
}

/*
 * Trouble on the way: retransmits and resets, counted in the socket's
 * entry (never created here: a socket we have no entry for was born before
 * the tracer or filtered). Only full sockets have storage.
 */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	int err = 0;
	/* The err argument came with the record field of the same name
	 * (6.11); before it, reading a third argument would not load. */
	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err))
		err = (int)ctx[2];
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, (struct sock *)sk, 0, 0);
	count_retransmit(si, sk->__sk_common.skc_state, err);
	return 0;
}

/*
 * --stuck SYN_RECV for half-open handshakes: a SYN-ACK retransmitted for a
 * request older than the limit counts as a sign of a pile-up; user space
 * then walks the sockets to see which listeners hold such requests. Cheap:
 * SYN-ACK retransmits are rare unless there is trouble.
 */
static __always_inline void note_late_synack(const struct request_sock *req)
{
	if (!syn_recv_stuck_ns)
		return;
	__u64 first_us = BPF_CORE_READ((struct tcp_request_sock *)req, snt_synack);
	__u64 now = bpf_ktime_get_ns();
	if (!first_us || now < first_us * 1000 || now - first_us * 1000 < syn_recv_stuck_ns)
		return;
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (c)
		__sync_fetch_and_add(&c->synack_late, 1);
}

/* A SYN-ACK retransmitted by a listener: counted on the listener. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(on_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, (struct sock *)sk, 0, 0);
	if (si && si->retrans < 0xffff)
		si->retrans++;

	remember_synack(sk->__sk_common.skc_net.net->ns.inum, req);
	note_late_synack(req);
	return 0;
}

/*
 * An abortive close (SO_LINGER 0, close() with unread data) sets the state
 * to CLOSE first and sends the reset right after: the ->CLOSE record has
 * gone out without it. This record tells user space, which holds a closed
 * connection back briefly for it. Rare, so a whole record is fine.
 */
static __always_inline void emit_reset_after(__u64 cookie, __u8 rst, __u16 family, __u32 netns)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c)
		return;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&c->ringbuf_drops, 1);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = cookie;
	e->netns = netns;
	e->family = family;
	e->oldstate = TCP_CLOSE;
	e->newstate = TCP_CLOSE;
	e->rst = rst;
	e->kind = KIND_RESET_AFTER;
	bpf_ringbuf_submit(e, submit_flags(c));
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_send_reset, const struct sock *sk)
{
	if (!sk)
		return 0; /* a reset for a segment that matched no socket */
	__u8 state = sk->__sk_common.skc_state;
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return 0; /* mini sockets have no storage */
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, (struct sock *)sk, 0, 0);
	if (!si)
		return 0;
	si->rst |= RST_SENT;
	if (state == TCP_CLOSE && si->cookie && !aggregate_only &&
	    (!filter_pid || si->pid == filter_pid))
		emit_reset_after(si->cookie, si->rst, sk->__sk_common.skc_family,
				 sk->__sk_common.skc_net.net->ns.inum);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk)
{
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, 0);
	if (si)
		si->rst |= RST_RECEIVED;
	return 0;
}

/*
 * Classic tracepoint fallback. Same record; owner and entry time live in
 * tp_socks keyed by socket address, and the cookie is the kernel's if the
 * socket already had one, else a tracer-assigned id (EV_COOKIE_SYNTH).
 */
SEC("tracepoint/sock/inet_sock_set_state")
int on_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c)
		return 0;
	if (ctx->protocol != IPPROTO_TCP)
		return 0;

	int old = ctx->oldstate, new = ctx->newstate;
	__u16 family = ctx->family, sport = ctx->sport, dport = ctx->dport;
	struct sock *sk = (struct sock *)ctx->skaddr;
	__u32 netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (!ports_match(sport, dport) ||
	    (filter_netns && netns != filter_netns) || !cgroup_match(sk)) {
		c->filtered++;
		return 0;
	}
	bool quiet = !family_match(family, sk);
	if (quiet && !is_listener_transition(old, new)) {
		c->filtered++;
		return 0;
	}

	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)sk;
	__u64 dwell = 0;
	__u8 flags = 0;
	/* Keyed by address, an entry outlives its socket when the CLOSE was
	 * lost (ring full, recursion): a birth always starts a fresh entry,
	 * so a new socket at a reused address never takes over the old one's
	 * cookie, owner or entry time. */
	struct sock_info *si = is_birth(old, new) ? 0 : bpf_map_lookup_elem(&tp_socks, &key);
	if (!si) {
		struct sock_info fresh = {};
		fresh.cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		if (!fresh.cookie)
			fresh.cookie = SYNTH_COOKIE_BASE | __sync_fetch_and_add(&next_synth_cookie, 1);
		if (is_birth(old, new))
			flags |= EV_BIRTH;
		if (old == TCP_LISTEN && new == TCP_SYN_RECV) {
			fresh.flags = SI_ACCEPTED;
			struct listen_key lk = { .netns = netns, .port = sport };
			struct sock_info *l = bpf_map_lookup_elem(&tp_listeners, &lk);
			if (l) {
				fresh.pid = l->pid;
				__builtin_memcpy(fresh.comm, l->comm, sizeof(fresh.comm));
				flags |= EV_INHERITED;
			}
		}
		bpf_map_update_elem(&tp_socks, &key, &fresh, BPF_ANY);
		si = bpf_map_lookup_elem(&tp_socks, &key);
	}
	struct sock_info owner = {};
	if (si) {
		flags |= advance(si, old, new, now, &dwell);
		owner = *si;
		if (old == TCP_SYN_RECV && new == TCP_ESTABLISHED && (si->flags & SI_ACCEPTED))
			flags |= EV_HANDSHAKE;
	} else {
		__sync_fetch_and_add(&c->storage_fail, 1);
	}
	if (owner.cookie & SYNTH_COOKIE_BASE)
		flags |= EV_COOKIE_SYNTH;

	if (new == TCP_LISTEN && si) {
		struct listen_key lk = { .netns = netns, .port = sport };
		bpf_map_update_elem(&tp_listeners, &lk, &owner, BPF_ANY);
	}
	if (new == TCP_CLOSE) {
		if (old == TCP_LISTEN) {
			struct listen_key lk = { .netns = netns, .port = sport };
			bpf_map_delete_elem(&tp_listeners, &lk);
		}
		bpf_map_delete_elem(&tp_socks, &key);
		if (si && !aggregate_only) /* for a reset sent right after */
			bpf_map_update_elem(&tp_closed, &key, &owner.cookie, BPF_ANY);
	}

	if (quiet || (filter_pid && owner.pid != filter_pid)) {
		c->filtered++;
		return 0;
	}
	__u64 hs = 0;
	if (flags & EV_HANDSHAKE)
		hs = handshake_ns((struct tcp_sock *)sk, false, family, netns, sport, dport);
	if (aggregate_only) {
		aggregate(c, old, new, dwell, flags, hs);
		return 0;
	}
	if (min_dwell_ns && (!(flags & EV_DWELL_KNOWN) || dwell < min_dwell_ns)) {
		c->filtered++;
		return 0;
	}

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&c->ringbuf_drops, 1);
		return 0;
	}
	e->ts_ns = now;
	e->cookie = owner.cookie;
	e->dwell_ns = dwell;
	if (family == AF_INET) {
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		__builtin_memcpy(e->saddr, ctx->saddr, 4);
		__builtin_memcpy(e->daddr, ctx->daddr, 4);
	} else {
		/* The same fields the tracepoint copied into ctx->saddr_v6. */
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	}
	e->netns = netns;
	e->sport = sport;
	e->dport = dport;
	e->family = family;
	e->oldstate = old;
	e->newstate = new;
	fill_owner(e, si ? &owner : 0);
	fill_close_info(e, (struct tcp_sock *)sk, false, si ? &owner : 0, old, new, &flags);
	e->handshake_us = hs / 1000;
	e->flags = flags;
	bpf_ringbuf_submit(e, submit_flags(c));
	return 0;
}

/*
 * The same four for the tracepoint fallback, on tp_socks (keyed by socket
 * address) instead of socket storage.
 */
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

static __always_inline struct sock_info *tp_info(const void *skaddr)
{
	__u64 key = (__u64)skaddr;
	return bpf_map_lookup_elem(&tp_socks, &key);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int on_retransmit_tp(struct tcp_skb_tp_ctx *ctx)
{
	int err = 0;
	struct trace_event_raw_tcp_retransmit_skb *rec = (void *)ctx;
	if (bpf_core_field_exists(rec->err)) /* 6.11 on; see on_retransmit */
		err = rec->err;
	count_retransmit(tp_info(ctx->skaddr), ctx->state, err);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int on_retransmit_synack_tp(struct tcp_synack_tp_ctx *ctx)
{
	struct sock_info *si = tp_info(ctx->skaddr);
	if (si && si->retrans < 0xffff)
		si->retrans++;
	struct sock *sk = (struct sock *)ctx->skaddr;
	remember_synack(BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum), ctx->req);
	note_late_synack(ctx->req);
	return 0;
}

SEC("tracepoint/tcp/tcp_send_reset")
int on_send_reset_tp(struct tcp_skb_tp_ctx *ctx)
{
	if (!ctx->skaddr || ctx->state == TCP_TIME_WAIT || ctx->state == TCP_NEW_SYN_RECV)
		return 0;
	struct sock_info *si = tp_info(ctx->skaddr);
	if (si) {
		si->rst |= RST_SENT;
		return 0;
	}
	if (ctx->state != TCP_CLOSE)
		return 0;
	/* Right after an abortive ->CLOSE: see emit_reset_after. The
	 * tp_socks entry is gone; tp_closed still names the socket. */
	__u64 key = (__u64)ctx->skaddr;
	__u64 *cookie = bpf_map_lookup_elem(&tp_closed, &key);
	if (!cookie)
		return 0;
	struct sock *sk = (struct sock *)ctx->skaddr;
	emit_reset_after(*cookie, RST_SENT, BPF_CORE_READ(sk, __sk_common.skc_family),
			 BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum));
	bpf_map_delete_elem(&tp_closed, &key);
	return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset")
int on_receive_reset_tp(struct tcp_sk_tp_ctx *ctx)
{
	struct sock_info *si = tp_info(ctx->skaddr);
	if (si)
		si->rst |= RST_RECEIVED;
	return 0;
}

/* 1 on the first walk: create storage and seed owners; later walks only read. */
volatile __u8 iter_seed = 1;

/*
 * Walk the TCP sockets of one network namespace (the iterator walks the
 * namespace of the thread that opens it) and write one struct sock_snap
 * per socket that passes the filters: the live state counts, and the
 * sockets older than the tracer. On the first walk, also give every full
 * socket an entry in sock_infos with its owner (from seed_inodes, which
 * user space fills from /proc/PID/fd), so that later transitions, and
 * children accepted from existing listeners, carry the right owner. Entry
 * time stays unknown (0).
 */
SEC("iter/tcp")
int walk_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct sock_snap s = {};
	s.family = skc->skc_family;
	s.state = skc->skc_state;
	if (s.state == TCP_TIME_WAIT) {
		/* As netstat and ss show it: a timewait socket of an orphan
		 * closed before the peer's FIN is in its FIN_WAIT2 substate. */
		struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw)
			s.state = tw->tw_sk.tw_substate;
	}
	s.netns = skc->skc_net.net->ns.inum;
	s.sport = skc->skc_num;
	s.dport = bpf_ntohs(skc->skc_dport);
	if (!ports_match(s.sport, s.dport) || (filter_netns && s.netns != filter_netns))
		return 0;
	if (s.family == AF_INET) {
		*(__u32 *)s.saddr = skc->skc_rcv_saddr;
		*(__u32 *)s.daddr = skc->skc_daddr;
	} else {
		BPF_CORE_READ_INTO(&s.saddr, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&s.daddr, skc, skc_v6_daddr);
	}
	/* A listener of the other family is not shown but still seeded: a
	 * dual-stack [::] listener's children may pass -4 (quiet_listener). */
	bool quiet = false;
	if (filter_family) {
		bool v4 = s.family == AF_INET ||
			  v4mapped((struct in6_addr *)s.saddr) || v4mapped((struct in6_addr *)s.daddr);
		if ((filter_family == 4) != v4) {
			if (s.state != TCP_LISTEN)
				return 0;
			quiet = true;
		}
	}
	if (s.state == TCP_NEW_SYN_RECV) {
		/* A half-open handshake: when its first SYN-ACK left. (Not
		 * bpf_skc_to_tcp_request_sock: it checks sk_prot, which a
		 * request socket does not set.) */
		s.synack_ns = BPF_CORE_READ((struct tcp_request_sock *)skc, snt_synack) * 1000;
	}

	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (filter_cgroup && (!tp || !cgroup_match((struct sock *)tp)))
		return 0; /* mini sockets carry no cgroup */
	if (tp) { /* a full socket: TIME_WAIT and request sockets have no storage */
		struct sock *sk = (struct sock *)tp;
		s.cookie = bpf_get_socket_cookie(sk);
		s.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
		/* The histogram-only mode keeps no socket storage: it would be
		 * cloned into every accepted child. Owners of its listener
		 * records come from /proc by inode in user space. */
		struct sock_info *si = HIST_ONLY ? 0 :
			bpf_sk_storage_get(&sock_infos, sk, 0, iter_seed ? BPF_SK_STORAGE_GET_F_CREATE : 0);
		if (si) {
			if (!si->cookie)
				si->cookie = s.cookie;
			if (!si->pid && iter_seed) {
				__u64 ino = s.ino;
				struct sock_info *o = bpf_map_lookup_elem(&seed_inodes, &ino);
				if (o) {
					si->pid = o->pid;
					__builtin_memcpy(si->comm, o->comm, sizeof(si->comm));
				}
			}
			if (si->pid) {
				s.pid = si->pid;
				s.owner_known = 1;
				__builtin_memcpy(s.comm, si->comm, sizeof(s.comm));
			}
			s.retrans = si->retrans;
		}
		if (s.state == TCP_LISTEN) {
			s.ack_backlog = sk->sk_ack_backlog;
			s.max_ack_backlog = sk->sk_max_ack_backlog;
		}
	}
	if (quiet || (filter_pid && s.pid != filter_pid))
		return 0;
	bpf_seq_write(ctx->meta->seq, &s, sizeof(s));
	return 0;
}

/*
 * Test hook, never attached: computes hist_index for a batch of values so
 * a Go test can check it against internal/histogram.Index
 * (BPF_PROG_TEST_RUN on a syscall program).
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
 * Test hook, never attached: applies count_retransmit to a run of
 * (state, err) retransmissions, so a Go test can check that only
 * retransmissions the kernel sent are counted (err 0), as SYN retransmits
 * in SYN_SENT and as retransmits elsewhere.
 */
struct retrans_test_args {
	__s32 state[8];
	__s32 err[8];
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
			count_retransmit(&si, args->state[i], args->err[i]);
	args->retrans = si.retrans;
	args->syn_retrans = si.syn_retrans;
	return 0;
}
