// Package nettest gives privileged tests a network namespace of their own
// and peer processes (a TCP server and client) to run inside it, so that
// real traffic never touches the host's interfaces and tests can run in
// parallel, each filtering on its own namespace (Linux only: nettest.go,
// peer.go). This file, on every system, is the one switch that turns a
// skipped test into a failure.
package nettest

// RequireEnv makes every skip for a missing privilege or tool a failure
// when set to 1 (CI sets it).
const RequireEnv = "TCPTRACE_REQUIRE_BPF"
