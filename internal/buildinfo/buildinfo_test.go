package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// A build the toolchain did not stamp with a revision (the Makefile's
// build in a git worktree, a tarball) names no revision: it used to print
// "unknown revision" beside the commit id the Makefile gave as version.
func TestString(t *testing.T) {
	plat := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{GoVersion: "go1.26.8"}, "10e7751 (go1.26.8, " + plat + ")"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "10e7751abcdef0123"}, {Key: "vcs.modified", Value: "true"}}},
			"10e7751 (10e7751abcde+dirty, go1.26.8, " + plat + ")"},
	} {
		got := FromBuildInfo("10e7751", tc.bi).String()
		if got != tc.want || strings.Contains(got, "unknown") {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
