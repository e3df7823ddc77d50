package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBundleVerifyEmptyDirectory: a script that verifies a bundle
// directory before deploying it must tell "all verified" from "nothing
// there".
func TestBundleVerifyEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if out, code := runVouch(t, nil, "bundle", "keygen", "--out", key); code != exitOK {
		t.Fatalf("keygen: exit %d: %s", code, out)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "bundle", "verify", "--trust", "acme="+key+".pub", empty)
	if code != exitUnreadable || !strings.Contains(out, "no bundle found") {
		t.Errorf("verify of an empty directory: exit %d: %s", code, out)
	}
}

// TestPolicyCheckBoundsInputs: endless or huge inputs fail at a size limit
// instead of being read whole.
func TestPolicyCheckBoundsInputs(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	sbms := corpusDir + "shim-sbms/"
	for _, args := range [][]string{
		{"policy", "check", "/dev/zero", "--pcrs", sbms + "pcrs.json"},
		{"policy", "check", sbms + "eventlog.bin", "--pcrs", "/dev/zero"},
		{"policy", "check", sbms + "eventlog.bin", "--quote", "/dev/zero", "--insecure-unpinned-ak"},
		{"attest", "verify-quote", "--in", "/dev/zero"},
	} {
		out, code := runVouch(t, nil, args...)
		if code != exitUnreadable || !strings.Contains(out, "/dev/zero is larger than") {
			t.Errorf("%v: exit %d: %.300s", args, code, out)
		}
	}
}

// TestReplayErrorCutsHugeLine: the error about a bad --expect file quotes
// a short prefix of its one 200 KB line, not the line.
func TestReplayErrorCutsHugeLine(t *testing.T) {
	expect := filepath.Join(t.TempDir(), "deep.json")
	if err := os.WriteFile(expect, []byte(strings.Repeat("[", 200000)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "eventlog", "replay", corpusDir+"shim-sbms/eventlog.bin", "--expect", expect)
	if code != exitUnreadable || len(out) > 1000 || !strings.Contains(out, "(200000 bytes)") {
		t.Errorf("exit %d, %d bytes of output: %.300s", code, len(out), out)
	}
}

// TestIMAExpectRejectsRepeatedPCR: sha1:10=A,sha1:10=B kept B silently.
func TestIMAExpectRejectsRepeatedPCR(t *testing.T) {
	a, b := strings.Repeat("aa", 20), strings.Repeat("bb", 20)
	_, err := parsePCRSpec("sha1:10=" + a + ",sha1:10=" + b)
	if err == nil || !strings.Contains(err.Error(), "sha1 PCR 10 is given twice") {
		t.Errorf("error = %v, want the repeated PCR rejected", err)
	}
}
