package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York wherever the tests run

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
)

// Every bad value gets one line naming the problem and exit code 2,
// before anything is loaded.
func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--port", "70000"}, "1 to 65535"},
		{[]string{"--port", "0"}, "1 to 65535"},
		{[]string{"--port", "80,http"}, `"http"`},
		{[]string{"--port", ""}, ""}, // empty: no filter, not an error; checked below
		{[]string{"--interval", "-1s"}, "--interval must not be negative"},
		{[]string{"--interval", "soon"}, "invalid argument"},
		{[]string{"--duration", "-5s"}, "--duration must not be negative"},
		{[]string{"--flush", "0s"}, "--flush"},
		{[]string{"--format", "xml"}, "ndjson or text"},
		{[]string{"--attach", "kprobe"}, "tp_btf or tracepoint"},
		{[]string{"--emit", "packets"}, "unknown --emit value"},
		{[]string{"-4", "-6"}, "exclude each other"},
		{[]string{"--ring-size", "3MiB"}, "power of two"},
		{[]string{"--ring-size", "lots"}, "invalid size"},
		{[]string{"--max-conns", "0"}, "--max-conns"},
		{[]string{"--pid", "-3"}, "invalid argument"},
		{[]string{"--netns", "x"}, "invalid --netns \"x\": an inode number"},
		{[]string{"--bogus"}, "unknown flag"},
		{[]string{"--stuck", "CLOSE_WAIT"}, "STATE=DURATION"},
		{[]string{"--state", "ESTABLISHED,OPEN"}, "unknown TCP state"},
		{[]string{"--min-dwell", "-1s"}, "--min-dwell must not be negative"},
		{[]string{"--stuck", "OPEN=3s"}, "unknown TCP state"},
		{[]string{"--stuck", "CLOSE_WAIT=-1s"}, "positive duration"},
		{[]string{"--stuck", "TIME_WAIT=1s"}, "cannot be watched"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--metrics", "nonsense"}, "give HOST:PORT"},
		{[]string{"--metrics", "127.0.0.1:99999"}, "not a number from 0 to 65535"},
		{[]string{"--metrics", "127.0.0.1:http"}, "not a number from 0 to 65535"},
		{[]string{"--metrics", "metrics.example:9917"}, "not an IP address"},
		{[]string{"--interval", "10ms"}, "at least 100ms"},
		{[]string{"--max-conns", "100000000"}, "--max-conns must be at most"},
		{[]string{"--verbose"}, "--verbose goes with --version only"},
		// Flag interactions refused rather than silently ignored.
		{[]string{"--emit", "none"}, "--emit none writes no records: give --metrics"},
		{[]string{"--emit", "transitions", "--interval", "10s"}, "add histograms or states to --emit"},
		{[]string{"--emit", "histograms", "--min-dwell", "1s"}, "add one to --emit"},
		{[]string{"--emit", "histograms", "--stuck", "CLOSE_WAIT=5s"}, "--emit histograms,stuck"},
		{[]string{"--utc"}, "--utc sets the zone of --format text"},
	}
	for _, tc := range tests {
		if tc.want == "" {
			continue
		}
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := tc.args
			if !slices.Contains(args, "--duration") {
				// Were the value let through, the run would end anyway.
				args = append(slices.Clone(args), "--duration", "1s")
			}
			code := run(args, &out, &errOut)
			msg := errOut.String()
			if code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, msg)
			}
			if strings.Contains(msg, "tracing") {
				t.Errorf("the tracer started: %q", msg)
			}
			if !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tcptrace-bpf: ") {
				t.Errorf("stderr %q: want one line starting tcptrace-bpf: and containing %q", msg, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout not empty: %q", out.String())
			}
		})
	}
}

