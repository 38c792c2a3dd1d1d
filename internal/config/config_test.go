package config

import (
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// The start-up line names every filter in force.
func TestDescribeNamesEveryFilter(t *testing.T) {
	c := Defaults()
	c.Ports = []uint16{80, 443}
	c.Family = 6
	c.PID = 42
	c.Netns = 4026531840
	c.Cgroup = "/system.slice/nginx.service"
	c.States[event.CloseWait] = true
	c.States[event.LastAck] = true
	c.MinDwell = 2 * time.Second
	c.Interval = 10 * time.Second
	got := c.Describe()
	for _, want := range []string{"port 80,443", "IPv6", "pid 42", "netns 4026531840", "cgroup /system.slice/nginx.service",
		"state CLOSE_WAIT,LAST_ACK", "min-dwell 2s", "emit connections,histograms,states,stuck", "every 10s", "stuck SYN_SENT=3s"} {
		if !strings.Contains(got, want) {
			t.Errorf("start-up line %q lacks %q", got, want)
		}
	}
	if d := Defaults(); !strings.Contains(d.Describe(), "filters: none;") {
		t.Errorf("no filters: %q", d.Describe())
	}
}

// --emit histograms is the kernel-aggregation mode: it keeps no
// connection table, so no stuck watch; stuck in --emit or --metrics
// bring the records back to user space.
func TestAggregateMode(t *testing.T) {
	for _, tc := range []struct {
		emit    Emit
		metrics string
		want    bool
	}{
		{EmitHistograms, "", true},
		{EmitHistograms | EmitStates, "", true},
		{EmitHistograms | EmitStuck, "", false},
		{EmitHistograms, ":9917", false},
		{EmitAll, "", false},
		{EmitStates, "", true},
	} {
		c := Defaults()
		c.Emit, c.Metrics = tc.emit, tc.metrics
		if got := c.Aggregate(); got != tc.want {
			t.Errorf("--emit %s --metrics %q: aggregate %v, want %v", tc.emit, tc.metrics, got, tc.want)
		}
		if tc.want && !strings.Contains(c.Describe(), "stuck off") {
			t.Errorf("--emit %s: the start-up line %q must say the stuck watch is off", tc.emit, c.Describe())
		}
	}
}

func TestParsePiles(t *testing.T) {
	if p, err := ParsePiles("TIME_WAIT=5"); err != nil || p[event.TimeWait] != 5 {
		t.Errorf("%v %v", p, err)
	}
	if p, err := ParsePiles(DefaultPiles); err != nil || p[event.TimeWait] != 1000 {
		t.Errorf("default: %v %v", p, err)
	}
	for _, bad := range []string{"CLOSE_WAIT=5", "TIME_WAIT=0", "TIME_WAIT", "FOO=1"} {
		if _, err := ParsePiles(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Every filter makes the run filtered (its recursion losses are the
// host's); the defaults and options that select nothing do not.
func TestFiltered(t *testing.T) {
	if c := Defaults(); c.Filtered() {
		t.Error("the defaults are filtered")
	}
	for name, set := range map[string]func(*Config){
		"--port": func(c *Config) { c.Ports = []uint16{80} }, "-4": func(c *Config) { c.Family = 4 },
		"--pid": func(c *Config) { c.PID = 1 }, "--netns": func(c *Config) { c.Netns = 1 },
		"--cgroup": func(c *Config) { c.Cgroup = "/x" }, "--state": func(c *Config) { c.States[1] = true },
		"--min-dwell": func(c *Config) { c.MinDwell = 1 },
	} {
		c := Defaults()
		set(&c)
		if !c.Filtered() {
			t.Errorf("%s: not filtered", name)
		}
	}
}
