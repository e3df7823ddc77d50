package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	zxingqr "github.com/makiuchi-d/gozxing/qrcode"
	pquerna "github.com/pquerna/otp"
	pquernatotp "github.com/pquerna/otp/totp"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/internal/pgtest"
	"github.com/vouch-attest/vouch/seal"
	"github.com/vouch-attest/vouch/tpm"
	"github.com/vouch-attest/vouch/tpm/tpmtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// vouchBinary builds cmd/vouch once per test run, so that each command in
// a test runs as its own process, as on a real machine.
func vouchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vouch-cli-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vouch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building vouch: %v", buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// run runs the vouch binary and returns its stdout, stderr and exit code.
func runBinary(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(vouchBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("running vouch %v: %v", args, err)
	return "", "", 0
}

// mustRun runs vouch and fails the test unless it exits 0.
func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := runBinary(t, stdin, args...)
	if code != 0 {
		t.Fatalf("vouch %s exited %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// mustExitMismatch runs vouch, expects exit status 1, and checks that stderr
// names each of the given texts.
func mustExitMismatch(t *testing.T, want []string, args ...string) {
	t.Helper()
	out, errOut, code := runBinary(t, "", args...)
	if code != exitMismatch {
		t.Fatalf("vouch %s exited %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, exitMismatch, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("vouch %s: stderr does not contain %q:\n%s", args[0], w, errOut)
		}
	}
	if regexp.MustCompile(`\b\d{3} \d{3}\b`).MatchString(out) {
		t.Errorf("a refused show printed something like a code:\n%s", out)
	}
}

// extendPCR extends a sha256 PCR of the swtpm between two vouch processes.
func extendPCR(t *testing.T, spec string, pcr int) {
	t.Helper()
	tp, err := tpm.Open(tpm.Config{Transport: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	sum := sha256.Sum256([]byte("changed boot component"))
	if err := tp.ExtendPCR(pcr, map[attest.Algorithm][]byte{attest.AlgSHA256: sum[:]}); err != nil {
		t.Fatal(err)
	}
}

var (
	uriPattern  = regexp.MustCompile(`otpauth URI: (otpauth://\S+)`)
	showPattern = regexp.MustCompile(`\n  (\d{3} \d{3})  from (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) to`)
)

// checkShow runs vouch totp show and checks that the code equals
// pquerna/otp's independent computation for the time step show names.
func checkShow(t *testing.T, uri string, args ...string) {
	t.Helper()
	out := mustRun(t, "", append([]string{"totp", "show"}, args...)...)
	m := showPattern.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("totp show output has no code line:\n%s", out)
	}
	at, err := time.Parse("2006-01-02 15:04:05", m[2])
	if err != nil {
		t.Fatal(err)
	}
	key, err := pquerna.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pquernatotp.GenerateCode(key.Secret(), at)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ReplaceAll(m[1], " ", ""); got != want {
		t.Errorf("totp show printed %s for %s, pquerna/otp computes %s", got, at, want)
	}
	if d := time.Since(at); d < 0 || d > 2*time.Minute {
		t.Errorf("totp show based its code on %s, %v away from now", at, d)
	}
	if !strings.Contains(out, "██") {
		t.Errorf("totp show printed no large digits:\n%s", out)
	}
}

// decodePNG reads the QR code image that enroll wrote.
func decodePNG(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := zxingqr.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return res.GetText()
}

func TestTOTPSwtpm(t *testing.T) {
	spec := tpmtest.Swtpm(t)
	dir := t.TempDir()
	blob := filepath.Join(dir, "var", "totp.seal")
	qrPath := filepath.Join(dir, "qr.png")

	out := mustRun(t, "", "totp", "enroll", "--tpm", spec, "--blob", blob, "--png", qrPath, "--account", "test-host")
	m := uriPattern.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("enroll printed no otpauth URI:\n%s", out)
	}
	uri := m[1]
	if got := decodePNG(t, qrPath); got != uri {
		t.Errorf("QR code PNG decodes to %q, want the printed URI %q", got, uri)
	}
	for _, p := range []string{blob, qrPath} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, info.Mode().Perm())
		}
	}
	blobBytes, _ := os.ReadFile(blob)
	key, _ := pquerna.NewKeyFromURL(uri)
	if bytes.Contains(blobBytes, []byte(key.Secret())) {
		t.Errorf("sealed blob contains the base32 secret in the clear")
	}

	_, errOut, code := runBinary(t, "", "totp", "enroll", "--tpm", spec, "--blob", blob)
	if code != exitUsage || !strings.Contains(errOut, "--force") {
		t.Errorf("enrolling over an existing blob exited %d (%s), want %d with a hint about --force", code, errOut, exitUsage)
	}

	checkShow(t, uri, "--tpm", spec, "--blob", blob)

	extendPCR(t, spec, 7)
	mustExitMismatch(t, []string{"pcrs 7 of bank sha256 changed", "no code"}, "totp", "show", "--tpm", spec, "--blob", blob)
}