// The flag combinations that are kept, and what they mean.
func TestFlagInteractionsAccepted(t *testing.T) {
	tests := []struct {
		args      []string
		emit      config.Emit
		describes string
	}{
		// The kernel-aggregation mode: no records, so no stuck watch,
		// and the start-up line says so.
		{[]string{"--emit", "histograms"}, config.EmitHistograms, "stuck off"},
		{[]string{"--emit", "histograms", "--stuck", "none"}, config.EmitHistograms, "stuck off"},
		{[]string{"--emit", "histograms,stuck", "--stuck", "CLOSE_WAIT=5s"}, config.EmitHistograms | config.EmitStuck, "stuck CLOSE_WAIT=5s"},
		// The pure exporter.
		{[]string{"--emit", "none", "--metrics", ":9917"}, 0, "emit none"},
		{[]string{"--emit", "none", "--metrics", ":9917", "--interval", "10s"}, 0, "every 10s"},
		{[]string{"--emit", "states", "--interval", "10s"}, config.EmitStates, "emit states"},
		{[]string{}, config.EmitDefault, "emit connections,histograms,states,stuck"},
	}
	for _, tc := range tests {
		cfg, done, err := parseFlags(tc.args, io.Discard)
		if err != nil || done {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if cfg.Emit != tc.emit {
			t.Errorf("%v: emit %v, want %v", tc.args, cfg.Emit, tc.emit)
		}
		if d := cfg.Describe(); !strings.Contains(d, tc.describes) {
			t.Errorf("%v: start-up line %q lacks %q", tc.args, d, tc.describes)
		}
	}
}

// analyze has no -o and report no --format: refused, not ignored.
func TestOfflineFlagsOfTheOtherCommand(t *testing.T) {
	for _, args := range [][]string{
		{"analyze", "-o", "x.html", "../../internal/output/testdata/records.ndjson.golden"},
		{"report", "--format", "ndjson", "-o", "x.html", "../../internal/output/testdata/records.ndjson.golden"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 || strings.Count(errOut.String(), "\n") != 1 || !strings.Contains(errOut.String(), "unknown") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line naming the unknown flag", args, code, errOut.String())
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "--port") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "tcptrace-bpf ") {
		t.Errorf("--version: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--version", "--verbose"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "BTF (/sys/kernel/btf/vmlinux): ") {
		t.Errorf("--version --verbose: exit %d, output %q", code, out.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4096": 4096, "16MiB": 16 << 20, "8M": 8 << 20, "1GiB": 1 << 30, "64k": 64 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestAnalyze(t *testing.T) {
	dir := t.TempDir()
	rec, err := os.ReadFile("../../internal/output/testdata/records.ndjson.golden")
	if err != nil {
		t.Fatal(err)
	}
	path := dir + "/rec.ndjson"
	os.WriteFile(path, append(rec, []byte("{truncated\n")...), 0o644)

	var out, errOut bytes.Buffer
	if code := run([]string{"analyze", "--port", "8080", path}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"CLOSE_WAIT  -> LAST_ACK", "CONN ", "Dwell time per state", "CLOSE_WAIT: count 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("analyze output lacks %q:\n%s", want, out.String())
		}
	}
	bad := fmt.Sprintf("line %d: not a record", bytes.Count(rec, []byte("\n"))+1)
	if !strings.Contains(errOut.String(), bad) || !strings.Contains(errOut.String(), "1 bad") {
		t.Errorf("stderr %q: want the bad line named and counted", errOut.String())
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"analyze", dir + "/missing.ndjson"}, &out, &errOut); code != 1 || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut.String())
	}
	for _, args := range [][]string{{"analyze", "--since", "yesterday"}, {"analyze", "--state", "OPEN"}, {"analyze", "a", "b"}, {"analyze", "--format", "xml"},
		{"analyze", "--format", "ndjson", "--utc", path}} {
		errOut.Reset()
		if code := run(args, &out, &errOut); code != 2 || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, errOut.String())
		}
	}
}

