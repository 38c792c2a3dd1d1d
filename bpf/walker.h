/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * walk_sockets (iter/tcp): the sockets that exist, one struct sock_snap
 * each, for the live state counts and the sockets older than the tracer.
 * On its first run it also gives every full socket an entry with its
 * owner (from seed_inodes, which user space fills from /proc/PID/fd), so
 * that later transitions, and children accepted from existing listeners,
 * carry the right owner. Entry time stays unknown (0).
 */
#ifndef TCPTRACE_WALKER_H
#define TCPTRACE_WALKER_H

/* Keeps enum age_source in the object's BTF for bpf2go. */
const enum age_source *unused_age_source __attribute__((unused));

/* Set by user space before a walk that marks the entries of the sockets it
 * finds (sock_info.walked): an entry left unmarked belongs to a socket
 * that is gone, whose CLOSE was not seen. */
volatile __u8 walk_gen = 0;

/*
 * Set by user space before each walk (internal/event.WalkDetail): bit s
 * set writes every socket in state s one by one; the sockets of the other
 * states are counted in walk_groups under group_gen. A periodic walk
 * writes only what its users read socket by socket (listeners, the states
 * the stuck watch follows), so that a host's idle connections and its
 * TIME_WAIT sockets cost a count each, not a record. group_past_ns: a
 * request socket at least this old (since its first SYN-ACK) counts in
 * its listener's group past the limit (0: no split).
 */
volatile __u32 walk_detail = 0xffffffff;
/* conn_records: bit s set sends the transitions held for each socket in
 * state s that this walk writes (the stuck watch's states, so that it
 * sees them now; every state in the last walk, for the connections still
 * open). */
volatile __u32 walk_flush = 0;
volatile __u32 group_gen = 0;
volatile __u64 group_past_ns = 0;

/* The kernel's HZ (jiffies per second), found by the loader from the
 * kernel's config or measured (internal/probe KernelHZ): socket
 * timestamps such as rcv_tstamp are in jiffies. 0: ages in jiffies are
 * not given. */
const volatile __u32 kernel_hz = 0;

/*
 * Nanoseconds since a 32-bit jiffies stamp (tcp_jiffies32, which is
 * jiffies cut to 32 bits). The u32 difference is right across a wrap of
 * the counter; a stamp older than 2^32 jiffies (49.7 days at HZ 1000,
 * 198 days at HZ 250) gives the age modulo 2^32: smaller, so still a
 * lower bound. One jiffy is taken off: both stamps are truncated to the
 * tick, so the difference can exceed the true age by up to one.
 */
static __always_inline __u64 jiffies_age_ns(__u32 stamp)
{
	__u32 d = (__u32)bpf_jiffies64() - stamp;
	if (!kernel_hz || d == 0 || d > 0x7fffffff)
		return 0;
	return (__u64)(d - 1) * 1000000000ULL / kernel_hz;
}

/*
 * The kernel's lower bound of the time a full socket has been in its
 * state, for sockets older than the tracer (issue 22 item 1). Only where
 * the state began at or before the field's moment:
 * - CLOSE_WAIT: rcv_tstamp, set by every ACK the socket takes (what
 *   `ss -ti` shows as lastack): on an idle socket the peer's FIN, which
 *   began the state; later ACKs only make the figure younger. Not
 *   lastrcv (icsk_ack.lrcvtime), the last data, which came before.
 * - FIN_WAIT2: rcv_tstamp, the ACK of our FIN, which began the state.
 * - ESTABLISHED: rcv_tstamp, entered with the handshake's last ACK
 *   (weak: any later ACK refreshes it).
 * - SYN_SENT: retrans_stamp, the first SYN's time (tcp_time_stamp in
 *   ms of the TCP clock, CLOCK_MONOTONIC; no usec stamps before the
 *   peer's SYN-ACK). 0 until set: nothing.
 * Not FIN_WAIT1, LAST_ACK, CLOSING: they begin at close() or on a FIN
 * after the last ACK, so rcv_tstamp may predate them.
 */
static __always_inline void full_age(struct sock_snap *s, struct tcp_sock *tp)
{
	switch (s->state) {
	case TCP_ESTABLISHED:
	case TCP_CLOSE_WAIT:
	case TCP_FIN_WAIT2:
		s->age_ns = jiffies_age_ns(tp->rcv_tstamp);
		s->age_src = AGE_RCV_TSTAMP;
		return;
	case TCP_SYN_SENT: {
		__u32 first = tp->retrans_stamp;
		__u32 now_ms = bpf_ktime_get_ns() / 1000000;
		if (first && (__s32)(now_ms - first) >= 0) {
			s->age_ns = (__u64)(now_ms - first) * 1000000;
			s->age_src = AGE_RETRANS_STAMP;
		}
		return;
	}
	}
}

/* A timewait socket in TIME_WAIT: its timer was set TCP_TIMEWAIT_LEN
 * (60 s) ahead when it began; a timer rearmed by a late FIN only makes
 * the figure younger. */
