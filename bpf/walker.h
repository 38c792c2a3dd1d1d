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

/* 1 on the first walk: create entries and seed owners; later walks only read. */
volatile __u8 iter_seed = 1;
/* Set by user space before a walk that marks the entries of the sockets it
 * finds (sock_info.walked): an entry left unmarked belongs to a socket
 * that is gone, whose CLOSE was not seen. */
volatile __u8 walk_gen = 0;

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
	if (s->family == AF_INET) {
		*(__u32 *)s->saddr = skc->skc_rcv_saddr;
		*(__u32 *)s->daddr = skc->skc_daddr;
	} else {
		BPF_CORE_READ_INTO(&s->saddr, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&s->daddr, skc, skc_v6_daddr);
	}
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
	if (s->state == TCP_NEW_SYN_RECV)
		/* A half-open handshake: when its first SYN-ACK left. (Not
		 * bpf_skc_to_tcp_request_sock: it checks sk_prot, which a
		 * request socket does not set.) */
		s->synack_ns = BPF_CORE_READ((struct tcp_request_sock *)skc, snt_synack) * 1000;
	return true;
}

/* First walk: an entry with the owner /proc gave for the socket's inode. */
static __always_inline void seed_entry(struct sock *sk, const struct sock_snap *s)
{
	struct sock_info fresh = { .cookie = s->cookie, .last = s->state };
	__u64 ino = s->ino;
	struct sock_info *o = bpf_map_lookup_elem(&seed_inodes, &ino);
	if (o) {
		fresh.pid = o->pid;
		__builtin_memcpy(fresh.comm, o->comm, sizeof(fresh.comm));
	}
	if (s->state == TCP_LISTEN && BPF_CORE_READ_BITFIELD(&sk->__sk_common, skc_reuseport)) {
		struct sock_info *st = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st && !st->pid)
			*st = fresh;
		return;
	}
	__u64 key = (__u64)sk;
	bpf_map_update_elem(&sock_table, &key, &fresh, BPF_NOEXIST); /* a transition may have made one */
	if (s->state == TCP_LISTEN && fresh.pid) {
		struct listen_key k;
		listen_key_of(&k, s->netns, s->family, s->sport, sk, true, false);
		register_listener(&k, &fresh, false);
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
	if (tp) { /* a full socket: TIME_WAIT and request sockets have no entry */
		struct sock *sk = (struct sock *)tp;
		s.cookie = bpf_get_socket_cookie(sk);
		s.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
		/* The histogram-only mode keeps no entries: the owners of its
		 * listener records come from /proc by inode in user space. */
		if (iter_seed && !HIST_ONLY)
			seed_entry(sk, &s);
		struct sock_info *si = HIST_ONLY ? 0 : find_entry(sk, true);
		if (si)
			si->walked = walk_gen;
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
