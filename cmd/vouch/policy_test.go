package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/tpm"
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
		{"policy", "learn", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--machine", "vm1", "--approve-by", "alice", "--out", learned},
		{"bundle", "create", "--publisher", "lab", "--product", "golden", "--version", "1",
			"--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z", "--components", learned, "--out", bare},
		{"bundle", "sign", "--key", key + ".key", bare, "--out", signed},
	}
	for _, args := range steps {
		if out, code := runVouch(t, nil, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	check := func(log string, extra ...string) (string, int) {
		args := append([]string{"policy", "check", log + "eventlog.bin", "--pcrs", log + "pcrs.json",
			"--bundle", signed, "--trust", "lab=" + key + ".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned}, extra...)
		return runVouch(t, nil, args...)
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
	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--pcrs", sboff+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2026-06-01T00:00:00Z")
	if code != exitMismatch || !strings.Contains(out, "does not reproduce the PCR values") {
		t.Errorf("check against other PCRs: exit %d:\n%s", code, out)
	}

	// An expired bundle is rejected before judging.
	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2028-01-01T00:00:00Z")
	if code != exitMismatch || !strings.Contains(out, "(expired)") {
		t.Errorf("check with an expired bundle: exit %d:\n%s", code, out)
	}

	rules := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rules, []byte(`{"secure_boot": {}, "kernel_cmdline": {"allow": ["/vmlinuz console=ttyS0 panic=-1"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = check(sbms, "--rules", rules, "-o", "json")
	if code != exitOK || !strings.Contains(out, `"rule": "secure_boot"`) || !strings.Contains(out, `"trusted": true`) {
		t.Errorf("check with rules: exit %d:\n%s", code, out)
	}

	// A PCR file listing only an unused PCR: no event is judged.
	pcr23 := filepath.Join(dir, "pcr23.json")
	if err := os.WriteFile(pcr23, []byte(`{"sha256":{"23":"`+strings.Repeat("0", 64)+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--pcrs", pcr23, "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned)
	if code != exitMismatch || !strings.Contains(out, "coverage  FAILED: PCRs 0-9,14 are required") {
		t.Errorf("check of a PCR 23 quote: exit %d:\n%s", code, out)
	}

	// PCR values of the SHA-1 bank only: trusted only on request.
	sha1Only := filepath.Join(dir, "sha1-only.json")
	var banks map[string]json.RawMessage
	data, err := os.ReadFile(sbms + "pcrs.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &banks); err != nil {
		t.Fatal(err)
	}
	data, err = json.Marshal(map[string]json.RawMessage{"sha1": banks["sha1"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sha1Only, data, 0o644); err != nil {
		t.Fatal(err)
	}
	checkSHA1 := func(extra ...string) (string, int) {
		args := append([]string{"policy", "check", sbms + "eventlog.bin", "--pcrs", sha1Only, "--bundle", signed,
			"--trust", "lab=" + key + ".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned}, extra...)
		return runVouch(t, nil, args...)
	}
	out, code = checkSHA1()
	if code != exitMismatch || !strings.Contains(out, "banks     FAILED: sha1 is the only verified bank") {
		t.Errorf("check of SHA-1 PCR values: exit %d:\n%s", code, out)
	}
	out, code = checkSHA1("--insecure-allow-sha1")
	if code != exitOK || !strings.Contains(out, "verdict   trusted") || !strings.Contains(out, "accepted by insecure_allow_sha1") {
		t.Errorf("check of SHA-1 PCR values with --insecure-allow-sha1: exit %d:\n%s", code, out)
	}

	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin")
	if code != exitUsage || !strings.Contains(out, "--pcrs") {
		t.Errorf("check without PCR values: exit %d: %s", code, out)
	}
}

// TestPolicyCheckWithoutReference: with no bundle and no baseline every
// event matches nothing, so the check is a usage error (exit 2), not a
// verdict of "not trusted" (exit 1) that a script would take for tampering.
func TestPolicyCheckWithoutReference(t *testing.T) {
	dir := t.TempDir()
	sbms := corpusDir + "shim-sbms/"
	check := func(extra ...string) (string, int) {
		args := append([]string{"policy", "check", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json"}, extra...)
		return runVouch(t, nil, args...)
	}

	out, code := check()
	if code != exitUsage {
		t.Errorf("check without a reference: exit %d, want %d:\n%s", code, exitUsage, out)
	}
	for _, want := range []string{"no reference values", "--bundle", "--baseline", `"reference_values": "warn"`} {
		if !strings.Contains(out, want) {
			t.Errorf("check without a reference: output lacks %q:\n%s", want, out)
		}
	}

	enforce := filepath.Join(dir, "enforce.json")
	if err := os.WriteFile(enforce, []byte(`{"secure_boot": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := check("--rules", enforce); code != exitUsage || !strings.Contains(out, "no reference values") {
		t.Errorf("check with enforcing rules and no reference: exit %d, want %d:\n%s", code, exitUsage, out)
	}

	// Rules alone are a valid check once unmatched events only warn.
	rulesOnly := filepath.Join(dir, "rules-only.json")
	if err := os.WriteFile(rulesOnly, []byte(`{"reference_values": "warn", "secure_boot": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = check("--rules", rulesOnly)
	if code != exitOK || !strings.Contains(out, "rule      secure_boot passed") || !strings.Contains(out, "reference none") {
		t.Errorf("check with rules alone on the Secure Boot log: exit %d:\n%s", code, out)
	}
	out, code = runVouch(t, nil, "policy", "check", corpusDir+"shim-sboff/eventlog.bin", "--pcrs", corpusDir+"shim-sboff/pcrs.json", "--rules", rulesOnly)
	if code != exitMismatch || !strings.Contains(out, "rule      secure_boot FAILED") {
		t.Errorf("check with rules alone on the log with Secure Boot off: exit %d:\n%s", code, out)
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
			"--from-log", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--out", bare},
		{"bundle", "sign", "--key", key + ".key", bare, "--out", signed},
		{"policy", "learn", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--approve-by", "bob", "--out", learned},
	}
	for _, args := range steps {
		if out, code := runVouch(t, nil, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	out, code := runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned)
	if code != exitOK || !strings.Contains(out, "reference bundle golden-2, baseline golden revision 1") {
		t.Errorf("check: exit %d:\n%s", code, out)
	}

	// Without the machine's firmware values only the operating system's
	// events match: no boot application is listed.
	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json", "--bundle", signed,
		"--trust", "lab="+key+".pub", "--at", "2026-06-01T00:00:00Z")
	if code != exitMismatch || strings.Contains(out, "Authenticode") || !strings.Contains(out, "PCR 7, event 4, SecureBoot") {
		t.Errorf("check without baseline: exit %d:\n%s", code, out)
	}
}

// writeCorpusQuote extends a corpus log's events into the TPM simulator's
// PCRs, quotes them and writes the quote file that 'vouch tpm quote -o
// json' would write, and the AK's public area to out + ".ak".
func writeCorpusQuote(t *testing.T, logPath, out string, nonce []byte) {
	t.Helper()
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no TPM simulator (CGO_ENABLED=0)")
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tpm.Open(tpm.Config{Transport: tpm.TransportSimulator})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	for _, e := range log.Events {
		if e.Type == eventlog.EV_NO_ACTION {
			continue
		}
		digests := make(map[attest.Algorithm][]byte)
		for _, d := range e.Digests {
			digests[attest.Algorithm(d.Alg)] = d.Value
		}
		if err := tp.ExtendPCR(int(e.PCR), digests); err != nil {
			t.Fatal(err)
		}
	}
	ak, err := tp.CreateAK(tpm.AKOptions{Type: tpm.ECC, Parent: tpm.ECC})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := tp.SelectAllBanks([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14})
	if err != nil {
		t.Fatal(err)
	}
	q, pcrs, err := tp.QuoteWithPCRs(ak, nonce, sel)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(attest.QuoteEvidence{
		AKPublic: ak.Public, Nonce: nonce, Selection: attest.SelectionJSON(sel),
		Attest: q.Attest, Signature: q.Signature, PCRs: attest.PCRValuesJSON(pcrs),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out+".ak", ak.Public, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyCheckWithQuote(t *testing.T) {
	dir := t.TempDir()
	sbms := corpusDir + "shim-sbms/"
	quote := filepath.Join(dir, "quote.json")
	writeCorpusQuote(t, sbms+"eventlog.bin", quote, []byte{1, 2, 3, 4})

	learned := filepath.Join(dir, "learned.json")
	if out, code := runVouch(t, nil, "policy", "learn", sbms+"eventlog.bin", "--quote", quote, "--nonce", "01020304", "--ak", quote+".ak", "--approve-by", "alice", "--out", learned); code != exitOK {
		t.Fatalf("learn: exit %d: %s", code, out)
	}
	// The baseline alone covers the firmware PCRs; warn about the rest.
	rules := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rules, []byte(`{"reference_values": "warn", "secure_boot": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--quote", quote, "--nonce", "01020304", "--ak", quote+".ak",
		"--baseline", learned, "--rules", rules, "--expect", "0-9,14")
	if code != exitOK || !strings.Contains(out, "quoted PCRs 0-9,14,") || !strings.Contains(out, "rule      secure_boot passed") {
		t.Errorf("check with the quote: exit %d:\n%s", code, out)
	}

	// Without --ak the signature proves nothing, so the check is rejected
	// unless an --insecure- flag states it in the verdict.
	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--quote", quote, "--nonce", "01020304",
		"--baseline", learned, "--rules", rules)
	if code != exitUsage || !strings.Contains(out, "pass --ak FILE") {
		t.Errorf("check without --ak: exit %d:\n%s", code, out)
	}
	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--quote", quote, "--nonce", "01020304",
		"--insecure-unpinned-ak", "--baseline", learned, "--rules", rules)
	if code != exitOK || !strings.Contains(out, "insecure  --insecure-unpinned-ak") {
		t.Errorf("check with --insecure-unpinned-ak: exit %d:\n%s", code, out)
	}

	out, code = runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--quote", quote, "--nonce", "05060708", "--ak", quote+".ak", "--baseline", learned)
	if code != exitMismatch || !strings.Contains(out, "nonce") {
		t.Errorf("check with another nonce: exit %d:\n%s", code, out)
	}

	out, code = runVouch(t, nil, "policy", "check", corpusDir+"shim-sboff/eventlog.bin", "--quote", quote, "--nonce", "01020304", "--ak", quote+".ak", "--baseline", learned)
	if code != exitMismatch || !strings.Contains(out, "does not reproduce the PCR values") {
		t.Errorf("check of another log with the quote: exit %d:\n%s", code, out)
	}
}

// TestPolicyCheckPredictedBundle checks the real OVMF boot against a bundle
// made from vouch predict's output for the Debian packages it booted.
func TestPolicyCheckPredictedBundle(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "debian")
	bare := filepath.Join(dir, "debian-12.8.json")
	signed := filepath.Join(dir, "debian-12.8.dsse.json")
	learned := filepath.Join(dir, "learned.json")
	sbms := corpusDir + "shim-sbms/"
	steps := [][]string{
		{"bundle", "keygen", "--out", key},
		{"bundle", "create", "--publisher", "debian", "--product", "debian", "--version", "12.8",
			"--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z",
			"--from-predict", "../../bundle/testdata/predict-debian-12-shim-sbms.json", "--out", bare},
		{"bundle", "sign", "--key", key + ".key", bare, "--out", signed},
		{"policy", "learn", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--machine", "vm1", "--approve-by", "alice", "--out", learned},
	}
	for _, args := range steps {
		if out, code := runVouch(t, nil, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	out, code := runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json",
		"--bundle", signed, "--trust", "debian="+key+".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned)
	if code != exitOK || !strings.Contains(out, "48 matched, 0 matched nothing") {
		t.Errorf("check: exit %d:\n%s", code, out)
	}
}

// TestBundleFromPredictOutput feeds the JSON that vouch predict writes by
// default to vouch bundle create --from-predict. The full chain on the
// Debian packages runs in TestPredictedBundleJudgesCorpusBoot.
func TestBundleFromPredictOutput(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not a real kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(initrd, []byte("initrd"), 0o644); err != nil {
		t.Fatal(err)
	}
	prediction := filepath.Join(dir, "prediction.json")
	bare := filepath.Join(dir, "bundle.json")
	for _, args := range [][]string{
		{"predict", kernel, initrd, "--grub-cfg", corpusDir + "shim-sbms/grub.cfg", "--stub-cmdline", "quiet", "--out", prediction},
		{"bundle", "create", "--publisher", "p", "--product", "test", "--version", "1", "--from-predict", prediction, "--out", bare},
	} {
		if out, code := runVouch(t, nil, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args[:2], code, out)
		}
	}
	out, code := runVouch(t, nil, "bundle", "show", bare)
	if code != exitOK {
		t.Fatalf("bundle show: exit %d: %s", code, out)
	}
	// The SHA-256 of "set timeout=0" as GRUB measures it is the digest the
	// corpus boot logged.
	found := false
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "grub-command") && strings.Contains(line, "d3a793f471b6bfe8d783f5e629314cad4763d48986a8cd4df25475334b40f49b") {
			found = true
			if !strings.Contains(line, `"grub_cmd: set timeout=0"`) {
				t.Errorf("grub command line lacks its text: %s", line)
			}
		}
	}
	if !found {
		t.Errorf("no grub-command value for set timeout=0:\n%s", out)
	}
	if !strings.Contains(out, "kernel-cmdline") {
		t.Errorf("no kernel-cmdline component:\n%s", out)
	}
}
