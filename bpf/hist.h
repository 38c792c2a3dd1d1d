/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Aggregate mode: dwell-time histograms kept in the kernel, no records.
 */
#ifndef TCPTRACE_HIST_H
#define TCPTRACE_HIST_H

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

/* The state's histogram (per CPU), 0 for a state out of range. */
static __always_inline struct state_hist *state_hist_of(int state)
{
	__u32 key = state;
	return bpf_map_lookup_elem(&dwell_hists, &key);
}

/* A stay of `state` ended and could not be timed, for reason `why`. */
static __always_inline void count_untimed(int state, __u32 why)
{
	struct state_hist *h = state_hist_of(state);
	if (h && why < UNTIMED_REASONS)
		h->untimed[why]++;
}

/*
 * Count the completed stay in the kernel instead of sending a record. The
 * same rule as user space (event.Event.Stay and event.Event.Untimed,
 * pinned by TestKernelAggregationMatchesUserSpace): a known dwell whose
 * start was seen (not EV_GAP: then it is untimed, UNTIMED_GAP); not
 * CLOSE (where sockets start and end); not a repeated set; not an
 * accepted child's birth (LISTEN->SYN_RECV: the child never was in
 * LISTEN); an accepted child's SYN_RECV is its handshake time
 * (handshake_ns: HS_SYNCOOKIE for a SYN cookie's). A stay that ended
 * without a time is counted as untimed, with `why` (enum untimed_reason)
 * when the dwell is unknown.
 */
