/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Trouble on the way, counted into the socket's entry (never created
 * here: a socket without one was born before the tracer or filtered):
 * retransmits, SYN-ACK retransmits, resets. Shared by the tp_btf programs
 * and their classic fallbacks (`typed`, see sockets.h).
 */
#ifndef TCPTRACE_TROUBLE_H
#define TCPTRACE_TROUBLE_H

/*
 * A retransmission, counted as the kernel counts it in total_retrans
 * (what `ss -ti` shows as retrans:N/TOTAL). The kernel adds to
 * total_retrans once __tcp_retransmit_skb has built the segment, before
 * handing it to IP: a retransmission that a local firewall or qdisc then
 * drops still counts. Before that point it can give up and send nothing
 * (the original still in the host queue, -EBUSY; the window, -EAGAIN; no
 * memory to split or unclone, -ENOMEM; a segment already acked, -EINVAL),
 * and does not count it. err: the tracepoint's result (kernels from 6.11
 * report every attempt with it; before, only those sent, err 0).
 *
 * SYN_SENT: a SYN sends one segment, so the SYN retransmits are the
 * socket's total_retrans itself, read here (exact by construction, also
 * on kernels that do not report failed attempts: the next reported one
 * carries the count). Elsewhere: one per attempt the kernel counted.
 */
#define EBUSY 16
#define EAGAIN 11
#define ENOMEM 12
#define EINVAL 22
static __always_inline bool retransmit_counted(int err)
{
	return err != -EBUSY && err != -EAGAIN && err != -ENOMEM && err != -EINVAL;
}

static __always_inline void count_retransmit(struct sock_info *si, int state, int err,
					     __u32 total_retrans)
{
	if (!si)
		return;
	if (state == TCP_SYN_SENT) {
		si->syn_retrans = total_retrans < 0xff ? total_retrans : 0xff;
	} else if (retransmit_counted(err) && si->retrans < 0xffff) {
		si->retrans++;
	}
}

/* tcp_sock.total_retrans of a full socket (0 for a mini socket). */
static __always_inline __u32 total_retrans_of(struct sock *sk, bool typed)
{
	if (typed) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		return tp ? tp->total_retrans : 0;
	}
	return BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);
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
static __always_inline void on_synack_retransmit(struct sock *sk, const struct request_sock *req,
						 bool typed)
{
	struct sock_info *si = find_entry(sk, typed);
	if (si && si->retrans < 0xffff)
		si->retrans++;
	remember_synack(BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum), req);
	note_late_synack(req);
}

/* A reset sent: counted; right after the socket's CLOSE (an abortive
 * close), also a record of its own (record.h). */
static __always_inline void on_reset_sent(struct sock *sk, int state, bool typed)
{
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return; /* mini sockets have no entry */
	struct sock_info *si = find_entry(sk, typed);
	if (!si)
		return;
	si->rst |= RST_SENT;
	if (state != TCP_CLOSE || !si->cookie || aggregate_only ||
	    (filter_pid && si->pid != filter_pid))
		return;
	emit_reset_after(si->cookie, si->rst, BPF_CORE_READ(sk, __sk_common.skc_family),
			 BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum));
	if (si->flags & SI_CLOSED) { /* its last use: see maps.h */
		__u32 zero = 0;
		table_delete((__u64)sk, bpf_map_lookup_elem(&health, &zero));
	}
}

#endif /* TCPTRACE_TROUBLE_H */
