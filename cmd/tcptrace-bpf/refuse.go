package main

import (
	"fmt"

	flag "github.com/spf13/pflag"
)

// hideFlags leaves names out of --help: a view refuses them (refused).
func hideFlags(fs *flag.FlagSet, names []string) {
	for _, name := range names {
		_ = fs.MarkHidden(name)
	}
}

// refused is the error for the first of names given, worded by why
// ("does not apply to top, which draws on the terminal: ..."), or nil.
func refused(fs *flag.FlagSet, names []string, why string) error {
	for _, name := range names {
		if fs.Changed(name) {
			return fmt.Errorf("--%s %s", name, why)
		}
	}
	return nil
}
