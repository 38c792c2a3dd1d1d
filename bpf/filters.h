/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The user's filters, applied first: --port, --netns, -4/-6, --cgroup
 * (--pid needs the owner, so it is applied once the socket's entry is
 * found). Their values are const volatile globals set from Go before load,
 * so a filter that is off costs nothing.
 */
#ifndef TCPTRACE_FILTERS_H
#define TCPTRACE_FILTERS_H

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

/* Runs only with -4/-6, so reading both v6 addresses costs nothing otherwise. */
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

static __always_inline bool is_listener_transition(int old, int new)
{
	return new == TCP_LISTEN || old == TCP_LISTEN;
}

/*
 * Whether a transition passes the filters. A listener that -4/-6 filters
 * out may still accept sockets that pass (a dual-stack [::] listener
 * accepts IPv4 clients as v4-mapped sockets): it passes *quiet, so its
 * entry (the owner its children inherit) is kept and nothing is sent.
 */
static __always_inline bool passes_filters(const struct transition *t, bool *quiet)
{
	*quiet = false;
	if (!ports_match(t->sport, t->dport) || (filter_netns && t->netns != filter_netns) ||
	    !cgroup_match(t->sk))
		return false;
	if (family_match(t->family, t->sk))
		return true;
	*quiet = true;
	return is_listener_transition(t->old, t->new);
}

#endif /* TCPTRACE_FILTERS_H */
