package main

import (
	"runtime/debug"
	"testing"
)

func TestFormatVersion(t *testing.T) {
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "6574fbb7273769b103773ab7f7f02291e5132a64"},
			{Key: "vcs.time", Value: "2026-12-04T22:57:28Z"},
			{Key: "vcs.modified", Value: modified},
		}
	}
	cases := []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "(devel)"},
		{"no VCS settings", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
		{"tagged release", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, "v0.3.0"},
		{"clean clone", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")},
			"(devel) commit 6574fbb72737, 2026-12-04T22:57:28Z"},
		{"modified clone", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")},
			"(devel) commit 6574fbb72737, 2026-12-04T22:57:28Z, modified"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261204225728-6574fbb72737+dirty"}, Settings: vcs("true")},
			"v0.0.0-20261204225728-6574fbb72737+dirty"},
		{"tag built from a clone", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}, Settings: vcs("false")},
			"v0.3.0 commit 6574fbb72737, 2026-12-04T22:57:28Z"},
	}
	for _, c := range cases {
		if got := formatVersion(c.info); got != c.want {
			t.Errorf("%s: %q, expected %q", c.name, got, c.want)
		}
	}
}
