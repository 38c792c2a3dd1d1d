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

/*
 * Count the completed stay in the kernel instead of sending a record. The
 * same rule as user space (event.Event.Stay, pinned by
 * TestKernelAggregationMatchesUserSpace): a known dwell; not CLOSE (where
 * sockets start and end); not a repeated set; not an accepted child's
 * birth (LISTEN->SYN_RECV: the child never was in LISTEN); an accepted
 * child's SYN_RECV is its handshake time.
 */
static __always_inline void aggregate(struct counters *c, int old, int new,
				      __u64 dwell, __u8 flags, __u64 handshake)
{
	c->aggregated++;
	if (flags & EV_HANDSHAKE) {
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
 * The histogram-only mode's path (--emit histograms without --pid): the
 * socket's entry time from hist_socks, the stay counted. No owner, no
 * cookie, no socket storage.
 */
static __always_inline void handle_hist(const struct transition *t, struct tcp_sock *tp,
					bool typed, struct counters *c)
{
	int old = t->old, new = t->new;
	__u64 key = (__u64)t->sk;
	__u64 dwell = 0;
	__u8 flags = 0;
	struct hist_sock *h = is_birth(old, new) ? 0 : bpf_map_lookup_elem(&hist_socks, &key);
	__u32 si_flags = old == TCP_LISTEN && new == TCP_SYN_RECV ? SI_ACCEPTED : 0;
	if (h) {
		si_flags = h->flags;
		if (h->ts_ns) {
			dwell = t->now - h->ts_ns;
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
			h->ts_ns = t->now;
		} else {
			struct hist_sock fresh = { .ts_ns = t->now, .flags = si_flags };
			bpf_map_update_elem(&hist_socks, &key, &fresh, BPF_ANY);
		}
	}
	__u64 hs = 0;
	if (old == TCP_SYN_RECV && new == TCP_ESTABLISHED && (si_flags & SI_ACCEPTED)) {
		flags |= EV_HANDSHAKE;
		hs = handshake_ns(t, tp, typed);
	}
	aggregate(c, old, new, dwell, flags, hs);
}

#endif /* TCPTRACE_HIST_H */
