/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared by the BPF programs and the Go loader. bpf2go generates the
 * Go twins (tcptraceEvent, tcptraceCounters) from these definitions; a
 * root-free Go test pins their sizes, so a change here that is not
 * regenerated fails the tests.
 */
#ifndef TCPTRACE_H
#define TCPTRACE_H

/*
 * The constants of struct event, as enums so that bpf2go generates their
 * Go twins; internal/probe's layout test pins internal/event's constants
 * to them.
 */

/* Event flags (struct event.flags). */
enum event_flags {
	EV_DWELL_KNOWN  = 0x01, /* dwell_ns is the time spent in oldstate */
	EV_OWNER_KNOWN  = 0x02, /* pid/comm are the socket's owner */
	EV_BIRTH        = 0x04, /* first transition of a socket born while tracing */
	EV_INHERITED    = 0x08, /* owner came from the listener (accepted child) */
	EV_GAP          = 0x10, /* the transition into oldstate was not seen (lost): dwell_ns
				 * runs from the last transition seen, across the unseen
				 * state(s), so it is no stay of oldstate's */
	EV_COOKIE_SYNTH = 0x20, /* tracepoint fallback: cookie assigned by the tracer */
	EV_CLOSE_INFO   = 0x40, /* the close fields (bytes, srtt, err, tw) are filled */
	EV_HANDSHAKE    = 0x80, /* SYN_RECV->ESTABLISHED of an accepted socket: its SYN_RECV
				 * stay is the server-side handshake (handshake_us; 0 =
				 * unknown), not the full socket's dwell */
};

/* struct event.kind */
enum event_kind {
	KIND_TRANSITION  = 0, /* a state transition */
	KIND_CONN        = 2, /* a connection's transitions, held in the kernel and sent
			       * together (struct conn_record: the record modes without
			       * transitions): at its CLOSE, when its entry's are full,
			       * and when a walk flushes them */
	KIND_RESET_AFTER = 1, /* the socket sent a reset right after its ->CLOSE (abortive
			       * close: SO_LINGER 0, close() with unread data); cookie,
			       * ts, netns, family and rst only */
};

/* struct event.rst */
enum event_rst {
	RST_SENT     = 0x01,
	RST_RECEIVED = 0x02,
};

/* struct event.tw: what the kernel left behind at ->CLOSE (inferred) */
enum event_tw {
	TW_NONE      = 0,
	TW_TIME_WAIT = 1, /* a timewait socket in TIME_WAIT */
	TW_FIN_WAIT2 = 2, /* a timewait socket in its FIN_WAIT2 substate (orphan) */
};

/* struct sock_snap.age_src: where a socket's age in its state comes from
 * when the tracer did not see it enter it (internal/event.AgeSource). */
enum age_source {
	AGE_TRACED        = 0, /* not from a walk: the transition was seen */
	AGE_FIRST_SEEN    = 1, /* nothing better: from the walk that saw it */
	AGE_RCV_TSTAMP    = 2, /* tcp_sock.rcv_tstamp: the last ACK received */
	AGE_RETRANS_STAMP = 3, /* SYN_SENT: the first SYN (retrans_stamp) */
	AGE_SNT_SYNACK    = 4, /* request socket: the first SYN-ACK */
	AGE_TW_TIMER      = 5, /* timewait socket: TIME_WAIT's timer */
};

/*
 * One TCP state transition, as the kernel reported it. u64 fields first,
 * then the 16-byte address arrays, then the small fields; 144 bytes, no
 * implicit padding (netns_cookie came later, at the end).
 */
struct event {
	__u64 ts_ns;    /* bpf_ktime_get_ns() at the transition (CLOCK_MONOTONIC) */
	__u64 cookie;   /* socket cookie: stable id of the socket for its lifetime */
	__u64 dwell_ns; /* time spent in oldstate, valid with EV_DWELL_KNOWN */
	__u8 saddr[16]; /* local address; IPv4 in the first 4 bytes */
	__u8 daddr[16]; /* remote address */
	__u32 netns;    /* network namespace inode */
	__u32 pid;      /* owner's tgid, valid with EV_OWNER_KNOWN */
	__u16 sport;    /* local port, host order (0 before connect() picks one) */
	__u16 dport;    /* remote port, host order */
	__u8 family;    /* AF_INET (2) or AF_INET6 (10) */
	__u8 oldstate;  /* kernel TCP state numbers: TCP_ESTABLISHED = 1 ... */
	__u8 newstate;
	__u8 flags;     /* EV_* */
	char comm[16];  /* owner's command, valid with EV_OWNER_KNOWN */