// analyze shows every time in one zone, as a live --format text run:
// local time by default, UTC with --utc, named by the ZONE line. (It
// once printed transitions and connections in local time and states,
// stuck and histogram times in UTC.)
func TestAnalyzeZone(t *testing.T) {
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	defer func(l *time.Location) { time.Local = l }(time.Local)
	time.Local = newYork
	clockTime := regexp.MustCompile(`\b(\d\d):\d\d:\d\d\b`)
	// The recording's times are 12:00 to 12:02 UTC: 07:00 to 07:02 in New York.
	for _, tc := range []struct {
		args       []string
		zone, hour string
	}{
		{nil, "ZONE local time: EST (UTC-05:00)\n", "07"},
		{[]string{"--utc"}, "ZONE UTC\n", "12"},
	} {
		var out, errOut bytes.Buffer
		args := append(append([]string{"analyze"}, tc.args...), "../../internal/output/testdata/records.ndjson.golden")
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut.String())
		}
		if !strings.HasPrefix(out.String(), tc.zone) || strings.Count(out.String(), "ZONE") != 1 {
			t.Errorf("%v: output does not start with %q (and name no other zone):\n%s", args, tc.zone, out.String())
		}
		times := clockTime.FindAllStringSubmatch(out.String(), -1)
		if len(times) < 20 {
			t.Fatalf("%v: %d times in the output, want every line's", args, len(times))
		}
		for _, m := range times {
			if m[1] != tc.hour {
				t.Errorf("%v: time %s not in the zone named (hour %s)", args, m[0], tc.hour)
			}
		}
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	out := dir + "/report.html"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"report", "-o", out, "../../internal/output/testdata/records.ndjson.golden"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	page, err := os.ReadFile(out)
	if err != nil || !bytes.Contains(page, []byte(`<svg class="chart waterfall"`)) {
		t.Fatalf("report: %v, %d bytes", err, len(page))
	}
	// The page holds what the recording holds: not world-readable.
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("report.html mode %v (%v): want no access for others", fi.Mode(), err)
	}
	// The listener records reach the page, though the replay skips them.
	if !bytes.Contains(page, []byte(`<svg class="chart listener"`)) {
		t.Error("report: no listener chart")
	}
	stderr.Reset()
	if code := run([]string{"report", "../../internal/output/testdata/records.ndjson.golden"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "-o report.html") {
		t.Errorf("report without -o: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"report", "-o", dir + "/no/such/dir/r.html", "../../internal/output/testdata/records.ndjson.golden"}, &stdout, &stderr); code != 1 || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("unwritable report: exit %d, %q", code, stderr.String())
	}
}

// analyze --format ndjson writes the selected records again: every
// transition, connection, states and stuck record of the recording comes
// back byte for byte, no field lost, but for its key: the replay is a run
// of its own, with its own run identity and records numbered from 1
// (docs/ndjson.md).
func TestAnalyzeNDJSONKeepsEveryField(t *testing.T) {
	const golden = "../../internal/output/testdata/records.ndjson.golden"
	rec, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"analyze", "--format", "ndjson", golden}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	key := regexp.MustCompile(`^(\{"type":"[a-z]+"),"run":"([0-9a-f]{32})","seq":([0-9]+)`)
	runs := map[string]bool{}
	got := map[string]bool{}
	for i, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		m := key.FindStringSubmatch(l)
		if m == nil || m[3] != fmt.Sprint(i+1) {
			t.Fatalf("written record %d has no run or not seq %d: %s", i+1, i+1, l)
		}
		runs[m[2]] = true
		got[key.ReplaceAllString(l, "$1")] = true
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(rec), "\n"), "\n") {
		m := key.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("recorded line without run and seq: %s", l)
		}
		if runs[m[2]] {
			t.Errorf("analyze wrote the recording's run %s", m[2])
		}
		for _, typ := range []string{"transition", "connection", "states", "stuck"} {
			if strings.HasPrefix(l, `{"type":"`+typ+`"`) && !got[key.ReplaceAllString(l, "$1")] {
				t.Errorf("recorded line not written back as it was:\n%s", l)
			}
		}
	}
	if len(runs) != 1 {
		t.Errorf("analyze wrote %d runs, want 1", len(runs))
	}
}

