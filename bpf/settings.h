/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the programs are told before load: the user's filters and the
 * tuning, const volatile globals that Go sets in .rodata (frozen: a
 * filter that is off is a branch the verifier removes), and the few
 * constants every header uses.
 */
#ifndef TCPTRACE_SETTINGS_H
#define TCPTRACE_SETTINGS_H

#define AF_INET 2
#define AF_INET6 10

/* Filters and tuning, set from Go before load (frozen .rodata). */
const volatile __u8 filter_family = 0;   /* 0: any, 4: IPv4 (and v4-mapped), 6: IPv6 */
const volatile __u8 filter_ports = 0;    /* 1: only sockets with a port in port_bitmap */
const volatile __u32 filter_netns = 0;   /* 0: any, else this netns inode */
const volatile __u32 filter_pid = 0;     /* 0: any, else this owner tgid */
const volatile __u64 wakeup_bytes = 0;   /* 0: kernel default wakeups; else wake the
					  * reader only once this many bytes wait */
const volatile __u8 port_bitmap[8192] = {}; /* bit p set: port p selected */
const volatile __u8 aggregate_only = 0;  /* 1: fill dwell_hists, send no records */
const volatile __u64 filter_cgroup = 0;  /* 0: any, else this cgroup v2 id or below it */
const volatile __u32 filter_cgroup_level = 0; /* that cgroup's depth in the hierarchy */
const volatile __u64 min_dwell_ns = 0;   /* send only transitions out of a state held this long */
const volatile __u64 syn_recv_stuck_ns = 0; /* --stuck SYN_RECV limit; 0: not watched */
const volatile __u32 hist_slot_mask = 0; /* hist_slots' size - 1 (a power of two) */
const volatile __u8 conn_records = 0;    /* 1: a connection's transitions are held in its
					  * entry and sent together (KIND_CONN), histograms
					  * in the kernel (conn.h) */

/* 1 until the start's walk is done: it creates entries and seeds owners
 * (walker.h), later walks only read; a socket first seen meanwhile may be
 * one the walk has not reached yet (sockets.h: count_first_sight). */
volatile __u8 iter_seed = 1;

/* Tracer-assigned ids for the tracepoint fallback: bit 52 set, so they
 * stay exact in any JSON reader that uses doubles (below 2^53) and clear
 * of the kernel's cookies, a counter from 1 that never gets near 2^52. */
#define SYNTH_COOKIE_BASE (1ULL << 52)
__u64 next_synth_cookie = 0;

/* The histogram-only mode needs no owners (without --pid). */
#define HIST_ONLY (aggregate_only && !filter_pid)

#endif /* TCPTRACE_SETTINGS_H */