static __always_inline void aggregate_why(struct counters *c, int old, int new,
					  __u64 dwell, __u8 flags, __u64 handshake, __u32 why)
{
	if (old == TCP_CLOSE || old == new || is_child_birth(old, new))
		return; /* no stay ended */
	if (flags & EV_HANDSHAKE) {
		if (handshake == HS_SYNCOOKIE) {
			count_untimed(old, UNTIMED_SYNCOOKIE);
			return;
		}
		if (!handshake) {
			count_untimed(old, UNTIMED_NO_START);
			return;
		}
		dwell = handshake;
		flags |= EV_DWELL_KNOWN;
	}
	if (flags & EV_GAP) {
		count_untimed(old, UNTIMED_GAP);
		return;
	}
	if (!(flags & EV_DWELL_KNOWN)) {
		count_untimed(old, why);
		return;
	}
	struct state_hist *h = state_hist_of(old);
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

/* The record modes' aggregation (--emit histograms with --pid): an
 * unknown dwell there is a socket without an entry. */
static __always_inline void aggregate(struct counters *c, int old, int new,
				      __u64 dwell, __u8 flags, __u64 handshake)
{
	aggregate_why(c, old, new, dwell, flags, handshake, UNTIMED_NO_START);
}

/*
 * The socket's state in the histogram-only mode. On tp_btf it lives in a
 * slot of hist_slots chosen by the socket's cookie: found when the slot
 * holds that cookie. The fallback, which cannot ask for a cookie, keeps
 * it in hist_socks by socket address.
 */
struct hist_ref {
	struct hist_sock *h;   /* the socket's state, 0: none */
	struct hist_slot *slot; /* tp_btf: the socket's slot */
	__u64 cookie;
};

/* Slot i of hist_slots (i is masked, so always found). */
static __always_inline struct hist_slot *hist_slot(__u64 i)
{
	__u32 k = i & hist_slot_mask;
	return bpf_map_lookup_elem(&hist_slots, &k);
}

/*
 * Each cookie has two slots, its own and the one half the table away: a
 * birth whose own slot is still held by a long-lived socket takes the
 * other, so that a socket is evicted only when both are held by live
 * sockets, not merely because as many newer cookies were handed out as
 * there are slots. When both are held, the birth takes its own slot.
 */
static __always_inline void hist_find(const struct transition *t, bool typed, struct hist_ref *r)
{
	r->h = 0;
	r->slot = 0;
	r->cookie = 0;
	if (!typed) {
		__u64 key = (__u64)t->sk;
		if (!is_birth(t->old, t->new))
			r->h = bpf_map_lookup_elem(&hist_socks, &key);
		return;
	}
	r->cookie = bpf_get_socket_cookie(t->sk);
	struct hist_slot *own = hist_slot(r->cookie);
	struct hist_slot *other = hist_slot(r->cookie + (hist_slot_mask >> 1) + 1);
	if (!own || !other)
		return;
	if (own->cookie == r->cookie)
		r->slot = own;
	else if (other->cookie == r->cookie)
		r->slot = other;
	if (!r->slot) { /* not found: where a birth would go */
		r->slot = own->cookie && !other->cookie ? other : own;
		return;
	}
	if (is_child_birth(t->old, t->new)) {
		/* A live socket holds the child's cookie: the child still
		 * carries its listener's (6.1), and the slot is the
		 * listener's. Leave it; the child gets its own cookie later. */
		r->slot = 0;
		return;
	}
	if (!is_birth(t->old, t->new))
		r->h = &r->slot->s;
}

/* Start the socket's state at its birth (or first sight). */
static __always_inline void hist_start(const struct transition *t, struct hist_ref *r, __u32 flags)
{
	if (!r->slot) {
		if (r->cookie) /* tp_btf, the slot left to the listener (above) */
			return;
		__u64 key = (__u64)t->sk;
		struct hist_sock fresh = { .ts_ns = t->now, .flags = flags, .last = t->new };
		bpf_map_update_elem(&hist_socks, &key, &fresh, BPF_ANY);
		return;
	}
	/* A live socket's slot taken (both of the birth's slots held): that
	 * socket's stay will end untimed. */
	if (r->slot->cookie) {
		struct state_hist *h = state_hist_of(r->slot->s.last);
		if (h)
			h->evicted++;
	}
	/* Cookie last: a reader on another CPU that finds the cookie reads
	 * this socket's state (it checks the cookie again after reading). */
	r->slot->cookie = 0;
	asm volatile("" ::: "memory");
	r->slot->s.ts_ns = t->now;
	r->slot->s.flags = flags;
	r->slot->s.last = t->new;
	asm volatile("" ::: "memory");
	r->slot->cookie = r->cookie;
}

/* The socket closed: free its state. */
static __always_inline void hist_end(const struct transition *t, struct hist_ref *r)
{
	if (r->slot) {
		r->slot->cookie = 0;
		return;
	}
	__u64 key = (__u64)t->sk;
	bpf_map_delete_elem(&hist_socks, &key);
}

/*
 * The histogram-only mode's path (--emit histograms without --pid): the
 * socket's entry time, the stay counted. No owner, no socket storage, no
 * backup program: a transition the kernel skips (recursion) is lost and
 * counted there, and the socket's next transition, out of a state other
 * than the one its entry holds, times nothing (UNTIMED_GAP, for the
 * state whose end was missed and for the one whose start was): a stay is
 * never measured across two states.
 */
static __always_inline void handle_hist(const struct transition *t, struct tcp_sock *tp,
					bool typed, struct counters *c)
{
	int old = t->old, new = t->new;
	__u64 dwell = 0;
	__u8 flags = 0;
	__u32 why = UNTIMED_NO_START;
	struct hist_ref r;
	hist_find(t, typed, &r);
	__u32 si_flags = is_child_birth(old, new) ? SI_ACCEPTED : 0;
	__u32 last = 0;
	if (r.h) {
		si_flags = r.h->flags;
		last = r.h->last;
		__u64 ts = r.h->ts_ns;
		asm volatile("" ::: "memory");
		if (r.slot && r.slot->cookie != r.cookie) {
			/* The slot changed hands while read: the new owner
			 * keeps it (hist_start writes nothing without one). */
			r.h = 0;
			r.slot = 0;
			si_flags = 0;
			last = 0;
		} else if (last != old) {
			/* Transitions missed since: the stay in `last` ended
			 * unseen, and the one in `old` began unseen. */
			why = UNTIMED_GAP;
			if (last != TCP_CLOSE && last != TCP_LISTEN)
				count_untimed(last, UNTIMED_GAP);
		} else if (ts) {
			dwell = t->now - ts;
			flags |= EV_DWELL_KNOWN;
		}
	}
	if (r.h && last && last != old) { /* continuity: see handle_state */
		flags |= EV_GAP;
		__sync_fetch_and_add(&c->gap_lost, unseen_between(last, old));
	}
	if (!r.h && is_handshake_end(old, new) && typed &&
	    !t->sk->sk_socket) {
		/* A child whose birth left no state (born before the tracer,
		 * or with its listener's cookie on 6.1): not yet accepted, so
		 * no socket; its stay is its handshake, which needs none. */
		si_flags = SI_ACCEPTED;
	} else if (!r.h && !is_birth(old, new)) {
		__sync_fetch_and_add(&c->storage_fail, 1); /* older than the tracer, or evicted */
	}
	if (new == TCP_CLOSE) {
		if (r.h)
			hist_end(t, &r);
	} else if (old != new || why == UNTIMED_GAP) { /* a repeated set does not start a new stay */
		if (r.h) {
			r.h->ts_ns = t->now;
			r.h->last = new;
		} else {
			hist_start(t, &r, si_flags);
		}
	}
	__u64 hs = 0;
	if (is_handshake_end(old, new) && (si_flags & SI_ACCEPTED)) {
		flags |= EV_HANDSHAKE;
		hs = handshake_ns(t, tp, typed);
	}
	c->aggregated++;
	aggregate_why(c, old, new, dwell, flags, hs, why);
}

#endif /* TCPTRACE_HIST_H */