static __always_inline void timewait_age(struct sock_snap *s, struct sock_common *skc)
{
	struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
	if (!tw || s->state != TCP_TIME_WAIT || !kernel_hz)
		return;
	__u64 left = BPF_CORE_READ(tw, tw_sk.tw_timer.expires) - bpf_jiffies64();
	__u64 len = 60ULL * kernel_hz;
	if ((__s64)left < 0 || left > len)
		return;
	s->age_ns = (len - left) * 1000000000ULL / kernel_hz;
	s->age_src = AGE_TW_TIMER;
}

/*
 * The socket's identity into s, and whether the filters keep it. A
 * listener of the other family is not shown but still seeded (*quiet): a
 * dual-stack [::] listener's children may pass -4.
 */
static __always_inline bool snap_of(struct sock_snap *s, struct sock_common *skc, bool *quiet)
{
	s->family = skc->skc_family;
	s->state = skc->skc_state;
	if (s->state == TCP_TIME_WAIT) {
		/* As netstat and ss show it: a timewait socket of an orphan
		 * closed before the peer's FIN is in its FIN_WAIT2 substate. */
		struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw)
			s->state = tw->tw_sk.tw_substate;
	}
	s->netns = skc->skc_net.net->ns.inum;
	s->netns_cookie = netns_cookie_of((struct sock *)skc, true);
	s->ifindex = skc->skc_bound_dev_if;
	s->sport = skc->skc_num;
	s->dport = bpf_ntohs(skc->skc_dport);
	if (!ports_match(s->sport, s->dport) || (filter_netns && s->netns != filter_netns))
		return false;
	read_addrs(s->saddr, s->daddr, (struct sock *)skc, true, s->family);
	*quiet = false;
	if (filter_family) {
		bool v4 = s->family == AF_INET ||
			  v4mapped((struct in6_addr *)s->saddr) || v4mapped((struct in6_addr *)s->daddr);
		if ((filter_family == 4) != v4) {
			if (s->state != TCP_LISTEN)
				return false;
			*quiet = true;
		}
	}
	s->age_src = AGE_FIRST_SEEN;
	if (s->state == TCP_NEW_SYN_RECV) {
		/* A half-open handshake: when its first SYN-ACK left. (Not
		 * bpf_skc_to_tcp_request_sock: it checks sk_prot, which a
		 * request socket does not set.) */
		s->synack_ns = BPF_CORE_READ((struct tcp_request_sock *)skc, snt_synack) * 1000;
		__u64 now = bpf_ktime_get_ns();
		if (s->synack_ns && now > s->synack_ns) {
			s->age_ns = now - s->synack_ns;
			s->age_src = AGE_SNT_SYNACK;
		}
	}
	return true;
}

/* First walk: an entry with the owner /proc gave for the socket's inode. */
static __always_inline void seed_entry(struct sock *sk, const struct sock_snap *s)
{
	struct sock_info *fresh = fresh_entry(2); /* the walker's slot (maps.h) */
	if (!fresh)
		return;
	fresh->cookie = s->cookie;
	fresh->last = s->state;
	__u64 ino = s->ino;
	struct sock_info *o = bpf_map_lookup_elem(&seed_inodes, &ino);
	if (o) {
		fresh->pid = o->pid;
		__builtin_memcpy(fresh->comm, o->comm, sizeof(fresh->comm));
	}
	if (s->state == TCP_LISTEN && BPF_CORE_READ_BITFIELD(&sk->__sk_common, skc_reuseport)) {
		struct sock_info *st = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st && !st->pid)
			__builtin_memcpy(st, fresh, sizeof(*st));
		return;
	}
	__u64 key = (__u64)sk;
	__u32 zero = 0;
	table_insert(key, fresh, bpf_map_lookup_elem(&health, &zero)); /* a transition may have made one */
	if (s->state == TCP_LISTEN && fresh->pid) {
		struct listen_key k;
		listen_key_of(&k, s->netns, s->family, s->sport, sk, true, false);
		register_listener(&k, fresh, false);
	}
}

/*
 * A listener's queues and trouble: the accept queue; the kernel's drops
 * (sk_drops, what `ss -m` shows as d); the time of its latest SYN cookie
 * (tcp_synq_overflow keeps it in the listener's rx_opt.ts_recent_stamp,
 * or for SO_REUSEPORT in the group's synq_overflow_ts); and the tracer's
 * count of connections it accepted through a cookie (listen_socks, whose
 * entry the first walk makes for a listener older than the tracer).
 */
