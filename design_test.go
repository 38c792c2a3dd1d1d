package tcptracebpf

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/tcptrace-bpf/tcptrace-bpf/"

// docs/design.md's package table is a map of the code: it must name every
// package under internal/ and cmd/, name none that does not exist, and
// state floors that the imports keep: a package imports only packages on
// lower floors (go list's imports, tests excluded).
func TestDesignPackageTable(t *testing.T) {
	floors := designFloors(t)
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue // the root: gen.go and this test
		}
		for _, imp := range f[1:] {
			if p, ok := strings.CutPrefix(imp, module); ok {
				imports[pkg] = append(imports[pkg], p)
			}
		}
		if _, ok := imports[pkg]; !ok {
			imports[pkg] = nil
		}
	}
	for pkg := range imports {
		if _, ok := floors[pkg]; !ok {
			t.Errorf("docs/design.md's package table lacks %s", pkg)
		}
	}
	for pkg, floor := range floors {
		deps, ok := imports[pkg]
		if !ok {
			t.Errorf("docs/design.md's package table names %s, which does not exist", pkg)
			continue
		}
		for _, dep := range deps {
			if df, known := floors[dep]; known && df >= floor {
				t.Errorf("%s (floor %d) imports %s (floor %d): docs/design.md says a package imports only lower floors", pkg, floor, dep, df)
			}
		}
	}
}

// designFloors reads the package table of docs/design.md: rows
// "| `PACKAGE` | FLOOR | ...".
func designFloors(t *testing.T) map[string]int {
	t.Helper()
	f, err := os.Open("docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z0-9/-]+)` \\| ([0-9]+) \\|")
	floors := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if _, dup := floors[m[1]]; dup {
			t.Errorf("docs/design.md names %s twice", m[1])
		}
		floors[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(floors) == 0 {
		t.Fatal("docs/design.md has no package table (rows | `internal/x` | floor | ...)")
	}
	return floors
}
