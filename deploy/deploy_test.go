//go:build linux

// These tests check that each deployment file parses, grants exactly the
// capabilities the tracer keeps, and passes flags the binary accepts.

package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/metrics"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/privileges"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// acceptsFlags runs the built binary with args and --version: pflag
// parses every flag before acting, so an unknown flag or a bad value
// fails.
func acceptsFlags(t *testing.T, args []string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tcptrace-bpf")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/tcptrace-bpf").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	if out, err := exec.Command(bin, append(args, "--version")...).CombinedOutput(); err != nil {
		t.Errorf("the binary rejects %v: %v: %s", args, err, out)
	}
}

func TestSystemdUnit(t *testing.T) {
	keys := unitKeys(t, "systemd/tcptrace-bpf.service")
	caps := strings.Fields(keys["CapabilityBoundingSet"])
	if !slices.Equal(sorted(caps), sorted(privileges.KeptCapabilities())) {
		t.Errorf("CapabilityBoundingSet %v, want the tracer's %v", caps, privileges.KeptCapabilities())
	}
	for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ExecReload": "/bin/kill -HUP $MAINPID"} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	exec := strings.Fields(keys["ExecStart"])
	if len(exec) < 2 || exec[0] != "/usr/local/bin/tcptrace-bpf" {
		t.Fatalf("ExecStart %q", keys["ExecStart"])
	}
	acceptsFlags(t, exec[1:])
	if !strings.Contains(keys["ExecStart"], "--metrics 127.0.0.1:") {
		t.Error("the unit's metrics endpoint is not on loopback")
	}
}

func TestDaemonSet(t *testing.T) {
	var ds struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					HostPID    bool `yaml:"hostPID"`
					Containers []struct {
						Image           string   `yaml:"image"`
						Args            []string `yaml:"args"`
						SecurityContext struct {
							Privileged               bool `yaml:"privileged"`
							AllowPrivilegeEscalation bool `yaml:"allowPrivilegeEscalation"`
							Capabilities             struct {
								Add  []string `yaml:"add"`
								Drop []string `yaml:"drop"`
							} `yaml:"capabilities"`
						} `yaml:"securityContext"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "kubernetes/daemonset.yaml")), &ds); err != nil {
		t.Fatal(err)
	}
	pod := ds.Spec.Template.Spec
	if ds.Kind != "DaemonSet" || !pod.HostPID || len(pod.Containers) != 1 {
		t.Fatalf("kind %q hostPID %v containers %d", ds.Kind, pod.HostPID, len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc.Privileged || sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("securityContext %+v: want unprivileged, no escalation, drop ALL", sc)
	}
	var want []string
	for _, c := range privileges.KeptCapabilities() {
		want = append(want, strings.TrimPrefix(c, "CAP_"))
	}
	if !slices.Equal(sorted(sc.Capabilities.Add), sorted(want)) {
		t.Errorf("capabilities added %v, want the tracer's %v", sc.Capabilities.Add, want)
	}
	acceptsFlags(t, c.Args)
	if c.Image != imagePlaceholder {
		t.Errorf("image %q, want the placeholder %s the docs tell to set", c.Image, imagePlaceholder)
	}
}

// imagePlaceholder is the image name the DaemonSet, the Dockerfile's build
// command and the README use.
const imagePlaceholder = "REGISTRY/tcptrace-bpf:VERSION"

func TestDockerfile(t *testing.T) {
	df := read(t, "docker/Dockerfile")
	for _, want := range []string{"CGO_ENABLED=0 go build", "./cmd/tcptrace-bpf", `ENTRYPOINT ["/usr/local/bin/tcptrace-bpf"]`,
		"docker build -f deploy/docker/Dockerfile -t " + imagePlaceholder + " .", "docker push " + imagePlaceholder} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, c := range privileges.KeptCapabilities() {
		if !strings.Contains(df, "--cap-add="+strings.TrimPrefix(c, "CAP_")) {
			t.Errorf("the Dockerfile's docker run example does not add %s", c)
		}
	}
}

func TestLogPipelines(t *testing.T) {
	const path = "/var/log/tcptrace-bpf/trace.ndjson"
	for _, f := range []string{"logging/otelcol.yaml", "logging/vector.toml", "logging/fluent-bit.conf", "logging/promtail.yaml", "logging/logrotate", "systemd/tcptrace-bpf.service"} {
		if !strings.Contains(read(t, f), path) {
			t.Errorf("%s does not use %s, the path the systemd unit writes", f, path)
		}
	}
	var p struct {
		ScrapeConfigs []struct {
			PipelineStages []map[string]any `yaml:"pipeline_stages"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "logging/promtail.yaml")), &p); err != nil || len(p.ScrapeConfigs) != 1 {
		t.Fatalf("promtail.yaml: %v %+v", err, p)
	}
}

