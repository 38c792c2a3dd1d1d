/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of the programs, with its key, its value, and where entries
 * are inserted and deleted. Sizes marked "set from Go" are changed by
 * internal/probe before load.
 */
#ifndef TCPTRACE_MAPS_H
#define TCPTRACE_MAPS_H

/*
 * events: the records (struct event), read by the Go loader. Size set from
 * Go (--ring-size).
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/*
 * sock_table: per-socket owner, state-entry time, cookie and trouble
 * counts, for every socket but those below. Key: socket address. Inserted
 * at a socket's birth (CLOSE->..., LISTEN->SYN_RECV), which overwrites
 * whatever a socket at the same address left if its CLOSE was lost, or at
 * its first transition seen, or by walk_sockets at start. Deleted at
 * ->CLOSE, except after the transitions an abortive close can follow
 * (the reset it sends next needs the cookie): those are marked SI_CLOSED
 * and deleted by the reset, or reclaimed by the LRU. Preallocated: no
 * allocation on the hot path (socket storage cost ~1 us to create, and
 * again to clone into every accepted child and to free). Full: the least
 * recently active entry goes, and that socket's next transitions have no
 * owner and dwell (counted in storage_fail). Size set from Go
 * (--max-conns). An entry is 256 bytes with the hash's own (184 of
 * sock_info, 128 of them the transitions conn_records holds): 67 MB at
 * the default 262,144. With conn_records an entry the LRU reclaims takes
 * the transitions it held with it, in a number no one knows: the socket's
 * next transition finds no entry, and the socket is counted (seen_first,
 * reported reclaimed while the table may be full: sockets.h,
 * count_first_sight). Inserts and deletes are counted (entries_in,
 * entries_out) so that user space knows the occupancy.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct sock_info);
} sock_table SEC(".maps");

/*
 * sock_infos: socket storage, only for SO_REUSEPORT listeners (tp_btf):
 * the one case where a listener's port does not tell which process owns
 * it. BPF_F_CLONE: each child accepted from such a listener is cloned
 * from it with the entry, and keeps it for its life (the cookie in the
 * entry tells the two apart). Created at ->LISTEN or by walk_sockets;
 * freed by the kernel with the socket.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_info);
} sock_infos SEC(".maps");

/*
 * listeners: who owns the listeners that are not SO_REUSEPORT (all of them
 * in the tracepoint mode), so that an accepted child gets its owner by its
 * local address and port. Key: namespace, family, port and address (the
 * wildcard address for a listener on all addresses). Inserted at ->LISTEN
 * or by walk_sockets, deleted at LISTEN->CLOSE. Two owners on one key
 * (SO_REUSEPORT in the tracepoint mode) make it ambiguous: its children
 * then get no owner rather than a wrong one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct listen_key);
	__type(value, struct listen_owner);
} listeners SEC(".maps");

/*
 * hist_slots: the per-socket state of the histogram-only mode (--emit
 * histograms, no --pid) on tp_btf: dwell times need only when each socket
 * entered its state. A table indexed by socket cookie: a socket lives in
 * its own slot (cookie & hist_slot_mask) or, when a long-lived socket
 * still holds that one, in the slot half the table away (hist.h). The
 * size is a power of two of at least twice --max-conns, set from Go, so
 * with --max-conns sockets alive it is at most half full. A socket whose
 * two slots are both held at its birth takes its own slot from the older
 * socket there, whose next transition then finds another cookie: its
 * dwell is unknown and counted in storage_fail, as an LRU eviction would
 * be. No insert, no delete, no lock: a birth writes the slot, ->CLOSE
 * frees it (cookie 0). 1 entry in the other modes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist_slot);
} hist_slots SEC(".maps");

/*
 * hist_socks: the same state for the tracepoint fallback, which cannot
 * ask the kernel for a socket's cookie. Key: socket address. Inserted at
 * a socket's first transition, updated at each, deleted at ->CLOSE; a
 * birth overwrites. LRU and preallocated, like sock_table. Size set from
 * Go (--max-conns); 1 entry in the other modes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct hist_sock);
} hist_socks SEC(".maps");

/*
 * fresh_entries: a struct sock_info being made, per CPU (too large for
 * the stack since it holds the transitions of conn_records): slot 0 for
 * the primary program and the fallback, 1 for the backup (which runs
 * nested in the primary on its CPU), 2 for the socket walker (which
 * softirq programs may interrupt).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct sock_info);
} fresh_entries SEC(".maps");

/*
 * health: per-CPU health counters and the primary's busy flag (key 0).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} health SEC(".maps");

/*
 * seed_inodes: socket inode -> owner, filled by user space from /proc
 * before walk_sockets first runs, then emptied. Size set from Go.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct sock_info);
} seed_inodes SEC(".maps");

/*
 * dwell_hists: per-CPU dwell-time histograms, key = the state left. Filled
 * only in aggregate mode; read and summed over CPUs by user space.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_STATES);
	__type(key, __u32);
	__type(value, struct state_hist);
} dwell_hists SEC(".maps");

/*
 * synack_first: when a handshake's first SYN-ACK was sent (tcp_clock_us,
 * CLOCK_MONOTONIC in us), for handshakes whose SYN-ACK was retransmitted.
 * Key: the 4-tuple. Inserted at the first tcp_retransmit_synack, deleted
 * at the child's SYN_RECV->ESTABLISHED; LRU, so handshakes that never
 * complete age out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct hs_key);
	__type(value, __u64);
} synack_first SEC(".maps");

/*
 * listen_socks: each listener's socket address and what the tracer
 * counts on it (struct listen_sock), by its listening address (struct
 * listen_key, as listeners). The socket address is what lets an
 * accepted child's SYN_RECV->ESTABLISHED find the request it came from
 * (the tail of the listener's accept queue) and tell a SYN cookie's
 * handshake (record.h). Inserted at ->LISTEN and by walk_sockets' first
 * walk, deleted at LISTEN->CLOSE. SO_REUSEPORT listeners share a key: the
 * latest holds it, and the others' children are checked against it (and
 * found not to match: their handshake is then unknown, never a cookie's
 * offset). Full: a new listener is not tracked (same outcome).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct listen_key);
	__type(value, struct listen_sock);
} listen_socks SEC(".maps");

/*
 * walk_groups: the sockets a periodic walk counts instead of writing
 * (struct walk_group_key, walker.h). Written only by walk_sockets, read
 * by user space after each walk; an entry whose gen is not the current
 * walk's is reset by the walk that finds its key again, or deleted by
 * user space. Full: the socket is written one by one (nothing is lost).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct walk_group_key);
	__type(value, struct walk_group);
} walk_groups SEC(".maps");

#endif /* TCPTRACE_MAPS_H */
