package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this build",
		Long: `Print the module version of this build and, for a build from a git clone,
the commit, its time and whether the tree had uncommitted changes. Go
records the commit unless the build ran with -buildvcs=false.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "vouch", buildVersion())
			return nil
		},
	}
}

// buildVersion returns the version of this binary, as formatVersion
// writes it. Agents report it to the verifier too.
func buildVersion() string {
	info, _ := debug.ReadBuildInfo()
	return formatVersion(info)
}

// formatVersion returns the module version from info, followed by the VCS
// revision that go build records in info.Settings, such as
// "(devel) commit 6574fbb72737, 2026-12-04T22:57:28Z, modified".
func formatVersion(info *debug.BuildInfo) string {
	if info == nil {
		return "(devel)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}

	var revision, commitTime string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			commitTime = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision == "" {
		return version
	}

	if len(revision) > 12 {
		revision = revision[:12]
	}
	if strings.Contains(version, revision) {
		// A pseudo-version such as v0.0.0-20261204225728-6574fbb72737
		// already names the commit, and "+dirty" marks changes.
		return version
	}

	version += " commit " + revision
	if commitTime != "" {
		version += ", " + commitTime
	}
	if modified {
		version += ", modified"
	}
	return version
}
