/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conn_records: the record modes without transitions (the default
 * output: connections, histograms, states, stuck) on tp_btf. A socket's
 * transitions are held in its entry (struct held) and sent together, one
 * struct conn_record a connection instead of a record a transition: at
 * its CLOSE, when six are held, and when a socket walk flushes the
 * sockets the stuck watch must see now (walker.h). User space expands the
 * record into its transitions, so every rule of a timeline stays in one
 * place (internal/timeline). The histograms come from the kernel's
 * aggregation (hist.h): a stay is counted when it ends, not when its
 * connection's record is sent.
 */
#ifndef TCPTRACE_CONN_H
#define TCPTRACE_CONN_H

/*
 * Send the transitions held in si, the socket's fields read now (t, and
 * tp at the transitions that read one: its last, when it is a CLOSE or a
 * handshake's end). A record that finds the ring full loses every
 * transition it held, each counted.
 */
static __always_inline void send_held(struct counters *c, const struct transition *t,
				      struct tcp_sock *tp, bool typed, struct sock_info *si)
{
	struct held *h = &si->held;
	__u32 n = h->n;
	/* The last one's index, masked where it is used: a checked n spilled
	 * to the stack loses its bounds on older verifiers (sockets.h). */
	__u32 last = (n - 1) & 7;
	if (!n || last >= CONN_SPANS)
		return;
	struct conn_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		__sync_fetch_and_add(&c->ringbuf_drops, n);
		h->n = 0;
		return;
	}
	if (!si->cookie)
		si->cookie = sock_cookie(t->sk, typed);
	struct emitted x = { .ts = h->ts[last], .cookie = si->cookie, .hs = 0,
			     .old = h->old[last], .new = h->new[last],
			     .flags = si->pid ? EV_OWNER_KNOWN : 0 };
	fill_event(&r->e, t, tp, typed, si, &x);
	r->e.kind = KIND_CONN;
	r->e.handshake_us = h->hs_us;
	r->e.syncookie = h->hs_syncookie;
	__builtin_memcpy(&r->held, h, sizeof(r->held));
	bpf_ringbuf_submit(r, submit_flags(c));
	h->n = 0;
	h->hs_us = 0;
	h->hs_retrans = 0;
	h->hs_syncookie = 0;
}

/* Hold one transition in si (dwell, flags and handshake as deliver has
 * them); send them all at a CLOSE or once the entry's are full. */
static __always_inline void hold_transition(struct counters *c, const struct transition *t,
					    struct tcp_sock *tp, bool typed, struct sock_info *si,
					    __u64 dwell, __u8 flags, __u64 hs)
{
	int old = t->old, new = t->new;
	struct held *h = &si->held;
	__u32 i = h->n & 7; /* masked: see send_held */
	if (i >= CONN_SPANS) { /* not left full: sent at the sixth */
		h->n = 0;
		i = 0;
	}
	h->ts[i] = t->now;
	h->dwell[i] = dwell;
	h->old[i] = old;
	h->new[i] = new;
	h->flags[i] = flags;
	h->n = i + 1;
	if (flags & EV_HANDSHAKE) {
		h->hs_syncookie = hs == HS_SYNCOOKIE;
		h->hs_us = hs == HS_SYNCOOKIE ? 0 : hs / 1000;
	}
	if (is_handshake_end(old, new)) /* as fill_ending sends it: any handshake's end */
		h->hs_retrans = tp ? KREAD(typed, tp, total_retrans) : 0;
	if (new == TCP_CLOSE || h->n == CONN_SPANS || (si->flags & SI_LIVE))
		send_held(c, t, tp, typed, si);
}

#endif /* TCPTRACE_CONN_H */
