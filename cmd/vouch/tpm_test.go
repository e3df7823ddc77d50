package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/tpm"
)

// run executes the vouch command tree in-process.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if err != nil {
		return exitUsage
	}
	return exitOK
}

func TestQuoteThenVerifyQuote(t *testing.T) {
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no simulator (CGO_ENABLED=0)")
	}
	dir := t.TempDir()
	akFile := filepath.Join(dir, "ak.json")
	out, err := run(t, "tpm", "quote", "--tpm", "simulator", "--pcrs", "0-7,16", "--banks", "sha256", "--nonce", "00112233", "--ak", akFile, "-o", "json")
	if err != nil {
		t.Fatalf("tpm quote: %v", err)
	}
	quoteFile := filepath.Join(dir, "quote.json")
	if err := os.WriteFile(quoteFile, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(akFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("AK file: %v, mode %v; want mode 0600", err, fi.Mode())
	}

	out, err = run(t, "attest", "verify-quote", "--in", quoteFile, "--nonce", "00112233", "--ak", akFile)
	if err != nil {
		t.Fatalf("verify-quote: %v", err)
	}
	if !strings.Contains(out, "quote verified: PCRs sha256:0-7,16") {
		t.Errorf("verify-quote output %q lacks the verified selection", out)
	}

	_, err = run(t, "attest", "verify-quote", "--in", quoteFile, "--nonce", "0011223344", "--ak", akFile)
	if code := exitCode(err); code != exitMismatch {
		t.Errorf("verify-quote with another nonce: exit %d (%v), want %d", code, err, exitMismatch)
	}
	out, _ = run(t, "attest", "verify-quote", "--in", quoteFile, "--nonce", "0011223344", "-o", "json")
	if !strings.Contains(out, `"reason": "nonce_mismatch"`) {
		t.Errorf("JSON output %q lacks the reason code", out)
	}

	_, err = run(t, "attest", "verify-quote", "--in", filepath.Join(dir, "missing.json"))
	if code := exitCode(err); code != exitUnreadable {
		t.Errorf("verify-quote of a missing file: exit %d, want %d", code, exitUnreadable)
	}
}

func TestTPMInfoSimulator(t *testing.T) {
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no simulator (CGO_ENABLED=0)")
	}
	out, err := run(t, "tpm", "info", "--tpm", "simulator")
	if err != nil {
		t.Fatalf("tpm info: %v", err)
	}
	for _, want := range []string{"manufacturer:", "MSFT", "PCR bank sha256:", "EK certificates:"} {
		if !strings.Contains(out, want) {
			t.Errorf("tpm info output lacks %q:\n%s", want, out)
		}
	}
}

func TestTPMInvalidTransport(t *testing.T) {
	_, err := run(t, "tpm", "info", "--tpm", "carrier-pigeon")
	if code := exitCode(err); code != exitUsage {
		t.Errorf("exit %d (%v), want %d", code, err, exitUsage)
	}
}

func TestTPMEKSimulator(t *testing.T) {
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no simulator (CGO_ENABLED=0)")
	}
	out, err := run(t, "tpm", "ek", "--tpm", "simulator", "--type", "ecc")
	if err != nil {
		t.Fatalf("tpm ek: %v", err)
	}
	if !strings.Contains(out, "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("tpm ek output lacks the public key PEM:\n%s", out)
	}
	if strings.Contains(out, "CERTIFICATE") {
		t.Errorf("tpm ek printed a certificate for a simulator, which stores none:\n%s", out)
	}
}
