package pipeline

import "github.com/tcptrace-bpf/tcptrace-bpf/internal/cgroup"

// SetIdentities gives the tests' pipeline a cgroup cache over a /proc of
// their own.
func SetIdentities(r *Pipeline, c *cgroup.Cache) { r.idents = c }
