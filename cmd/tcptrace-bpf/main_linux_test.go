//go:build linux

package main

import (
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// The end-to-end tests start peer processes from this test binary.
func TestMain(m *testing.M) { nettest.Main(m) }