// TestTOTPShowOnAnotherTPM: a blob that another TPM sealed is reported as
// such, not as changed PCRs, although the PCRs differ too.
func TestTOTPShowOnAnotherTPM(t *testing.T) {
	enrolled := tpmtest.Swtpm(t)
	other := tpmtest.Swtpm(t)
	blob := filepath.Join(t.TempDir(), "totp.seal")
	mustRun(t, "", "totp", "enroll", "--tpm", enrolled, "--blob", blob, "--account", "host", "--no-qr")
	extendPCR(t, other, 7)

	out, errOut, code := runBinary(t, "", "totp", "show", "--tpm", other, "--blob", blob)
	if code != exitUnreadable {
		t.Errorf("totp show on another TPM exited %d, want %d\nstderr: %s", code, exitUnreadable, errOut)
	}
	for _, want := range []string{"another TPM", "TPM_RC_INTEGRITY", "no code", "vouch totp enroll --force"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("totp show on another TPM: stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "changed since sealing") {
		t.Errorf("totp show on another TPM blames changed PCRs:\n%s", errOut)
	}
	if regexp.MustCompile(`\b\d{3} \d{3}\b`).MatchString(out) {
		t.Errorf("totp show on another TPM printed something like a code:\n%s", out)
	}
}

// TestTOTPShowMissingBlob checks that show, without a sealed secret,
// names vouch totp enroll and --blob.
func TestTOTPShowMissingBlob(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "totp.seal")
	out, code := runVouch(t, nil, "totp", "show", "--tpm", "simulator", "--blob", missing)
	if code != exitUnreadable {
		t.Errorf("totp show without a blob: exit %d, want %d: %s", code, exitUnreadable, out)
	}
	for _, want := range []string{missing, "vouch totp enroll", "--blob"} {
		if !strings.Contains(out, want) {
			t.Errorf("totp show without a blob: output lacks %q: %s", want, out)
		}
	}
}

func TestTOTPAuthorizedSwtpm(t *testing.T) {
	spec := tpmtest.Swtpm(t)
	dir := t.TempDir()
	blob := filepath.Join(dir, "totp.seal")
	policyKey := filepath.Join(dir, "policy.key")
	approvals := filepath.Join(dir, "approvals")
	if err := os.Mkdir(approvals, 0o755); err != nil {
		t.Fatal(err)
	}

	mustRun(t, "", "seal", "keygen", "--out", policyKey)
	out := mustRun(t, "", "totp", "enroll", "--tpm", spec, "--blob", blob, "--account", "host", "--no-qr", "--policy-key", policyKey+".pub")
	uri := uriPattern.FindStringSubmatch(out)[1]
	generation := strings.TrimSpace(mustRun(t, "", "seal", "counter", "--tpm", spec))

	// Without an approval an authorized blob does not unseal.
	mustExitMismatch(t, []string{"no approvals given"}, "totp", "show", "--tpm", spec, "--blob", blob)

	first := filepath.Join(approvals, "1-first.approval")
	mustRun(t, "", "seal", "authorize", "--tpm", spec, "--key", policyKey, "--out", first)
	checkShow(t, uri, "--tpm", spec, "--blob", blob, "--approval", approvals)

	// An update changes PCR 4: the first approval no longer applies.
	extendPCR(t, spec, 4)
	mustExitMismatch(t, []string{"pcrs 4 of bank sha256 changed since sealing", "approval 1: pcrs 4 differ"},
		"totp", "show", "--tpm", spec, "--blob", blob, "--approval", approvals)

	// Approve the new values from an expected-PCR file, as a publisher would.
	expect := filepath.Join(dir, "expected.json")
	writeExpected(t, expect, currentPCRs(t, spec))
	second := filepath.Join(approvals, "2-second.approval")
	mustRun(t, "", "seal", "authorize", "--key", policyKey, "--expect", expect, "--generation", generation, "--out", second)
	checkShow(t, uri, "--tpm", spec, "--blob", blob, "--approval", approvals)

	// Revoke: the second approval stops working, a re-signed one works.
	out = mustRun(t, "", "seal", "revoke", "--tpm", spec)
	if !strings.Contains(out, "is now") {
		t.Errorf("revoke printed %q", out)
	}
	mustExitMismatch(t, []string{"approval 2: generation " + generation + " is revoked"},
		"totp", "show", "--tpm", spec, "--blob", blob, "--approval", approvals)
	third := filepath.Join(approvals, "3-third.approval")
	mustRun(t, "", "seal", "authorize", "--tpm", spec, "--key", policyKey, "--out", third)
	checkShow(t, uri, "--tpm", spec, "--blob", blob, "--approval", approvals)

	inspect := mustRun(t, "", "seal", "inspect", third)
	if !strings.Contains(inspect, "approval, format version 1") || !strings.Contains(inspect, "sha256 pcr  4:") {
		t.Errorf("seal inspect of an approval printed:\n%s", inspect)
	}
}