	/* Why and how it ended. retrans, syn_retrans and rst accumulate over
	 * the socket's life and are sent with every transition; the rest is
	 * read from the socket at ->CLOSE (EV_CLOSE_INFO), and srtt_us and
	 * total_retrans also at SYN_RECV->ESTABLISHED (the server's SYN-ACK
	 * round trip and SYN-ACK retransmits). */
	__u64 bytes_acked;
	__u64 bytes_received;
	__u32 srtt_us;
	__u32 total_retrans;
	__u16 retrans;     /* tcp_retransmit_skb seen outside SYN_SENT; on a
			    * listener: SYN-ACK retransmits */
	__u16 err;         /* sk->sk_err at ->CLOSE: ECONNREFUSED, ... */
	__u8 syn_retrans;  /* tcp_retransmit_skb seen in SYN_SENT */
	__u8 rst;          /* RST_* */
	__u8 tw;           /* TW_* */
	__u8 kind;         /* KIND_* */
	/* SYN_RECV->ESTABLISHED of an accepted socket: the server-side
	 * handshake, first SYN-ACK sent to final ACK (see handshake_ns);
	 * 0 when unknown or on other transitions. */
	__u32 handshake_us;
	__u32 ifindex;       /* sk_bound_dev_if: the interface the socket is bound to (the
			      * scope of an IPv6 link-local address, SO_BINDTODEVICE), in
			      * its namespace; 0: none. ss shows it as %ifname */
	__u64 netns_cookie;  /* the namespace's net_cookie: unique for the host's uptime, where
			      * the inode (netns) is reused; 0: unknown (see netns_cookie_of) */
	__u8 syncookie; /* 1 at SYN_RECV->ESTABLISHED: the handshake was completed by
			 * a SYN cookie (handshake_us is then 0: the kernel kept no
			 * time of its SYN-ACK) */
	__u8 _pad2[7];
};

/*
 * Per-CPU health counters, one entry (key 0) in a PERCPU_ARRAY. User space
 * sums the CPUs.
 */
struct counters {
	__u64 busy;          /* primary program running on this CPU (not a counter) */
	__u64 rescued;       /* events the backup program recorded for the primary */
	__u64 ringbuf_drops; /* bpf_ringbuf_reserve failed: ring full */
	__u64 storage_fail;  /* no per-socket storage could be had: dwell/owner unknown */
	__u64 filtered;      /* TCP transitions dropped by the user's filters */
	__u64 aggregated;    /* transitions counted into dwell_hists, not sent */
	__u64 submitted;     /* records submitted to the ring (and paces its fill checks) */
	__u64 synack_late;   /* SYN-ACKs retransmitted for a handshake older than the
			      * SYN_RECV stuck limit (half-open pile-up) */
	__u64 gap_lost;      /* transitions inferred lost from a socket's states: the
			      * fewest the kernel must have made between the last state
			      * seen and the old state of the next transition seen (or,
			      * for a socket first seen mid-life, since its birth) */
	__u64 reused_lost;   /* entries found for another socket (the kernel reused the
			      * struct sock after a CLOSE that was not seen): one
			      * transition, that CLOSE, inferred lost for each */
	__u64 seen_first;    /* sockets found without an entry in mid-life that had a
			      * cookie (so something had seen them): with the table
			      * full, a reclaimed entry; else a birth not seen */
	__u64 seen_first_unseen; /* their transitions since birth (sockets.h:
				  * count_first_sight), inferred lost only while the
				  * table cannot have been full */
	__u64 entries_in;    /* sock_table inserts, and */
	__u64 entries_out;   /* deletes: summed over CPUs, its occupancy (user space
			      * tells from it whether the LRU may have reclaimed) */
	__u64 held_lost;     /* transitions held for a connection record (conn.h) and
			      * never sent: the entry was replaced by another socket's
			      * (exact: they were seen, not inferred) */
};

/*
 * Dwell-time histogram of one state, aggregated in the kernel when only
 * histograms are wanted (no record crosses to user space). Log-linear
 * buckets, the same as internal/histogram: values below 64 ns exactly, then
 * 32 linear sub-buckets per power of two.
 */
#define HIST_SUB_BITS 5
#define HIST_EXACT_BELOW 64
#define HIST_BUCKETS 1920 /* used */
#define HIST_SLOTS 2048   /* allocated: a power of two, so a mask bounds the index */
#define NUM_STATES 13

