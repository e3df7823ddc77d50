package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/predict"
)

// runPredictCmd runs the command tree and returns its standard output.
// Standard error is left out, so warnings do not break the JSON.
func runPredictCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, stderr bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&stderr)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestPredictGrubConfig(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not a real kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(initrd, []byte("initrd"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runPredictCmd(t, "predict", "--bank", "sha256",
		kernel, initrd,
		"--grub-cfg", filepath.Join("..", "..", "predict", "testdata", "ovmf-swtpm", "grub.cfg"),
		"--stub-cmdline", "quiet")
	if err != nil {
		t.Fatal(err)
	}
	var pred predict.Prediction
	if err := json.Unmarshal([]byte(out), &pred); err != nil {
		t.Fatalf("output is not a JSON prediction: %v\n%s", err, out)
	}
	if err := pred.Validate(); err != nil {
		t.Fatal(err)
	}
	// The corpus grub.cfg runs set, set, menuentry, then the boot of
	// its entry: setparams, linuxefi (command, file, command line) and
	// initrdefi (command, file).
	var events []string
	for _, r := range pred.References {
		if r.PCR == 8 || r.PCR == 9 {
			events = append(events, r.Event)
		}
	}
	want := "grub_cmd: linuxefi /vmlinuz console=ttyS0 panic=-1|/vmlinuz|kernel_cmdline: /vmlinuz console=ttyS0 panic=-1"
	if !strings.Contains(strings.Join(events, "|"), want) {
		t.Errorf("GRUB events %q lack %q", events, want)
	}
	// "set timeout=0" is the first command of that grub.cfg; its digest
	// is the one in the corpus log.
	for _, r := range pred.References {
		if r.Event == "grub_cmd: set timeout=0" && r.Digests["sha256"].String() != "d3a793f471b6bfe8d783f5e629314cad4763d48986a8cd4df25475334b40f49b" {
			t.Errorf("set timeout=0: sha256 %s", r.Digests["sha256"])
		}
	}
}

func TestPredictUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"predict"}, exitUsage, "nothing to predict"},
		{[]string{"predict", "--bank", "md5", "x"}, exitUsage, "unknown bank"},
		{[]string{"predict", "--grub-form", "legacy", "x"}, exitUsage, "unknown GRUB measurement form"},
		{[]string{"predict", "/nonexistent/file.deb"}, exitUnreadable, "no such file"},
	}
	for _, c := range cases {
		_, err := runPredictCmd(t, c.args...)
		var exit *exitError
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, expected one containing %q", c.args, err, c.want)
			continue
		}
		if !errorsAs(err, &exit) || exit.code != c.code {
			t.Errorf("%v: exit code %v, expected %d", c.args, exit, c.code)
		}
	}
}

func errorsAs(err error, target **exitError) bool { return errors.As(err, target) }

// TestPredictUnrecognizedInput checks that an input that yields no
// prediction fails with its name instead of printing an empty table.
func TestPredictUnrecognizedInput(t *testing.T) {
	dir := t.TempDir()
	notes := filepath.Join(dir, "README.md")
	if err := os.WriteFile(notes, []byte("# Vouch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, input := range []string{notes, dir} {
		out, code := runVouch(t, nil, "predict", "-o", "text", input)
		if code != exitUnreadable {
			t.Errorf("predict %s: exit %d, expected %d", input, code, exitUnreadable)
		}
		if !strings.Contains(out, input+":") {
			t.Errorf("predict %s: output %q does not name the input", input, out)
		}
		if strings.Contains(out, "PCR  KIND") {
			t.Errorf("predict %s printed a table:\n%s", input, out)
		}
	}
}

// TestPredictWarnsKernelWithoutStub: a kernel that is not a PE image gets
// only GRUB's file digest, which is right for a BIOS boot but silently
// lacks the PCR 4 value a UEFI boot measures.
func TestPredictWarnsKernelWithoutStub(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "vmlinuz-6.1.0-57-amd64")
	if err := os.WriteFile(kernel, []byte("not a PE image"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "predict", "--bank", "sha256", kernel)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	if !strings.Contains(out, "warning: "+kernel+" is not a PE/COFF image (no EFI stub)") {
		t.Errorf("no warning about the missing PCR 4 digest:\n%s", out)
	}
}
