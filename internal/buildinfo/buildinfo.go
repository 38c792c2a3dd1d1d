// Package buildinfo is what this binary is: its version (set by the
// command from the linker flag -X main.version=...), the source revision
// and Go version the toolchain stamped, one home for --version and the
// tcptrace_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is the release or `git describe` name the binary was built
// as; "dev" when built without the Makefile.
var Version = "dev"

// Info is the build's identity.
type Info struct {
	Version   string
	Revision  string // the VCS commit, 12 hex digits; "" when not stamped
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return FromBuildInfo(Version, bi)
}

// FromBuildInfo reads an Info from the toolchain's stamp (nil: none).
func FromBuildInfo(version string, bi *debug.BuildInfo) Info {
	in := Info{Version: version, GoVersion: runtime.Version()}
	if bi == nil {
		return in
	}
	in.GoVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	if len(in.Revision) > 12 {
		in.Revision = in.Revision[:12]
	}
	return in
}

// String is the --version line after the program's name: the version,
// then in brackets the revision when the toolchain stamped one (a build
// outside a git checkout, or with -buildvcs=false, has none: nothing is
// said rather than "unknown"), the Go version and the platform.
func (in Info) String() string {
	s := in.Version + " ("
	if in.Revision != "" {
		s += in.Revision
		if in.Modified {
			s += "+dirty"
		}
		s += ", "
	}
	return s + in.GoVersion + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