// top refuses, with one line and exit 2 before anything is loaded, a
// stdout that is no terminal, bad tracing flags, and the output flags
// that do not apply to a screen.
func TestTopRefuses(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"top"}, "stdout is not a terminal"},
		{[]string{"top", "--port", "0"}, "1 to 65535"},
		{[]string{"top", "--emit", "all"}, "--emit does not apply to top"},
		{[]string{"top", "-o", "trace.ndjson"}, "--output does not apply to top"},
		{[]string{"top", "--interval", "5s"}, "--interval does not apply to top"},
		{[]string{"top", "extra"}, "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append(slices.Clone(tc.args), "--duration", "1s"), &out, &errOut)
			msg := errOut.String()
			if code != 2 || !strings.HasPrefix(msg, "tcptrace-bpf top: ") || !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 {
				t.Errorf("exit %d, stderr %q: want 2 and one line containing %q", code, msg, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout not empty: %q", out.String())
			}
		})
	}
	var out bytes.Buffer
	if code := run([]string{"top", "--help"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "Usage: sudo tcptrace-bpf top") {
		t.Errorf("top --help: exit %d, %q", code, out.String())
	}
	// --help lists only the flags top takes.
	_, flags, _ := strings.Cut(out.String(), "\nFlags:\n")
	for _, refused := range []string{"--emit", "--format", "--output", "--interval", "--flush", "--utc", "--cgroup-fields"} {
		if regexp.MustCompile(`(?m)^\s+(-\w, )?` + refused + ` `).MatchString(flags) {
			t.Errorf("top --help lists %s, which top refuses:\n%s", refused, flags)
		}
	}
	for _, name := range []string{"--utc", "--cgroup-fields"} {
		var errOut bytes.Buffer
		if code := run([]string{"top", name, "--duration", "1s"}, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), name) {
			t.Errorf("top %s: exit %d, %q: want it refused", name, code, errOut.String())
		}
	}
}

// incident refuses the flags about other records, before loading
// anything, and --help does not list them.
func TestIncidentRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"incident", "--emit", "all"}, "--emit does not apply to incident"},
		{[]string{"incident", "-o", "x"}, "--output does not apply to incident"},
		{[]string{"incident", "--pile", "CLOSE_WAIT=3"}, "only TIME_WAIT piles"},
		{[]string{"incident", "--every", "0s"}, "--every must be positive"},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), tc.want) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, %q: want 2 and one line with %q", tc.args, code, errOut.String(), tc.want)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"incident", "--help"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "--pile") ||
		regexp.MustCompile(`(?m)^\s+--emit `).MatchString(out.String()) {
		t.Errorf("incident --help: exit %d:\n%s", code, out.String())
	}
}

// analyze and report read past what a crash leaves in an appended
// recording (17 MiB of zero bytes, the next run's records after them):
// skipped, counted, exit 0. (Both once exited 1 with nothing printed.)
func TestOfflineDamagedRecording(t *testing.T) {
	rec, err := os.ReadFile("../../internal/output/testdata/records.ndjson.golden")
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/rec.ndjson"
	damaged := append(append(bytes.Repeat([]byte{0}, 17<<20), rec...), 0, 0, 0)
	if err := os.WriteFile(path, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"analyze", path}, {"report", "-o", path + ".html", path}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut.String())
		}
		if !strings.Contains(errOut.String(), "line 1: 17825792 bytes ending in zero bytes") ||
			!strings.Contains(errOut.String(), fmt.Sprintf("2 bad, %d transitions", bytes.Count(rec, []byte(`"type":"transition"`)))) {
			t.Errorf("%v: stderr %q: want the zero bytes named and counted, every record read", args, errOut.String())
		}
	}
}
