/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Each socket's entry: its owner, cookie, when it entered its state and
 * its trouble counts (struct sock_info), in sock_table, or in socket
 * storage for SO_REUSEPORT listeners and their children (maps.h says why).
 * `typed` (a constant at every call site) is true on the tp_btf path,
 * where socket storage, socket cookies and plain loads are allowed, and
 * false on the classic tracepoint fallback.
 */
#ifndef TCPTRACE_SOCKETS_H
#define TCPTRACE_SOCKETS_H

/*
 * A field of a kernel object: a plain load where the verifier knows the
 * pointer's type (tp_btf, iterators, after bpf_skc_to_tcp_sock), a CO-RE
 * probe read where it does not (the classic tracepoint's addresses). Only
 * one of the two is compiled at each call site.
 */
#define KREAD(typed, p, field) ((typed) ? (p)->field : BPF_CORE_READ(p, field))

/* An accepted child's birth: the kernel reports its first transition as
 * LISTEN -> SYN_RECV (it never was in LISTEN; its listener is). */
static __always_inline bool is_child_birth(int old, int new)
{
	return old == TCP_LISTEN && new == TCP_SYN_RECV;
}

/* A socket's birth: a new socket leaves CLOSE, an accepted child LISTEN. */
static __always_inline bool is_birth(int old, int new)
{
	return old == TCP_CLOSE || is_child_birth(old, new);
}

/* A handshake's end: SYN_RECV -> ESTABLISHED (an accepted child's, where
 * SI_ACCEPTED says so, or a simultaneous open's). */
static __always_inline bool is_handshake_end(int old, int new)
{
	return old == TCP_SYN_RECV && new == TCP_ESTABLISHED;
}

/* The transitions whose record reads tcp_sock fields: ->CLOSE (how it
 * ended) and a handshake's end (its round trip and SYN-ACK retransmits). */
static __always_inline bool reads_tcp_sock(int old, int new)
{
	return new == TCP_CLOSE || is_handshake_end(old, new);
}

/* The socket's local address into a (16 bytes: IPv4 in the first 4, the
 * rest not written). */
static __always_inline void read_local_addr(__u8 *a, struct sock *sk, bool typed, __u16 family)
{
	if (family == AF_INET)
		*(__u32 *)a = KREAD(typed, sk, __sk_common.skc_rcv_saddr);
	else
		BPF_CORE_READ_INTO((struct in6_addr *)a, sk, __sk_common.skc_v6_rcv_saddr);
}