/*
 * Why a stay that ended could not be timed (struct state_hist.untimed):
 * the same rule as event.Event.Untimed in user space.
 */
enum untimed_reason {
	UNTIMED_NO_START  = 0, /* the socket had no entry when it left the state: older
				* than the tracer, or evicted from the full table
				* (--max-conns); for an accepted socket's handshake: the
				* first SYN-ACK's time is unknown */
	UNTIMED_GAP       = 1, /* the stay's start or end was not seen (a transition
				* skipped by the kernel, or filtered): its time would
				* cover two states */
	UNTIMED_SYNCOOKIE = 2, /* a handshake completed by a SYN cookie: the kernel kept
				* no time of its SYN-ACK */
	UNTIMED_REASONS   = 3,
};

struct state_hist {
	__u64 count;
	__u64 sum;
	__u64 min; /* valid when count > 0 */
	__u64 max;
	__u64 untimed[UNTIMED_REASONS]; /* stays that ended untimed, by enum untimed_reason */
	__u64 evicted; /* histogram-only mode: sockets in this state evicted from the full
			* slot table; their stay ends untimed (UNTIMED_NO_START) */
	__u64 buckets[HIST_SLOTS];
};

/* sock_info.flags */
#define SI_ACCEPTED 0x01 /* an accepted child (born LISTEN->SYN_RECV) */
#define SI_CLOSED   0x02 /* reached CLOSE; kept only for the reset an abortive close sends next */
#define SI_LIVE     0x04 /* conn_records: a walk sent what it held; its transitions go out
			  * as they come from then on (the connection table knows the
			  * socket, and must not think it still in the state it was sent in) */

/*
 * A socket's transitions not sent yet (conn_records: the record modes
 * without transitions keep them in the socket's entry and send them in
 * one struct conn_record). Six: a whole connection's five (client:
 * CLOSE->SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->CLOSE; server:
 * LISTEN->SYN_RECV->...->LAST_ACK->CLOSE) and a repeated set.
 */
#define CONN_SPANS 6

struct held {
	__u64 ts[CONN_SPANS];    /* when */
	__u64 dwell[CONN_SPANS]; /* time in old, with EV_DWELL_KNOWN in flags */
	__u8 old[CONN_SPANS];
	__u8 new[CONN_SPANS];
	__u8 flags[CONN_SPANS];  /* EV_* of each transition */
	__u8 n;                  /* transitions held */
	__u8 hs_syncookie;       /* the handshake's (EV_HANDSHAKE), as struct event's */
	__u32 hs_us;
	__u32 hs_retrans;
	__u32 _pad;
};

/* Owner of a socket, when it entered its current state, and what went
 * wrong so far. */
struct sock_info {
	__u64 cookie; /* socket this entry was written for; differs after a clone */
	__u64 ts_ns;  /* when the socket entered its current state; 0 = unknown */
	__u32 pid;    /* owner tgid; 0 = unknown */
	__u16 retrans;     /* as struct event */
	__u8 syn_retrans;
	__u8 rst;
	__u8 flags;        /* SI_* */
	__u8 last;         /* the state the last transition seen entered; 0: unknown */
	__u8 _pad;
	__u8 walked;       /* walk_gen of the last socket walk that found the socket */
	/* The classic tracepoint fallback's identity check (it has no cookie
	 * helper): the socket's ports, 0 until known. */
	__u16 id_sport;
	__u16 id_dport;
	char comm[16];
	/* An accepted child's LISTEN->SYN_RECV, not sent yet (0: none): the
	 * child's cookie is not its own until after that transition on some
	 * kernels, so the record goes out with the child's next one. */
	__u64 birth_ts;
	struct held held; /* conn_records only */
};

/* One connection's held transitions (KIND_CONN): the socket's fields as
 * at its last one (addresses, owner, how it ended at a CLOSE), then the
 * transitions, oldest first. */
struct conn_record {
	struct event e;
	struct held held;
};

/*
 * One socket as the TCP iterator sees it (live state counts, stuck
 * detection of sockets older than the tracer). Full sockets carry their
 * cookie and, when known, their owner; request (NEW_SYN_RECV) and timewait
 * sockets have cookie 0.
 */
