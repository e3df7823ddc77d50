package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestOutputFlagConvention walks every subcommand and checks that -o,
// --output selects an output format and that no command keeps a flag of
// its own for the format or uses -o for a file.
func TestOutputFlagConvention(t *testing.T) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		check := func(f *pflag.Flag) {
			path := cmd.CommandPath()
			switch {
			case f.Name == "json" || f.Name == "format":
				t.Errorf("%s --%s: select the format with -o, --output", path, f.Name)
			case f.Name == "output" && f.Shorthand != "o":
				t.Errorf("%s --output has shorthand %q, expected -o", path, f.Shorthand)
			case f.Name == "output" && !strings.HasPrefix(f.Usage, "output format: "):
				t.Errorf("%s --output %q is not an output format: write files with --out", path, f.Usage)
			case f.Shorthand == "o" && f.Name != "output":
				t.Errorf("%s -o is --%s, expected --output", path, f.Name)
			}
		}
		cmd.LocalFlags().VisitAll(check)
		cmd.InheritedFlags().VisitAll(check)
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}

func TestRemovedOutputFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"policy", "check", "x", "--json"}, "unknown flag: --json: use -o json"},
		{[]string{"ima", "check", "x", "--json"}, "unknown flag: --json: use -o json"},
		{[]string{"ima", "show", "x", "--json"}, "unknown flag: --json: use -o json"},
		{[]string{"predict", "--format", "text", "x"}, "unknown flag: --format: use -o (--output)"},
		{[]string{"bundle", "sign", "--key", "k", "x", "-o", "signed.json"}, "unknown shorthand flag: 'o' in -o: use --out FILE"},
		{[]string{"ima", "allowlist", "create", "--dir", "x", "-o", "allow.txt"}, "use --out FILE"},
		{[]string{"predict", "-o", "prediction.json", "x"}, `invalid --output "prediction.json": use json or text`},
	}
	for _, c := range cases {
		out, code := runVouch(t, nil, c.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, expected %d", c.args, code, exitUsage)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%v: output %q lacks %q", c.args, out, c.want)
		}
	}
}

func TestPredictOutputFormatAndFile(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "predict", "-o", "text", "--bank", "sha256", "--grub-command", "set timeout=0")
	if code != exitOK || !strings.HasPrefix(out, "PCR  KIND") || !strings.Contains(out, "grub_cmd: set timeout=0") {
		t.Errorf("predict -o text: exit %d, output:\n%s", code, out)
	}

	file := filepath.Join(dir, "prediction.json")
	out, code = runVouch(t, nil, "predict", "--out", file, "--bank", "sha256", "--grub-command", "set timeout=0")
	if code != exitOK || out != "" {
		t.Errorf("predict --out: exit %d, standard output %q", code, out)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Errorf("%s is not JSON:\n%s", file, data)
	}
}
