//go:build linux

package tracer

import (
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

func TestMain(m *testing.M) { nettest.Main(m) }