struct sock_snap {
	__u64 cookie;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u32 pid;
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 state;
	__u8 owner_known;
	__u8 _pad;
	char comm[16];
	/* Listeners only: the accept queue (connections the kernel completed
	 * that the application has not accept()ed yet) and its limit, and
	 * the SYN-ACK retransmits counted on the listener. */
	__u32 ack_backlog;
	__u32 max_ack_backlog;
	__u32 retrans;
	__u32 ifindex; /* as struct event */
	/* Request (NEW_SYN_RECV) sockets: when their first SYN-ACK left
	 * (CLOCK_MONOTONIC ns); 0 for other sockets. */
	__u64 synack_ns;
	/* Full sockets: the inode of the socket file (0: none, e.g. an
	 * accepted socket not yet accept()ed): who holds it, from /proc. */
	__u64 ino;
	/* Listeners only: the kernel's drop count on the socket (sk_drops,
	 * what `ss -m` shows as d: SYNs and final ACKs dropped at a full
	 * queue, since listen()); connections accepted through a SYN cookie
	 * (counted by the tracer); and the kernel's time of the listener's
	 * latest SYN cookie (jiffies, 32 bits; 0: none yet), which moves at
	 * most once a second while it sends them. */
	__u32 drops;
	__u32 syncookies;
	__u32 syncookie_stamp;
	/* 0: this record is one socket. Else it stands for this many sockets
	 * of a group the walk counted in the kernel instead of writing them
	 * one by one (struct walk_group_key names what they share); user
	 * space writes such records from walk_groups after the walk. */
	__u32 count;
	__u64 netns_cookie; /* as struct event */
	/* Full sockets: the kernel's figures now, for progress records. */
	__u64 bytes_acked;
	__u64 bytes_received;
	/* The kernel's lower bound of the time the socket has been in its
	 * state (ns), from the field age_src names (enum age_source;
	 * AGE_FIRST_SEEN: the kernel holds nothing, 0). */
	__u64 age_ns;
	__u32 srtt_us;
	__u32 total_retrans;
	__u8 age_src;
	__u8 _pad4[7];
};

/*
 * A group of sockets one periodic walk counts in the kernel instead of
 * writing each (walk_detail leaves their state out): every socket of a
 * namespace in one state; TIME_WAIT also by destination (addr, port,
 * ifindex: the pile watch's key); request sockets (NEW_SYN_RECV) by
 * their listener's port and whether they are past group_past_ns (the
 * half-open watch's limit).
 */
struct walk_group_key {
	__u64 netns_cookie;
	__u32 netns;
	__u32 ifindex;
	__u8 addr[16];
	__u16 port;
	__u8 state;
	__u8 family;
	__u8 past;
	__u8 _pad[3];
};

/* A group's count in the walk numbered gen (group_gen): an entry left
 * from an older walk counts nothing. oldest/age_src: the largest age
 * (struct sock_snap.age_ns) among its sockets. */
struct walk_group {
	__u32 gen;
	__u32 count;
	__u64 oldest;
	__u8 age_src;
	__u8 _pad[7];
};

/* A listening address: namespace, family, port, address (zero: any). */
struct listen_key {
	__u32 netns;
	__u16 port;
	__u8 family;
	__u8 _pad;
	__u8 addr[16];
};

/* A listener's socket (its address, to read it from an accepted child's
 * path) and what the tracer counted on it. */
struct listen_sock {
	__u64 sk;
	__u64 syncookies; /* connections it accepted through a SYN cookie */
};

/* Who owns a listener; ambiguous: two owners on one key. */
struct listen_owner {
	__u64 cookie; /* the listener's: on some kernels its children carry it at birth */
	__u32 pid;
	__u32 ambiguous;
	char comm[16];
};

/* One transition as an entry point read it (the tp_btf arguments or the
 * classic tracepoint's record). */
struct transition {
	struct sock *sk;
	__u64 now;
	__u32 netns;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u8 slot; /* this program's slot of fresh_entries (maps.h) */
	__u8 _pad;
	int old;
	int new;
};

/* The histogram-only mode's per-socket state. */
struct hist_sock {
	__u64 ts_ns;
	__u32 flags; /* SI_* */
	__u8 last;   /* the state entered at ts_ns (as sock_info.last): a transition
		      * out of another one means transitions were missed in between */
	__u8 _pad[3];
};

/* A slot of hist_slots: the socket it belongs to (cookie, 0: free) and its
 * state. */
struct hist_slot {
	__u64 cookie;
	struct hist_sock s;
};

/* A handshake in progress, by its 4-tuple as the server sees it. */
struct hs_key {
	__u8 saddr[16]; /* local (server) address; IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u32 netns;
	__u16 sport; /* local port, host order */
	__u16 dport;
};

#endif /* TCPTRACE_H */
