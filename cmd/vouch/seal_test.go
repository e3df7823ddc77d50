package main

import (
	"strings"
	"testing"
)

// TestSealArgumentNamesIn: cobra reports an argument of a command with
// subcommands as an unknown command, which hides that seal reads the
// secret from --in.
func TestSealArgumentNamesIn(t *testing.T) {
	out, code := runVouch(t, nil, "seal", "--tpm", "simulator", "--pcrs", "0,7", "--out", t.TempDir()+"/s.seal", "s.txt")
	if code != exitUsage {
		t.Errorf("seal with a file argument: exit %d, want %d: %s", code, exitUsage, out)
	}
	for _, want := range []string{`"s.txt"`, "--in FILE", "--in - for standard input", "command line", "keygen"} {
		if !strings.Contains(out, want) {
			t.Errorf("seal with a file argument: output lacks %q: %s", want, out)
		}
	}
	if strings.Contains(out, "unknown command") {
		t.Errorf("seal with a file argument still reports an unknown command: %s", out)
	}

	out, code = runVouch(t, nil, "seal", "--in", "-")
	if code != exitUsage || !strings.Contains(out, "--out BLOB") {
		t.Errorf("seal without --out: exit %d: %s", code, out)
	}
}
