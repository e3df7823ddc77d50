package main

import (
	"encoding/hex"
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
	imaList := "../../ima/testdata/ovmf-shim-sbms.ima.bin"
	rulesOnly := writeRulesOnly(t)
	for _, args := range [][]string{
		{"policy", "check", "/dev/zero", "--pcrs", sbms + "pcrs.json", "--rules", rulesOnly},
		{"policy", "check", sbms + "eventlog.bin", "--pcrs", "/dev/zero", "--rules", rulesOnly},
		{"policy", "check", sbms + "eventlog.bin", "--quote", "/dev/zero", "--insecure-unpinned-ak", "--rules", rulesOnly},
		{"policy", "check", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--rules", "/dev/zero"},
		{"policy", "check", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--bundle", sbms + "pcrs.json", "--trust", "acme=/dev/zero"},
		{"attest", "verify-quote", "--in", "/dev/zero"},
		{"ima", "show", "/dev/zero"},
		{"ima", "replay", "/dev/zero"},
		{"ima", "check", imaList, "--key", "/dev/zero"},
		{"bundle", "sign", "--key", "/dev/zero", sbms + "pcrs.json"},
		{"predict", "--grub-cfg", "/dev/zero"},
		{"predict", "--ovmf-vars", "/dev/zero"},
	} {
		out, code := runVouch(t, nil, args...)
		if code != exitUnreadable || !strings.Contains(out, "/dev/zero is larger than the limit of") {
			t.Errorf("%v: exit %d: %.300s", args, code, out)
		}
	}
}

// writeRulesOnly writes rules under which policy check runs without any
// reference values, and returns the file's path.
func writeRulesOnly(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules-only.json")
	if err := os.WriteFile(path, []byte(`{"reference_values": "warn"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBundleCreateRejectsRepeatedMember: the components about to be signed
// must mean the same to vouch and to the reviewer's JSON tools.
func TestBundleCreateRejectsRepeatedMember(t *testing.T) {
	dir := t.TempDir()
	digest := strings.Repeat("ab", 32)
	comps := filepath.Join(dir, "components.json")
	doc := `{"components": [{"name": "shimx64.efi", "kind": "boot-application", "values": [{"pcr": 4, "digests": {"sha256": "` + digest + `"}}]}],
		"components": []}`
	if err := os.WriteFile(comps, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "bundle", "create", "--publisher", "acme", "--product", "debian", "--version", "12.8",
		"--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z", "--components", comps, "--out", filepath.Join(dir, "b.json"))
	if code != exitUnreadable || !strings.Contains(out, `duplicate member "components"`) {
		t.Errorf("exit %d: %s", code, out)
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

// TestOfflineInputExitCodes: an input file that is missing or is not what
// the flag expects exits 3 (unreadable input) with the file named, not 1
// (did not verify) or 2 (usage).
func TestOfflineInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	quote := "../../attest/testdata/sim/ecc-quote.json"
	imaList := "../../ima/testdata/ovmf-shim-sbms.ima.bin"
	missing := filepath.Join(dir, "missing.json")
	text := filepath.Join(dir, "hostname")
	if err := os.WriteFile(text, []byte("web1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dupAK := filepath.Join(dir, "dup-ak.json")
	if err := os.WriteFile(dupAK, []byte(`{"public": "AAAA", "public": "AAAA"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"ima replay missing expect", []string{"ima", "replay", imaList, "--expect", missing}, missing},
		{"ima check missing expect", []string{"ima", "check", imaList, "--allowlist", os.DevNull, "--expect", missing}, missing},
		{"verify-quote text AK", []string{"attest", "verify-quote", "--in", quote, "--ak", text}, text + ": not an AK public area"},
		{"verify-quote duplicate AK member", []string{"attest", "verify-quote", "--in", quote, "--ak", dupAK}, `duplicate member "public"`},
		{"policy check text AK", []string{"policy", "check", corpusDir + "shim-sbms/eventlog.bin", "--quote", quote, "--ak", text, "--rules", writeRulesOnly(t)}, text + ": not an AK public area"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runVouch(t, nil, tt.args...)
			if code != exitUnreadable {
				t.Errorf("exit %d, want %d: %s", code, exitUnreadable, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q: %s", tt.want, out)
			}
		})
	}

	// An invalid inline list stays a usage error.
	out, code := runVouch(t, nil, "ima", "replay", imaList, "--expect", "sha1:10=zz")
	if code != exitUsage {
		t.Errorf("inline --expect with bad hex: exit %d, want %d: %s", code, exitUsage, out)
	}
}

// TestReplayErrorNamesFile: a log whose event is for PCR 24 parses but
// does not replay; the error names the file like every parse error does.
func TestReplayErrorNamesFile(t *testing.T) {
	// A crypto-agile log with a SHA-256 bank and one EV_IPL event for PCR 24.
	raw, err := hex.DecodeString("000000000300000000000000000000000000000000000000000000002100000053706563204944204576656e743033000000000000020002010000000b00200000180000000d000000010000000b002d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a48810100000078")
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "pcr24.bin")
	if err := os.WriteFile(log, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "eventlog", "replay", log)
	if code != exitUnreadable || !strings.Contains(out, log+": event 1") {
		t.Errorf("exit %d: %s", code, out)
	}
}
