package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// exactArgs requires one positional argument per name, such as
// "machine NAME", and names the first missing one in its error, which
// cobra.ExactArgs does not.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return withExitCode(exitUsage, fmt.Errorf("missing %s: usage: %s", names[len(args)], cmd.UseLine()))
		case len(args) > len(names):
			return withExitCode(exitUsage, fmt.Errorf("unexpected argument %q: usage: %s", args[len(names)], cmd.UseLine()))
		}
		return nil
	}
}