// These agents' configurations are checked for structure only: none of
// Vector, Fluent Bit, Promtail or Grafana Alloy is packaged for Debian 12,
// and these machines reach no other source of binaries, so neither the
// agents' own validators nor a run against a recording could be done.
// The OpenTelemetry Collector's (logging/otelcol.yaml) is run end to end
// instead: deploy/otelcol, make test-otel.
func TestLogShippers(t *testing.T) {
	sections := func(f string) map[string][]map[string]string {
		out := map[string][]map[string]string{}
		var cur map[string]string
		for _, line := range strings.Split(read(t, f), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "" || strings.HasPrefix(line, "#"):
			case strings.HasPrefix(line, "["):
				cur = map[string]string{}
				name := strings.Trim(line, "[]")
				out[name] = append(out[name], cur)
			case cur != nil:
				k, v, _ := strings.Cut(line, " ")
				cur[k] = strings.TrimSpace(v)
			}
		}
		return out
	}
	fb := sections("logging/fluent-bit.conf")
	parsersFile := fb["SERVICE"][0]["Parsers_File"]
	parsers := sections(filepath.Join("logging", parsersFile))
	if len(fb["INPUT"]) != 1 || len(parsers["PARSER"]) == 0 || parsers["PARSER"][0]["Name"] != fb["INPUT"][0]["Parser"] {
		t.Errorf("fluent-bit.conf's parser %q is not defined in the shipped %s", fb["INPUT"][0]["Parser"], parsersFile)
	}
	var outputs []string
	for _, o := range fb["OUTPUT"] {
		outputs = append(outputs, o["Name"])
	}
	if !slices.Equal(sorted(outputs), []string{"es", "loki"}) {
		t.Errorf("fluent-bit.conf outputs %v, want loki and es", outputs)
	}
	vec := read(t, "logging/vector.toml")
	for _, want := range []string{"[sinks.loki]\ntype = \"loki\"", "[sinks.elasticsearch]\ntype = \"elasticsearch\"", `inputs = ["tcptrace_parse"]`} {
		if !strings.Contains(vec, want) {
			t.Errorf("vector.toml lacks %q", want)
		}
	}
	if !strings.Contains(read(t, "logging/promtail.yaml"), "/loki/api/v1/push") {
		t.Error("promtail.yaml does not push to Loki")
	}
}

// unitKeys reads a systemd unit's Key=Value lines.
func unitKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	for _, line := range strings.Split(read(t, path), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	return keys
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Every metric the dashboard queries exists as soon as the tracer starts
// (its first socket walk sets the per-state gauges), and the default
// panels use classic buckets, which Prometheus 2.x stores without flags.
func TestGrafanaDashboard(t *testing.T) {
	classic, native, err := DashboardQueries("grafana/tcptrace-bpf.json", "1m")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	var counts [event.NumStates]uint64
	m.Sockets(&counts)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = len(f.GetMetric()) > 0
	}
	name := regexp.MustCompile(`tcptrace_[a-z_]+`)
	quantile := regexp.MustCompile(`histogram_quantile\([^,]+, sum by \([^)]*\ble\b[^)]*\) \(rate\(tcptrace_[a-z_]+_bucket\{`)
	for title, exprs := range classic {
		for _, e := range exprs {
			for _, n := range name.FindAllString(e, -1) {
				if !exported[strings.TrimSuffix(n, "_bucket")] {
					t.Errorf("panel %q queries %s, which has no series when the tracer starts", title, n)
				}
			}
			if strings.Contains(e, "histogram_quantile") && !quantile.MatchString(e) {
				t.Errorf("panel %q: %s is not a classic-bucket quantile (sum by (..., le) of rate(..._bucket))", title, e)
			}
		}
	}
	if len(classic) < 8 || len(native) < 2 {
		t.Errorf("%d classic and %d native-histogram panels", len(classic), len(native))
	}
}

// Each file that produces records says how much and how to bound or widen
// it, and the unit, the rotation and the sysusers file name one group.
func TestVolumeAndGroup(t *testing.T) {
	for _, f := range []string{"systemd/tcptrace-bpf.service", "kubernetes/daemonset.yaml", "docker/Dockerfile"} {
		s := read(t, f)
		for _, want := range []string{"870 bytes", "--port", "--emit all"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s does not state %q", f, want)
			}
		}
	}
	rot := read(t, "logging/logrotate")
	for _, want := range []string{"maxsize 100M", "create 0640 root tcptrace", "rotate 7"} {
		if !strings.Contains(rot, want) {
			t.Errorf("logging/logrotate lacks %q", want)
		}
	}
	if g := unitKeys(t, "systemd/tcptrace-bpf.service")["Group"]; g != "tcptrace" {
		t.Errorf("unit Group=%q", g)
	}
	if !strings.Contains(read(t, "systemd/tcptrace-bpf.sysusers"), "\ng tcptrace -\n") {
		t.Error("tcptrace-bpf.sysusers does not create the group tcptrace")
	}
}

// The alerting rules pass Prometheus's own checker, and every metric they
// query exists when the tracer starts.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("TCPTRACE_REQUIRE_BPF") != "" {
			t.Fatal("promtool not installed (Debian package prometheus)")
		}
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	if out, err := exec.Command(promtool, "check", "rules", "prometheus/alerts.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal([]byte(read(t, "prometheus/alerts.yml")), &rules); err != nil {
		t.Fatal(err)
	}
	families, err := metrics.New().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = len(f.GetMetric()) > 0
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, name := range regexp.MustCompile(`tcptrace_[a-z_]+`).FindAllString(r.Expr, -1) {
				if !exported[name] {
					t.Errorf("alert %s queries %s, which has no series when the tracer starts", r.Alert, name)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("%d alerts", n)
	}
}
