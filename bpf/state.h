/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One transition, from the tracepoint's arguments to what it leaves: the
 * filters, the socket's entry advanced, then the histogram of the
 * aggregate mode or the record. Shared by the primary and the backup
 * program and the classic tracepoint fallback (`typed`, sockets.h).
 */
#ifndef TCPTRACE_STATE_H
#define TCPTRACE_STATE_H

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
		c->aggregated++;
		aggregate(c, t->old, t->new, dwell, flags, hs);
		return;
	}
	if (conn_records) {
		aggregate(c, t->old, t->new, dwell, flags, hs); /* the histograms */
		if (si) {
			/* A child's birth is held like any transition: its
			 * cookie, if not its own yet (6.1), is taken when the
			 * record goes. */
			si->birth_ts = 0;
			hold_transition(c, t, tp, typed, si, dwell, flags, hs);
			return;
		}
	}
	if (!si) {
		struct emitted x = { .ts = t->now, .dwell = dwell, .hs = hs, .old = t->old,
				     .new = t->new, .flags = flags };
		emit(c, t, tp, typed, si, &x);
		return;
	}
	if (!si->cookie && si->birth_ts)
		return; /* an accepted child without its own cookie yet (6.1) */
	if (si->birth_ts) {
		if (!min_dwell_ns) { /* a birth has no dwell to pass --min-dwell */
			struct emitted birth = { .ts = si->birth_ts, .cookie = si->cookie,
						 .old = TCP_LISTEN, .new = TCP_SYN_RECV,
						 .flags = EV_BIRTH | EV_INHERITED |
							  (si->pid ? EV_OWNER_KNOWN : 0) };
			emit(c, t, tp, typed, si, &birth);
		}
		si->birth_ts = 0;
	}
	if (min_dwell_ns && (!(flags & EV_DWELL_KNOWN) || (flags & EV_GAP) || dwell < min_dwell_ns)) {
		c->filtered++;
		return;
	}
	__u8 synth = !typed && (si->cookie & SYNTH_COOKIE_BASE) ? EV_COOKIE_SYNTH : 0;
	struct emitted x = { .ts = t->now, .cookie = si->cookie, .dwell = dwell, .hs = hs,
			     .old = t->old, .new = t->new, .flags = flags | synth };
	emit(c, t, tp, typed, si, &x);
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
	if (si) {
		/* A child's cookie is settled at its birth (child_entry); one
		 * still 0 after it is taken now (6.1: see adopt_child). */
		if (!si->cookie && !aggregate_only && !is_child_birth(t->old, t->new))
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
	settle_entry(t, typed, si, c);
}

/* The tp_btf path: plain loads from the typed socket. */
static __always_inline void handle_btf(struct sock *sk, int old, int new,
				       struct counters *c, __u8 slot)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return;
	struct transition t = { .sk = sk, .old = old, .new = new, .slot = slot };
	t.family = sk->__sk_common.skc_family;
	/* The local port as the tracepoint itself reports it, inet_sport. It
	 * equals skc_num (a plain load) while the socket holds its port; when
	 * a closing socket has given its port back, skc_num is already 0 and
	 * only inet_sport, past struct sock, still has it: that read needs the
	 * socket typed as a tcp_sock (a helper call), done only then and for
	 * the transitions that read tcp_sock fields anyway. */
	t.sport = sk->__sk_common.skc_num;
	struct tcp_sock *tp = 0;
	if (!t.sport || reads_tcp_sock(old, new)) {
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

#endif /* TCPTRACE_STATE_H */