/* Both of the socket's ends (as read_local_addr). */
static __always_inline void read_addrs(__u8 *saddr, __u8 *daddr, struct sock *sk, bool typed,
				       __u16 family)
{
	read_local_addr(saddr, sk, typed, family);
	if (family == AF_INET)
		*(__u32 *)daddr = KREAD(typed, sk, __sk_common.skc_daddr);
	else
		BPF_CORE_READ_INTO((struct in6_addr *)daddr, sk, __sk_common.skc_v6_daddr);
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

/*
 * The fewest transitions the kernel reports between two states of one
 * socket (tracepoint order: [from][to], kernel state numbers; 0 where
 * from == to or a state never reported). A socket whose next transition
 * leaves a state other than the last one it was seen entering made at
 * least this many transitions unseen. Through CLOSE only as the kernel
 * does it: a socket closed, then connect()ed or listen()ed again.
 */
const volatile __u8 unseen_path[16][16] = { /* a global: a static table lands in a mergeable section bpf2go cannot type */
	{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	{0, 0, 2, 3, 1, 2, 0, 1, 1, 2, 2, 2, 0, 0, 0, 0}, /* from ESTABLISHED */
	{0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 2, 3, 0, 0, 0, 0}, /* SYN_SENT */
	{0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 2, 2, 0, 0, 0, 0}, /* SYN_RECV */
	{0, 3, 2, 3, 0, 1, 0, 1, 4, 5, 2, 1, 0, 0, 0, 0}, /* FIN_WAIT1 */
	{0, 3, 2, 3, 4, 0, 0, 1, 4, 5, 2, 5, 0, 0, 0, 0}, /* FIN_WAIT2 */
	{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, /* TIME_WAIT: never a full socket's */
	{0, 2, 1, 2, 3, 4, 0, 0, 3, 4, 1, 4, 0, 0, 0, 0}, /* CLOSE */
	{0, 3, 2, 3, 4, 5, 0, 1, 0, 1, 2, 5, 0, 0, 0, 0}, /* CLOSE_WAIT */
	{0, 3, 2, 3, 4, 5, 0, 1, 4, 0, 2, 5, 0, 0, 0, 0}, /* LAST_ACK */
	{0, 3, 2, 3, 4, 5, 0, 1, 4, 5, 0, 5, 0, 0, 0, 0}, /* LISTEN */
	{0, 3, 2, 3, 4, 5, 0, 1, 4, 5, 2, 0, 0, 0, 0, 0}, /* CLOSING */
	{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, /* 13-15: no state */
	{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

/* The fewest transitions from a socket's birth (CLOSE->..., or an accepted
 * child's LISTEN->SYN_RECV) to being in state s. */
const volatile __u8 unseen_birth[16] = { 0, 2, 1, 1, 2, 3, 0, 0, 3, 4, 1, 3, 0, 1, 1, 1 };

/* Transitions a socket last seen entering `last` made unseen before one
 * that leaves `old` (at least one when they differ). */
static __always_inline __u32 unseen_between(__u32 last, __u32 old)
{
	/* Indexed through a mask, not after a range check: 6.1's verifier
	 * loses a range check's bound when the index is spilled to the
	 * stack. The kernel's states are 0-12; rows and columns 13-15 are 0
	 * (at least one). */
	__u32 n = unseen_path[last & 15][old & 15];
	return n ? n : 1;
}

/* Transitions a socket first seen leaving `old` made unseen since its
 * birth (0 when this transition is its birth). */
static __always_inline __u32 unseen_since_birth(__u32 old)
{
	return unseen_birth[old & 15]; /* masked: see unseen_between */
}

/*
 * The socket cookie. The classic tracepoint may not call the helper: it
 * reads the cookie if the socket has one, else the tracer assigns an id
 * (SYNTH_COOKIE_BASE set: below 2^53, clear of the kernel's counter).
 */
static __always_inline __u64 sock_cookie(struct sock *sk, bool typed)
{
	if (typed)
		return bpf_get_socket_cookie(sk);
	__u64 c = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	return c ? c : SYNTH_COOKIE_BASE | __sync_fetch_and_add(&next_synth_cookie, 1);
}

static __always_inline bool is_reuseport(struct sock *sk, bool typed)
{
	return typed && BPF_CORE_READ_BITFIELD(&sk->__sk_common, skc_reuseport);
}

/* The listening address a socket's local end matches: exact, or any. */
static __always_inline void listen_key_of(struct listen_key *k, __u32 netns, __u16 family,
					  __u16 port, struct sock *sk, bool typed, bool any)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->netns = netns;
	k->port = port;
	k->family = family;
	if (!any)
		read_local_addr(k->addr, sk, typed, family);
}

/* The owner of the listener an accepted socket came from (0: unknown). */
static __always_inline struct listen_owner *listener_of(const struct transition *t, bool typed)
{
	struct listen_key k;
	listen_key_of(&k, t->netns, t->family, t->sport, t->sk, typed, false);
	struct listen_owner *o = bpf_map_lookup_elem(&listeners, &k);
	if (!o) {
		listen_key_of(&k, t->netns, t->family, t->sport, t->sk, typed, true);
		o = bpf_map_lookup_elem(&listeners, &k);
	}
	return o && !o->ambiguous ? o : 0;
}

/* A listener's owner, for its children; a second owner on the same key
 * makes it ambiguous. */
static __always_inline void register_listener(const struct listen_key *key,
					      const struct sock_info *si, bool reuse_possible)
{
	struct listen_key k = *key;
	struct listen_owner *o = bpf_map_lookup_elem(&listeners, &k);
	if (o && o->cookie != si->cookie && !reuse_possible) {
		o = 0; /* a listener on this key without SO_REUSEPORT: the old one is gone */
	} else if (o) {
		if (o->pid != si->pid)
			o->ambiguous = 1;
		return;
	}
	struct listen_owner fresh = { .pid = si->pid, .cookie = si->cookie };
	__builtin_memcpy(fresh.comm, si->comm, sizeof(fresh.comm));
	bpf_map_update_elem(&listeners, &k, &fresh, BPF_ANY);
}

/*
 * An accepted child's entry at its birth. Its owner is its listener's.
 * Its cookie, when the kernel has already given it its own: on some
 * kernels (6.1) the child still carries its listener's cookie here and
 * gets its own right after, so the cookie stays 0 and the record waits
 * for the child's next transition (birth_ts).
 */
static __always_inline void adopt_child(struct sock_info *si, struct sock *sk, bool typed,
					__u64 listener_cookie, __u64 now)
{
	si->ts_ns = 0;
	si->retrans = 0;
	si->syn_retrans = 0;
	si->rst = 0;
	si->flags = SI_ACCEPTED;
	si->last = 0;
	si->cookie = 0;
	si->birth_ts = 0;
	__builtin_memset(&si->held, 0, sizeof(si->held)); /* cloned storage has its listener's */
	if (aggregate_only)
		return;
	__u64 cookie = typed ? bpf_get_socket_cookie(sk) : BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (cookie && listener_cookie && cookie != listener_cookie)
		si->cookie = cookie;
	else if (typed)
		si->birth_ts = now;
	else /* the fallback assigns its own id */
		si->cookie = SYNTH_COOKIE_BASE | __sync_fetch_and_add(&next_synth_cookie, 1);
}

/* An empty entry to fill, in this program's slot (0: none to be had). */
static __always_inline struct sock_info *fresh_entry(__u32 slot)
{
	struct sock_info *f = bpf_map_lookup_elem(&fresh_entries, &slot);
	if (f)
		__builtin_memset(f, 0, sizeof(*f));
	return f;
}

/*
 * sock_table's inserts (of a key not there) and deletes, counted in c
 * (entries_in, entries_out; c may be 0): user space sums them into the
 * table's occupancy (probe.firstSights).
 */
static __always_inline bool table_insert(__u64 key, const struct sock_info *v,
					 struct counters *c)
{
	if (bpf_map_update_elem(&sock_table, &key, v, BPF_NOEXIST))
		return false;
	if (c)
		__sync_fetch_and_add(&c->entries_in, 1);
	return true;
}

static __always_inline void table_delete(__u64 key, struct counters *c)
{
	if (!bpf_map_delete_elem(&sock_table, &key) && c)
		__sync_fetch_and_add(&c->entries_out, 1);
}

/*
 * Insert a fresh entry for sk in sock_table and return it. An entry
 * already there that is not SI_CLOSED belongs to an earlier socket at this
 * address whose CLOSE was not seen (the kernel reused the struct sock):
 * that CLOSE is counted lost (reused_lost), what it held too (held_lost),
 * and the entry replaced. The check costs nothing unless the insert finds
 * one.
 */
static __always_inline struct sock_info *new_entry(const struct transition *t,
						   const struct sock_info *fresh,
						   struct counters *c)
{
	__u64 key = (__u64)t->sk;
	if (!table_insert(key, fresh, c)) {
		struct sock_info *old = bpf_map_lookup_elem(&sock_table, &key);
		if (old && !(old->flags & SI_CLOSED)) { /* its CLOSE, and what it held (conn.h) */
			__sync_fetch_and_add(&c->reused_lost, 1);
			if (old->held.n)
				__sync_fetch_and_add(&c->held_lost, old->held.n);
		}
		bpf_map_update_elem(&sock_table, &key, fresh, BPF_ANY);
	}
	return bpf_map_lookup_elem(&sock_table, &key);
}

/*
 * Whether an entry found at this socket's address is this socket's: its
 * cookie on tp_btf (0 while an accepted child's is pending, 6.1, or in
 * the aggregate mode, which keeps none: then the address decides); the
 * ports on the fallback, which has no cookie helper (a reused struct sock
 * almost always serves another port pair; when it does not, the state
 * continuity check in handle_state still sees the gap).
 */
static __always_inline bool same_socket(const struct sock_info *si, const struct transition *t,
					bool typed)
{
	if (typed)
		return !si->cookie || si->cookie == bpf_get_socket_cookie(t->sk);
	if (si->id_dport && t->dport && si->id_dport != t->dport)
		return false;
	return !si->id_sport || !t->sport || si->id_sport == t->sport;
}

/* An accepted child's entry: cloned from a SO_REUSEPORT listener's
 * storage, or a fresh one with the owner from the listener table. */
static __always_inline struct sock_info *child_entry(const struct transition *t, bool typed,
						     __u8 *flags, struct counters *c)
{
	*flags |= EV_BIRTH | EV_INHERITED;
	if (typed) {
		struct sock_info *st = bpf_sk_storage_get(&sock_infos, t->sk, 0, 0);
		if (st) {
			adopt_child(st, t->sk, typed, st->cookie, t->now);
			return st;
		}
	}
	struct sock_info *fresh = fresh_entry(t->slot);
	if (!fresh)
		return 0;
	__u64 listener_cookie = 0;
	struct listen_owner *o = listener_of(t, typed);
	if (o) {
		fresh->pid = o->pid;
		__builtin_memcpy(fresh->comm, o->comm, sizeof(fresh->comm));
		listener_cookie = o->cookie;
	} else {
		*flags &= ~EV_INHERITED;
	}
	adopt_child(fresh, t->sk, typed, listener_cookie, t->now);
	return new_entry(t, fresh, c);
}

/*
 * A socket found without an entry in mid-life; cookie: its cookie as it
 * was before this transition asked for one. Every socket the programs see
 * and every socket a walk passes is asked its cookie (the kernel assigns
 * one at the first request, and a new struct sock starts at 0), so a
 * socket with no cookie was seen by neither: its transitions since birth
 * went unseen (gap_lost). One with a cookie was seen (by these programs,
 * a walk, or another user of cookies): the full table reclaimed its
 * entry, or its birth was missed. Which, only the table's occupancy tells
 * (entries_in - entries_out, summed by user space): seen_first counts it,
 * seen_first_unseen what it would have lost since birth, and user space
 * reports a reclaimed socket while the table may have been full, else the
 * transitions (probe.Health). The histogram-only mode (--pid) takes no
 * cookies and the classic tracepoint may not, so neither can tell; nor can
 * anything before the start's walk is done (iter_seed: a socket older
 * than the tracer it has not reached yet): nothing is counted then, an
 * inferred loss being a lower bound, never more than was lost.
 */
static __always_inline void count_first_sight(const struct transition *t, bool typed,
					      __u64 cookie, struct counters *c)
{
	if (!typed || aggregate_only || iter_seed)
		return;
	__u32 n = unseen_since_birth(t->old);
	if (!cookie) {
		__sync_fetch_and_add(&c->gap_lost, n);
		return;
	}
	__sync_fetch_and_add(&c->seen_first, 1);
	__sync_fetch_and_add(&c->seen_first_unseen, n);
}

/*
 * Find or create the socket's entry. A birth always starts a fresh one;
 * an entry left by a closed socket at the same address (SI_CLOSED), or
 * one whose identity is another socket's (same_socket), is not this
 * socket's. A SO_REUSEPORT listener (tp_btf) gets socket storage, so
 * that its children are cloned with its owner. *missing: a socket first
 * seen mid-life (its birth not seen, its entry evicted, or the entry
 * found was another socket's).
 */
static __always_inline struct sock_info *sock_entry(const struct transition *t, bool typed,
						    __u8 *flags, bool *missing, struct counters *c)
{
	if (is_child_birth(t->old, t->new))
		return child_entry(t, typed, flags, c);
	__u64 key = (__u64)t->sk;
	/* Before same_socket or the fresh entry below ask for it. */
	__u64 cookie = typed ? KREAD(typed, t->sk, __sk_common.skc_cookie.counter) : 0;
	if (typed) {
		/* Storage exists only on SO_REUSEPORT listeners and their
		 * children; for any other socket this is one load. */
		struct sock_info *st = bpf_sk_storage_get(&sock_infos, t->sk, 0,
							  t->new == TCP_LISTEN && is_reuseport(t->sk, typed) ?
								  BPF_SK_STORAGE_GET_F_CREATE : 0);
		if (st) {
			if (!st->cookie && !aggregate_only)
				st->cookie = sock_cookie(t->sk, typed);
			if (t->old == TCP_CLOSE)
				*flags |= EV_BIRTH;
			return st;
		}
	}
	struct sock_info *si = t->old == TCP_CLOSE ? 0 : bpf_map_lookup_elem(&sock_table, &key);
	if (si && !(si->flags & SI_CLOSED) && same_socket(si, t, typed))
		return si;
	if (t->old == TCP_CLOSE) {
		*flags |= EV_BIRTH;
	} else {
		*missing = true; /* evicted from a full table, never seen, or reused */
		count_first_sight(t, typed, cookie, c);
	}
	struct sock_info *fresh = fresh_entry(t->slot);
	if (!fresh)
		return 0;
	if (!aggregate_only)
		fresh->cookie = sock_cookie(t->sk, typed);
	return new_entry(t, fresh, c);
}

/* A flag of sk_flags (enum sock_flags), read the way typed allows. */
static __always_inline bool sock_flag_set(struct sock *sk, bool typed, unsigned int bit)
{
	unsigned long flags = KREAD(typed, sk, __sk_common.skc_flags);
	return flags & (1UL << bit);
}

/*
 * An abortive close from FIN_WAIT2 (SO_LINGER 0, or close() with unread
 * data after shutdown()) happens in the owner's close(), before the socket
 * is orphaned and with no FIN from the peer; a graceful FIN_WAIT2->CLOSE
 * hands an orphan (SOCK_DEAD) or a socket that got the peer's FIN
 * (SOCK_DONE) to a timewait socket.
 */
static __always_inline bool abortive_fin_wait2(struct sock *sk, bool typed)
{
	return !sock_flag_set(sk, typed, bpf_core_enum_value(enum sock_flags, SOCK_DEAD)) &&
	       !sock_flag_set(sk, typed, bpf_core_enum_value(enum sock_flags, SOCK_DONE));
}

/* Which entries an abortive close's reset, sent right after the CLOSE,
 * will look for (maps.h). A socket an error ended (the peer's reset, a
 * timeout) sets sk_err before its CLOSE and sends no reset after it;
 * an abortive close sets sk_err only after the reset. */
static __always_inline bool reset_may_follow(const struct transition *t, bool typed)
{
	int old = t->old;
	struct sock *sk = t->sk; /* not t->sk inside a CO-RE read (tcptrace.bpf.c) */
	if (old == TCP_FIN_WAIT2 && !abortive_fin_wait2(sk, typed))
		return false;
	if (old != TCP_ESTABLISHED && old != TCP_CLOSE_WAIT && old != TCP_FIN_WAIT1 &&
	    old != TCP_SYN_RECV && old != TCP_FIN_WAIT2)
		return false;
	return KREAD(typed, sk, sk_err) == 0;
}

/*
 * After a transition is recorded: a listener's registration, and at
 * ->CLOSE the end of the entry (socket storage goes with the socket).
 */
static __always_inline void settle_entry(const struct transition *t, bool typed,
					 struct sock_info *si, struct counters *c)
{
	if (!si)
		return;
	struct listen_key k;
	if (t->new == TCP_LISTEN && !is_reuseport(t->sk, typed)) {
		listen_key_of(&k, t->netns, t->family, t->sport, t->sk, typed, false);
		/* Without storage (the fallback) a SO_REUSEPORT group shares the
		 * key: a second owner there makes it ambiguous. */
		register_listener(&k, si, !typed);
	}
	if (t->new != TCP_CLOSE)
		return;
	if (t->old == TCP_LISTEN) {
		listen_key_of(&k, t->netns, t->family, t->sport, t->sk, typed, false);
		struct listen_owner *o = bpf_map_lookup_elem(&listeners, &k);
		if (o && o->cookie == si->cookie) /* this listener's, not a newer one's */
			bpf_map_delete_elem(&listeners, &k);
	}
	__u64 key = (__u64)t->sk;
	if (reset_may_follow(t, typed))
		si->flags |= SI_CLOSED; /* si may be storage: then this is moot */
	else
		table_delete(key, c);
}

/* The socket's entry for the trouble counters (never created there). */
static __always_inline struct sock_info *find_entry(struct sock *sk, bool typed)
{
	if (typed) {
		struct sock_info *st = bpf_sk_storage_get(&sock_infos, sk, 0, 0);
		if (st)
			return st;
	}
	__u64 key = (__u64)sk;
	return bpf_map_lookup_elem(&sock_table, &key);
}

/*
 * Continuity: a socket leaves the state it was last seen entering, else
 * transitions in between were not seen. Counts the fewest possible in
 * gap_lost and returns EV_GAP: the stay since the last transition seen
 * spans the unseen states, so it is no stay of old's.
 */
static __always_inline __u8 check_continuity(const struct sock_info *si, int old,
					     struct counters *c)
{
	if (!si->last || si->last == old)
		return 0;
	__sync_fetch_and_add(&c->gap_lost, unseen_between(si->last, old));
	return EV_GAP;
}

/*
 * Advance a socket's entry to this transition: dwell in the old state (so
 * far, for a repeated set), new entry time, owner if this is the owner's
 * own syscall. Returns EV_*.
 */
static __always_inline __u8 advance(struct sock_info *si, int old, int new, __u64 now,
				    __u64 *dwell)
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
	si->last = new;
	if (!si->pid && in_owner_syscall(old, new)) {
		si->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(si->comm, sizeof(si->comm));
	}
	if (si->pid)
		flags |= EV_OWNER_KNOWN;
	if (is_handshake_end(old, new) && (si->flags & SI_ACCEPTED))
		flags |= EV_HANDSHAKE;
	return flags;
}

#endif /* TCPTRACE_SOCKETS_H */
