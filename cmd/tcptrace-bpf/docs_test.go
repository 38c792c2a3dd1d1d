package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	pflag "github.com/spf13/pflag"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md's generated sections")

const repoRoot = "../.."

// markdownFiles lists the repository's markdown files, relative to its root.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			rel, _ := filepath.Rel(repoRoot, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var (
	mdLink      = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	outsidePath = regexp.MustCompile("(?:^|[\\s`(\"'])(\\.\\./[^\\s`)\"']+)")
	issueRef    = regexp.MustCompile(`(?i)\bissue\s*#?\d+`)
	session     = regexp.MustCompile(`(?i)\bth(is|e (first|second|previous|last)) session\b`)
)

// The user docs stand on their own: no link to a missing file or to one
// outside the repository (a reader has the repository, nothing beside
// it), and no talk of the work that made them ("issue 2", "this
// session").
func TestMarkdownLinksAndWording(t *testing.T) {
	root, _ := filepath.Abs(repoRoot)
	files := markdownFiles(t)
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			where := fmt.Sprintf("%s:%d", f, i+1)
			targets := []string{}
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				targets = append(targets, m[1])
			}
			for _, m := range outsidePath.FindAllStringSubmatch(line, -1) {
				targets = append(targets, m[1])
			}
			for _, target := range targets {
				if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				target, _, _ = strings.Cut(target, "#")
				abs := filepath.Join(root, filepath.Dir(f), target)
				if rel, err := filepath.Rel(root, abs); err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s: %q is outside the repository", where, target)
					continue
				}
				if _, err := os.Stat(abs); err != nil {
					t.Errorf("%s: %q does not exist", where, target)
				}
			}
			if m := issueRef.FindString(line); m != "" {
				t.Errorf("%s: %q: say what the text means, not which issue asked for it", where, m)
			}
			if m := session.FindString(line); m != "" {
				t.Errorf("%s: %q: a reader has no session; give the date or the change", where, m)
			}
		}
	}
}

// The checks above catch what they are meant to.
func TestMarkdownCheckPatterns(t *testing.T) {
	for _, s := range []string{"see ../shared/KERNEL-NOTES.md", "[notes](../x.md)", "`../shared/notes`"} {
		if outsidePath.FindString(s) == "" && mdLink.FindString(s) == "" {
			t.Errorf("%q not caught", s)
		}
	}
	for _, s := range []string{"which issue 2 asks for", "Issue #3 (diagnostics)"} {
		if issueRef.FindString(s) == "" {
			t.Errorf("%q not caught", s)
		}
	}
	if session.FindString("before and after this session's changes") == "" {
		t.Error("this session not caught")
	}
}

// flagTable renders a flag set as a markdown table.
func flagTable(fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString("| flag | value | default | what it does |\n|---|---|---|---|\n")
	fs.VisitAll(func(f *pflag.Flag) {
		name := "`--" + f.Name + "`"
		if f.Shorthand != "" {
			name = "`-" + f.Shorthand + "`, " + name
		}
		typ, usage := pflag.UnquoteUsage(f)
		def := f.DefValue
		if def == "" || (typ == "" && def == "false") || def == "0" || def == "0s" {
			def = ""
		} else {
			def = "`" + def + "`"
		}
		if typ != "" {
			typ = "`" + typ + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, typ, def, strings.ReplaceAll(usage, "|", "\\|"))
	})
	return b.String()
}

// generated holds what docs/cli.md's generated sections must contain.
func generated() map[string]string {
	cfg := config.Defaults()
	trace, _ := traceFlags(&cfg)
	analyze, _ := offlineFlags("analyze")
	report, _ := offlineFlags("report")
	return map[string]string{
		"tcptrace-bpf": flagTable(trace),
		"analyze":      flagTable(analyze),
		"report":       flagTable(report),
	}
}

var section = regexp.MustCompile(`(?s)(<!-- BEGIN GENERATED: flags ([a-z-]+) -->\n).*?(<!-- END GENERATED -->)`)

// docs/cli.md's flag tables are rendered from the flag definitions, so
// they cannot drift: go test ./cmd/tcptrace-bpf -run TestCLIReference
// -update rewrites them.
func TestCLIReference(t *testing.T) {
	path := filepath.Join(repoRoot, "docs", "cli.md")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := generated()
	seen := map[string]bool{}
	got := section.ReplaceAllFunc(old, func(m []byte) []byte {
		sub := section.FindSubmatch(m)
		name := string(sub[2])
		seen[name] = true
		return []byte(string(sub[1]) + want[name] + string(sub[3]))
	})
	for name := range want {
		if !seen[name] {
			t.Errorf("docs/cli.md has no generated section for %s", name)
		}
	}
	if bytes.Equal(got, old) {
		return
	}
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Error("docs/cli.md's flag tables differ from the flags: run go test ./cmd/tcptrace-bpf -run TestCLIReference -update and commit")
}

// Every NDJSON record shown in the docs is one the tracer writes today:
// each line of a ```json block decodes into its record type with no
// unknown field and no field missing that the type always writes.
func TestDocExamplesMatchTheSchema(t *testing.T) {
	n := 0
	for _, f := range markdownFiles(t) {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		in := false
		for i, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(line, "```json"):
				in = true
			case strings.HasPrefix(line, "```"):
				in = false
			case in && strings.HasPrefix(line, `{"type":`):
				n++
				v, err := record.DecodeStrict([]byte(line))
				if err != nil {
					t.Errorf("%s:%d: %v", f, i+1, err)
					continue
				}
				// Re-encoding drops nothing the example has and adds
				// nothing it lacks, but for omitted empty fields.
				again, err := record.Encode(v)
				if err != nil {
					t.Errorf("%s:%d: %v", f, i+1, err)
				} else if !bytes.Equal(bytes.TrimSpace(again), []byte(line)) {
					t.Errorf("%s:%d: the example differs from what the schema writes:\n doc: %s\n now: %s", f, i+1, line, again)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no JSON examples found in the docs")
	}
}

// The --emit table of docs/cli.md marks as default the value the flag
// has (it once marked all).
func TestCLIEmitDefault(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	var marked []string
	for _, line := range strings.Split(string(b), "\n") {
		if m := emitDefaultRow.FindStringSubmatch(line); m != nil {
			marked = append(marked, m[1])
		}
	}
	cfg := config.Defaults()
	fs, _ := traceFlags(&cfg)
	want := fs.Lookup("emit").DefValue
	if len(marked) != 1 || marked[0] != want || config.EmitDefault.String() != want {
		t.Errorf("docs/cli.md marks %q as the --emit default; the flag's default is %q", marked, want)
	}
}

var emitDefaultRow = regexp.MustCompile("^\\| `([a-z,]+)` \\(default\\) \\|")
