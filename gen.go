// Package tcptracebpf is the root of tcptrace-bpf: the BPF programs live in
// bpf/, the loader and everything after it in internal/, the CLI in
// cmd/tcptrace-bpf. This file holds the one go:generate line that compiles
// bpf/tcptrace.bpf.c into the committed internal/probe/tcptrace_bpfel.{go,o}
// (run `make generate`; it needs clang-14 and nothing else: -nostdinc keeps
// every header inside bpf/, see bpf/include/README.md).
package tcptracebpf

//go:generate go tool bpf2go -cc clang-14 -target bpfel -go-package probe -output-dir internal/probe -type event -type counters -type sock_info -type state_hist -type hist_index_args -type retrans_test_args -type hist_stay_test_args -type entry_test_args -type sock_snap -type conn_record -type event_flags -type event_kind -type event_rst -type event_tw -type untimed_reason -type age_source tcptrace bpf/tcptrace.bpf.c -- -nostdinc -I bpf/include -I bpf -Wall -Werror