static __always_inline void listener_snap(struct sock_snap *s, struct sock *sk,
					  struct tcp_sock *tp)
{
	s->ack_backlog = sk->sk_ack_backlog;
	s->max_ack_backlog = sk->sk_max_ack_backlog;
	s->drops = sk->sk_drops.counter;
	struct sock_reuseport *reuse = sk->sk_reuseport_cb;
	if (BPF_CORE_READ_BITFIELD(&sk->__sk_common, skc_reuseport) && reuse)
		s->syncookie_stamp = BPF_CORE_READ(reuse, synq_overflow_ts);
	else
		s->syncookie_stamp = tp->rx_opt.ts_recent_stamp;
	struct listen_key k;
	listen_key_of(&k, s->netns, s->family, s->sport, sk, true, false);
	struct listen_sock *ls = bpf_map_lookup_elem(&listen_socks, &k);
	if (!ls && iter_seed) {
		struct listen_sock fresh = { .sk = (__u64)sk };
		bpf_map_update_elem(&listen_socks, &k, &fresh, BPF_NOEXIST);
		return;
	}
	if (ls && ls->sk == (__u64)sk)
		s->syncookies = ls->syncookies;
}

/* Send the transitions held for a socket the walk found (conn.h); its
 * next ones go out as they come (SI_LIVE). The iterator holds the
 * socket's lock (5.15 on): its transitions wait meanwhile. */
static __always_inline void flush_held(struct sock *sk, const struct sock_snap *s,
				       struct sock_info *si)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&health, &zero);
	if (!c)
		return;
	struct transition t = { .sk = sk, .now = bpf_ktime_get_ns(), .netns = s->netns,
				.family = s->family, .sport = s->sport, .dport = s->dport };
	send_held(c, &t, 0, true, si);
	si->flags |= SI_LIVE;
}

/* Whether this walk writes the sockets of s's state one by one. */
static __always_inline bool walk_writes(const struct sock_snap *s)
{
	return walk_detail & (1U << (s->state & 31));
}

/*
 * Count s in its group (struct walk_group_key) instead of writing it.
 * False when the group cannot be had (the map is full): s is then
 * written.
 */
static __always_inline bool count_in_group(const struct sock_snap *s)
{
	struct walk_group_key k = {};
	k.netns_cookie = s->netns_cookie;
	k.netns = s->netns;
	k.state = s->state;
	k.family = s->family;
	if (s->state == TCP_TIME_WAIT) {
		__builtin_memcpy(k.addr, s->daddr, sizeof(k.addr));
		k.port = s->dport;
		k.ifindex = s->ifindex;
	} else if (s->state == TCP_NEW_SYN_RECV) {
		k.port = s->sport;
		k.past = group_past_ns && s->age_src == AGE_SNT_SYNACK && s->age_ns >= group_past_ns;
	}
	struct walk_group *g = bpf_map_lookup_elem(&walk_groups, &k);
	if (!g) {
		struct walk_group fresh = { .gen = group_gen };
		bpf_map_update_elem(&walk_groups, &k, &fresh, BPF_NOEXIST);
		g = bpf_map_lookup_elem(&walk_groups, &k);
		if (!g)
			return false;
	}
	if (g->gen != group_gen) {
		g->gen = group_gen;
		g->count = 0;
	}
	if (!g->count || s->age_ns > g->oldest) {
		g->oldest = s->age_ns;
		g->age_src = s->age_src;
	}
	g->count++;
	return true;
}

SEC("iter/tcp")
int walk_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct sock_snap s = {};
	bool quiet;
	if (!snap_of(&s, skc, &quiet))
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (filter_cgroup && (!tp || !cgroup_match((struct sock *)tp)))
		return 0; /* mini sockets carry no cgroup */
	if (!tp)
		timewait_age(&s, skc);
	/* A socket this walk counts: nothing more to read (no owner: with
	 * --pid, which needs it, every state is written). */
	if (!quiet && !walk_writes(&s) && !filter_pid && count_in_group(&s))
		return 0;
	if (tp) { /* a full socket: TIME_WAIT and request sockets have no entry */
		struct sock *sk = (struct sock *)tp;
		full_age(&s, tp);
		s.bytes_acked = tp->bytes_acked;
		s.bytes_received = tp->bytes_received;
		s.srtt_us = tp->srtt_us >> 3;
		s.total_retrans = tp->total_retrans;
		s.cookie = bpf_get_socket_cookie(sk);
		s.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
		/* The histogram-only mode keeps no entries: the owners of its
		 * listener records come from /proc by inode in user space. */
		if (iter_seed && !HIST_ONLY)
			seed_entry(sk, &s);
		struct sock_info *si = HIST_ONLY ? 0 : find_entry(sk, true);
		if (si)
			si->walked = walk_gen;
		if (si && conn_records && si->held.n && (walk_flush & (1U << (s.state & 31))))
			flush_held(sk, &s, si);
		if (si && si->pid) {
			s.pid = si->pid;
			s.owner_known = 1;
			__builtin_memcpy(s.comm, si->comm, sizeof(s.comm));
		}
		if (si)
			s.retrans = si->retrans;
		if (s.state == TCP_LISTEN)
			listener_snap(&s, sk, tp);
	}
	if (quiet || (filter_pid && s.pid != filter_pid))
		return 0;
	bpf_seq_write(ctx->meta->seq, &s, sizeof(s));
	return 0;
}

#endif /* TCPTRACE_WALKER_H */
