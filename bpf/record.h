/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one record-fill path, shared by tp_btf and the classic tracepoint
 * fallback (`typed`, see sockets.h): reserve, fill, submit.
 */
#ifndef TCPTRACE_RECORD_H
#define TCPTRACE_RECORD_H

/*
 * Every record submitted is counted (atomically: a nested program may run
 * on this CPU mid-update), so that user space can tell at the end whether
 * every record reached it. No wakeup per record: the reader polls on a
 * timer, and is woken early only when wakeup_bytes are waiting. Reading
 * the ring's fill is a helper call, so each CPU looks at it every 8th
 * record it submits (at most 7 records per CPU past the mark: nothing
 * next to a mark of an eighth of the ring).
 */
static __always_inline __u64 submit_flags(struct counters *c)
{
	__u64 n = __sync_fetch_and_add(&c->submitted, 1) + 1;
	if (!wakeup_bytes)
		return 0;
	if (n & 7)
		return BPF_RB_NO_WAKEUP;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/*
 * listen_socks (maps.h): a listener's address is noted at ->LISTEN (and
 * by the first socket walk), forgotten at LISTEN->CLOSE.
 */
static __always_inline __u32 netns_of(const struct transition *t)
{
	struct sock *sk = t->sk; /* (t->sk inside BPF_CORE_READ would relocate against struct transition) */
	return t->netns ? t->netns : BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline void note_listener(const struct transition *t, bool typed)
{
	if (t->new != TCP_LISTEN && t->old != TCP_LISTEN)
		return;
	if (is_child_birth(t->old, t->new))
		return;
	struct listen_key k;
	listen_key_of(&k, netns_of(t), t->family, t->sport, t->sk, typed, false);
	if (t->new == TCP_LISTEN) {
		struct listen_sock fresh = { .sk = (__u64)t->sk };
		bpf_map_update_elem(&listen_socks, &k, &fresh, BPF_ANY);
		return;
	}
	struct listen_sock *ls = bpf_map_lookup_elem(&listen_socks, &k);
	if (ls && ls->sk == (__u64)t->sk)
		bpf_map_delete_elem(&listen_socks, &k);
}

/* The listener an accepted socket's local end matches (exact address,
 * then any), 0 when none is tracked. */
static __always_inline struct listen_sock *listen_sock_of(const struct transition *t, bool typed)
{
	struct listen_key k;
	__u32 netns = netns_of(t);
	listen_key_of(&k, netns, t->family, t->sport, t->sk, typed, false);
	struct listen_sock *ls = bpf_map_lookup_elem(&listen_socks, &k);
	if (ls)
		return ls;
	listen_key_of(&k, netns, t->family, t->sport, t->sk, typed, true);
	return bpf_map_lookup_elem(&listen_socks, &k);
}

/*
 * Whether an accepted socket, at its SYN_RECV->ESTABLISHED, was made from
 * a SYN cookie: 1 yes, 0 no, -1 cannot tell. Both paths that make a child
 * (tcp_check_req for a request socket, cookie_v4_check / cookie_v6_check
 * for a cookie) put a request on the listener's accept queue, pointing at
 * the child, before the child's final-ACK processing moves it to
 * ESTABLISHED; a cookie's request is built from the ACK with snt_synack
 * 0, while a request socket's first SYN-ACK always set it. So the tail of
 * the listener's accept queue, if it is this child's request, tells. Not
 * the tail (another CPU queued a child meanwhile, or accept() already
 * took it), or no tracked listener: cannot tell.
 */
static __always_inline int syncookie_child(const struct transition *t, bool typed,
					   struct listen_sock **ls)
{
	*ls = listen_sock_of(t, typed);
	if (!*ls)
		return -1;
	struct inet_connection_sock *l = (struct inet_connection_sock *)(*ls)->sk;
	struct request_sock *req = BPF_CORE_READ(l, icsk_accept_queue.rskq_accept_tail);
	struct sock *child = t->sk;
	if (!req || BPF_CORE_READ(req, sk) != child)
		return -1;
	return BPF_CORE_READ((struct tcp_request_sock *)req, snt_synack) == 0;
}

/* handshake_ns of a handshake completed by a SYN cookie: unknown, and
 * marked (struct event.syncookie, UNTIMED_SYNCOOKIE). */
#define HS_SYNCOOKIE ((__u64)-1)

/*
 * The server-side handshake of an accepted socket, read at its
 * SYN_RECV->ESTABLISHED: from the first SYN-ACK sent to the final ACK.
 * Without SYN-ACK retransmits that is the kernel's first RTT sample
 * (srtt_us), which tcp_check_req takes from the request's snt_synack, to
 * the microsecond. A child made from a SYN cookie has no such time: its
 * first sample comes from the final ACK's timestamp echo, in whole
 * milliseconds, and the cookie's SYN-ACK carried a timestamp moved back
 * by up to 63 ms to encode options; without timestamps it has none. So a
 * sample that is not a whole number of milliseconds is the request's, and
 * any other is checked against the accept queue (syncookie_child): a
 * cookie's gives HS_SYNCOOKIE, one that cannot be checked 0 (unknown).
 * With SYN-ACK retransmits (never on a cookie's child: it has no request
 * socket to retransmit from), the time since the first SYN-ACK that
 * remember_synack kept in synack_first. Returns 0 when unknown.
 * Addresses and ports are the child's: local = server.
 */
static __always_inline __u64 handshake_ns(const struct transition *t, struct tcp_sock *tp,
					  bool typed)
{
	struct sock *sk = (struct sock *)tp;
	if (!tp)
		return 0;
	if (!KREAD(typed, tp, total_retrans)) {
		__u64 rtt_us = KREAD(typed, tp, srtt_us) >> 3;
		if (rtt_us % 1000)
			return rtt_us * 1000;
		struct listen_sock *ls;
		int cookie = syncookie_child(t, typed, &ls);
		if (cookie > 0 && ls) {
			__sync_fetch_and_add(&ls->syncookies, 1);
			return HS_SYNCOOKIE;
		}
		return cookie == 0 ? rtt_us * 1000 : 0;
	}
	struct hs_key k = {};
	k.netns = netns_of(t);
	k.sport = t->sport;
	k.dport = t->dport;
	read_addrs(k.saddr, k.daddr, sk, typed, t->family);
	__u64 *first = bpf_map_lookup_elem(&synack_first, &k);
	if (!first)
		return 0;
	__u64 now_us = bpf_ktime_get_ns() / 1000;
	__u64 ns = now_us > *first ? (now_us - *first) * 1000 : 0;
	bpf_map_delete_elem(&synack_first, &k);
	return ns;
}

/*
 * What the kernel left behind at ->CLOSE of an active closer: the full
 * socket goes FIN_WAIT2 (or CLOSING) -> CLOSE while tcp_time_wait() leaves
 * a timewait socket, which no tracepoint reports. TIME_WAIT when the
 * peer's FIN was received (SOCK_DONE, set by tcp_fin()) and no error ended
 * the socket; an orphan closed in FIN_WAIT2 before the peer's FIN leaves
 * one in its FIN_WAIT2 substate. Not sk_shutdown: close() sets it to
 * SHUTDOWN_MASK whether the peer's FIN came or not.
 */
static __always_inline __u8 timewait_of(struct sock *sk, bool typed, int old, int err)
{
	if (err || (old != TCP_FIN_WAIT2 && old != TCP_CLOSING))
		return TW_NONE;
	if (sock_flag_set(sk, typed, bpf_core_enum_value(enum sock_flags, SOCK_DONE)))
		return TW_TIME_WAIT;
	if (old != TCP_FIN_WAIT2 || abortive_fin_wait2(sk, typed))
		return TW_NONE; /* an abortive close leaves no timewait socket */
	return TW_FIN_WAIT2;
}

/*
 * Accumulated trouble on every record; at ->CLOSE also what tcplife users
 * want, the error, and what the kernel left behind; at
 * SYN_RECV->ESTABLISHED the SYN-ACK round trip and retransmits.
 */
static __always_inline void fill_ending(struct event *e, int old, int new,
					struct tcp_sock *tp, bool typed,
					const struct sock_info *si, __u8 *flags)
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
	e->syncookie = 0;
	__builtin_memset(e->_pad2, 0, sizeof(e->_pad2));
	bool closing = new == TCP_CLOSE;
	if (!tp || !reads_tcp_sock(old, new))
		return;
	struct sock *sk = (struct sock *)tp;
	e->srtt_us = KREAD(typed, tp, srtt_us) >> 3;
	e->total_retrans = KREAD(typed, tp, total_retrans);
	if (old == TCP_SYN_SENT) /* its retransmits were all SYNs (trouble.h); a
				  * retransmit event the kernel skipped, or one
				  * a kernel before 6.11 did not report, too */
		e->syn_retrans = e->total_retrans < 0xff ? e->total_retrans : 0xff;
	if (!closing)
		return;
	*flags |= EV_CLOSE_INFO;
	e->bytes_acked = KREAD(typed, tp, bytes_acked);
	e->bytes_received = KREAD(typed, tp, bytes_received);
	int err = KREAD(typed, sk, sk_err);
	e->err = err;
	e->tw = timewait_of(sk, typed, old, err);
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

/* The socket's two ends into a record (a reserved one: zeroed first). */
static __always_inline void fill_addrs(struct event *e, struct sock *sk, bool typed, __u16 family)
{
	if (family == AF_INET) {
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	}
	read_addrs(e->saddr, e->daddr, sk, typed, family);
}

/*
 * The socket's namespace as an identity for the host's uptime: the
 * kernel's net_cookie, set once when the namespace is made and never
 * reused, where the inode (ns.inum) is (50 namespaces made in a row got 3
 * distinct inodes). Read per record, not kept per socket: unlike ns.inum,
 * whose cache line the namespace's reference count shares (a cross-CPU
 * miss under churn), net_cookie sits among read-mostly fields. 0 where
 * the kernel has no such field (before 5.9).
 */
static __always_inline __u64 netns_cookie_of(struct sock *sk, bool typed)
{
	if (!bpf_core_field_exists(struct net, net_cookie))
		return 0;
	if (typed)
		return sk->__sk_common.skc_net.net->net_cookie;
	__u64 v = 0;
	struct net *net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	bpf_core_read(&v, sizeof(v), &net->net_cookie);
	return v;
}

/* What one record says of its transition, besides the socket's own
 * fields: emit's argument. */
struct emitted {
	__u64 ts;     /* when */
	__u64 cookie;
	__u64 dwell;  /* time in old, with EV_DWELL_KNOWN */
	__u64 hs;     /* handshake_ns: 0 (unknown, or none), or HS_SYNCOOKIE */
	int old;
	int new;
	__u8 flags;   /* EV_* */
};

/* Fill one transition record: the socket's fields read from t (its
 * tcp_sock tp at the transitions that read one) and its entry si (0:
 * none), the transition's from x. emit reserves, fills and submits one. */
static __always_inline void fill_event(struct event *e, const struct transition *t,
				       struct tcp_sock *tp, bool typed, const struct sock_info *si,
				       const struct emitted *x)
{
	__u64 hs = x->hs;
	int old = x->old, new = x->new;
	__u8 flags = x->flags;
	e->ts_ns = x->ts;
	e->cookie = x->cookie;
	e->dwell_ns = x->dwell;
	fill_addrs(e, t->sk, typed, t->family);
	e->netns = t->netns;
	e->sport = t->sport;
	e->dport = t->dport;
	e->family = t->family;
	e->oldstate = old;
	e->newstate = new;
	fill_owner(e, si);
	fill_ending(e, old, new, tp, typed, si, &flags);
	e->syncookie = hs == HS_SYNCOOKIE;
	e->handshake_us = hs == HS_SYNCOOKIE ? 0 : hs / 1000;
	struct sock *sk = t->sk; /* a local: t's own type is not the kernel's (CO-RE) */
	e->ifindex = KREAD(typed, sk, __sk_common.skc_bound_dev_if);
	e->netns_cookie = netns_cookie_of(sk, typed);
	e->flags = flags;
}

static __always_inline void emit(struct counters *c, const struct transition *t,
				 struct tcp_sock *tp, bool typed, const struct sock_info *si,
				 const struct emitted *x)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&c->ringbuf_drops, 1);
		return;
	}
	fill_event(e, t, tp, typed, si, x);
	bpf_ringbuf_submit(e, submit_flags(c));
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

#endif /* TCPTRACE_RECORD_H */