// currentPCRs reads the swtpm's sha256 PCRs 0, 2, 4 and 7.
func currentPCRs(t *testing.T, spec string) seal.PCRs {
	t.Helper()
	tp, err := tpm.Open(tpm.Config{Transport: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	p, err := seal.ReadPCRs(tp, seal.SHA256, seal.SelectionOf(0, 2, 4, 7))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeExpected writes p in the expected-PCR JSON layout.
func writeExpected(t *testing.T, path string, p seal.PCRs) {
	t.Helper()
	data, err := seal.MarshalExpected(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSealUnsealSwtpm(t *testing.T) {
	spec := tpmtest.Swtpm(t)
	dir := t.TempDir()
	blob := filepath.Join(dir, "secret.seal")
	secret := "disk unlock key material"

	mustRun(t, secret, "seal", "--tpm", spec, "--pcrs", "0-7", "--in", "-", "--out", blob)
	if got := mustRun(t, "", "unseal", "--tpm", spec, blob); got != secret {
		t.Errorf("unseal printed %q, want %q", got, secret)
	}
	outFile := filepath.Join(dir, "out")
	mustRun(t, "", "unseal", "--tpm", spec, "--out", outFile, blob)
	if got, _ := os.ReadFile(outFile); string(got) != secret {
		t.Errorf("unseal --out wrote %q", got)
	}

	// Sealed to values expected for another boot: refused, PCR named.
	expect := filepath.Join(dir, "next-boot.json")
	next := currentPCRs(t, spec)
	next.Values[2] = bytes.Repeat([]byte{0xee}, 32)
	writeExpected(t, expect, next)
	blob2 := filepath.Join(dir, "next.seal")
	mustRun(t, "x", "seal", "--tpm", spec, "--expect", expect, "--in", "-", "--out", blob2)
	mustExitMismatch(t, []string{"pcrs 2 of bank sha256 changed since sealing"}, "unseal", "--tpm", spec, blob2)

	// Bad input: a damaged blob is an input error, not a refusal.
	data, _ := os.ReadFile(blob)
	damaged := filepath.Join(dir, "damaged.seal")
	os.WriteFile(damaged, data[:len(data)-5], 0o600)
	_, errOut, code := runBinary(t, "", "unseal", "--tpm", spec, damaged)
	if code != exitUnreadable || !strings.Contains(errOut, "truncated") {
		t.Errorf("unseal of a truncated blob exited %d: %s", code, errOut)
	}
	// The secret never comes from the command line.
	_, _, code = runBinary(t, "", "seal", "--tpm", spec, "--out", blob, "secret-on-command-line")
	if code == 0 {
		t.Errorf("seal accepted a positional argument")
	}
}

// TestSealSimulatorWarns checks that sealing on the in-process simulator
// warns that the blob dies with the process, and that swtpm gets no such
// warning.
func TestSealSimulatorWarns(t *testing.T) {
	blob := filepath.Join(t.TempDir(), "secret.seal")
	_, errOut, code := runBinary(t, "secret", "seal", "--tpm", "simulator", "--in", "-", "--out", blob)
	if code == exitUnavailable && strings.Contains(errOut, "no TPM simulator") {
		t.Skip("this build has no simulator (CGO_ENABLED=0)")
	}
	if code != exitOK {
		t.Fatalf("seal --tpm simulator exited %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "warning: sealed with --tpm simulator") || !strings.Contains(errOut, "no later process can unseal the blob") {
		t.Errorf("seal --tpm simulator printed no warning:\n%s", errOut)
	}

	spec := tpmtest.Swtpm(t)
	_, errOut, code = runBinary(t, "secret", "seal", "--tpm", spec, "--in", "-", "--out", blob)
	if code != exitOK || strings.Contains(errOut, "warning") {
		t.Errorf("seal on swtpm exited %d with:\n%s", code, errOut)
	}
}
