package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpusDir = "../../policy/testdata/ovmf-swtpm/"

func TestPolicyCLILearnAndCheck(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "golden")
	learned := filepath.Join(dir, "learned.json")
	bare := filepath.Join(dir, "golden-bundle.json")
	signed := filepath.Join(dir, "golden-bundle.dsse.json")
	sbms := corpusDir + "shim-sbms/"
	sboff := corpusDir + "shim-sboff/"

	steps := [][]string{
		{"bundle", "keygen", "--out", key},
		{"policy", "learn", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--machine", "vm1", "--approve-by", "alice", "-o", learned},
		{"bundle", "create", "--publisher", "lab", "--product", "golden", "--version", "1",
			"--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z", "--components", learned, "-o", bare},
		{"bundle", "sign", "--key", key + ".key", bare, "-o", signed},
	}
	for _, args := range steps {
		if out, code := runVouch(t, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	check := func(log string, extra ...string) (string, int) {
		args := append([]string{"policy", "check", log + "eventlog.bin", "--pcrs", log + "pcrs.json",
			"--bundle", signed, "--trust", "lab=" + key + ".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned}, extra...)
		return runVouch(t, args...)
	}

	out, code := check(sbms, "--expect", "0-9,14")
	if code != exitOK || !strings.Contains(out, "verdict   trusted") || !strings.Contains(out, "48 matched, 0 matched nothing") {
		t.Errorf("check of the golden boot: exit %d:\n%s", code, out)
	}

	out, code = check(sboff)
	if code != exitMismatch || !strings.Contains(out, "PCR 7, event 4, SecureBoot secure-boot-variable sha256 115aa827dbcc…: machine firmware values (revision 1) allows ccfc4bb32888…") {
		t.Errorf("check of another boot: exit %d:\n%s", code, out)
	}

	out, code = check(sbms, "--expect", "10")
	if code != exitMismatch || !strings.Contains(out, "PCR 10 not covered by the quote") {
		t.Errorf("check expecting PCR 10: exit %d:\n%s", code, out)
	}

	// PCR values of another boot: the log does not replay to them.
	out, code = runVouch(t, "policy", "check", sbms+"eventlog.bin", "--pcrs", sboff+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2026-06-01T00:00:00Z")
	if code != exitMismatch || !strings.Contains(out, "does not reproduce the PCR values") {
		t.Errorf("check against other PCRs: exit %d:\n%s", code, out)
	}

	// An expired bundle is rejected before judging.
	out, code = runVouch(t, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2028-01-01T00:00:00Z")
	if code != exitMismatch || !strings.Contains(out, "(expired)") {
		t.Errorf("check with an expired bundle: exit %d:\n%s", code, out)
	}

	rules := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rules, []byte(`{"secure_boot": {}, "kernel_cmdline": {"allow": ["/vmlinuz console=ttyS0 panic=-1"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = check(sbms, "--rules", rules, "--json")
	if code != exitOK || !strings.Contains(out, `"rule": "secure_boot"`) || !strings.Contains(out, `"trusted": true`) {
		t.Errorf("check with rules: exit %d:\n%s", code, out)
	}

	out, code = runVouch(t, "policy", "check", sbms+"eventlog.bin")
	if code != exitUsage || !strings.Contains(out, "--pcrs") {
		t.Errorf("check without PCR values: exit %d: %s", code, out)
	}
}

func TestBundleCreateFromLog(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "lab")
	bare := filepath.Join(dir, "b.json")
	signed := filepath.Join(dir, "b.dsse.json")
	learned := filepath.Join(dir, "learned.json")
	sbms := corpusDir + "shim-sbms/"
	steps := [][]string{
		{"bundle", "keygen", "--alg", "ecdsa-p256", "--out", key},
		{"bundle", "create", "--publisher", "lab", "--product", "golden", "--version", "2",
			"--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z",
			"--from-log", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "-o", bare},
		{"bundle", "sign", "--key", key + ".key", bare, "-o", signed},
		{"policy", "learn", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--approve-by", "bob", "-o", learned},
	}
	for _, args := range steps {
		if out, code := runVouch(t, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	out, code := runVouch(t, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned)
	if code != exitOK || !strings.Contains(out, "reference bundle golden-2, baseline golden revision 1") {
		t.Errorf("check: exit %d:\n%s", code, out)
	}

	// Without the machine's firmware values only the bundle's PCRs match.
	out, code = runVouch(t, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2026-06-01T00:00:00Z")
	if code != exitMismatch || strings.Contains(out, "PCR 4,") || !strings.Contains(out, "PCR 7, event 4, SecureBoot") {
		t.Errorf("check without baseline: exit %d:\n%s", code, out)
	}
}
