package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// vouchRun runs the vouch binary and fails the test when it exits non-zero.
func vouchRun(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(vouchBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vouch %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitOutput waits until the process output contains want.
func waitOutput(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(p.output(), want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("output never contained %q:\n%s", want, tail(p.output(), 40))
}

// TestEndToEndBundlePolicy runs a server that judges with a signed bundle
// predicted from the Debian packages of the OVMF boot in policy/testdata,
// and an agent on the simulator replaying that boot's real log.
func TestEndToEndBundlePolicy(t *testing.T) {
	needSimulator(t)
	dir := t.TempDir()
	bundles := filepath.Join(dir, "bundles")
	if err := os.Mkdir(bundles, 0o700); err != nil {
		t.Fatal(err)
	}
	prediction := filepath.Join("..", "..", "bundle", "testdata", "predict-debian-12-shim-sbms.json")
	bootLog := filepath.Join("..", "..", "policy", "testdata", "ovmf-swtpm", "shim-sbms", "eventlog.bin")
	raw, err := os.ReadFile(bootLog)
	if err != nil {
		t.Fatal(err)
	}
	bootLog = filepath.Join(dir, "eventlog.bin") // the agent appends to it on SIGUSR1
	if err := os.WriteFile(bootLog, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	// The publisher's key, a stranger's key, and three signed bundles:
	// valid, expired, and signed by the stranger.
	debianKey, strangerKey := filepath.Join(dir, "debian"), filepath.Join(dir, "stranger")
	vouchRun(t, nil, "bundle", "keygen", "--out", debianKey)
	vouchRun(t, nil, "bundle", "keygen", "--out", strangerKey)
	create := func(out string, extra ...string) {
		vouchRun(t, nil, append([]string{"bundle", "create", "--publisher", "debian", "--product", "debian", "--version", "12.8",
			"--from-predict", prediction, "--out", out}, extra...)...)
	}
	create(filepath.Join(dir, "debian-12.8.json"))
	create(filepath.Join(dir, "old.json"), "--not-before", "2020-01-01T00:00:00Z", "--not-after", "2021-01-01T00:00:00Z")
	vouchRun(t, nil, "bundle", "sign", "--key", debianKey+".key", "--out", filepath.Join(bundles, "debian-12.8.json"), filepath.Join(dir, "debian-12.8.json"))
	vouchRun(t, nil, "bundle", "sign", "--key", debianKey+".key", "--out", filepath.Join(bundles, "expired.json"), filepath.Join(dir, "old.json"))
	vouchRun(t, nil, "bundle", "sign", "--key", strangerKey+".key", "--out", filepath.Join(bundles, "stranger.json"), filepath.Join(dir, "debian-12.8.json"))

	// Secure Boot enforced; a kernel command line rule that this boot's
	// line fails, only warned about.
	rules := filepath.Join(dir, "rules.json")
	os.WriteFile(rules, []byte(`{"secure_boot": {}, "quoted_pcrs": {"pcrs": [0, 2, 4, 7, 8, 9]},
		"kernel_cmdline": {"action": "warn", "allow": ["/vmlinuz-[0-9.]+-amd64 quiet"]}}`), 0o600)

	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-mode", "tofu",
		"--bundles", bundles, "--trust", "debian="+debianKey+".pub", "--policy-rules", rules)
	out := s.proc.output()
	for _, want := range []string{
		`msg="bundle accepted" source=` + filepath.Join(bundles, "debian-12.8.json") + " bundle=debian-12.8 publisher=debian",
		`msg="bundle rejected" source=` + filepath.Join(bundles, "expired.json"),
		"code=expired",
		`msg="bundle rejected" source=` + filepath.Join(bundles, "stranger.json"),
		"code=untrusted-publisher",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("server log lacks %q:\n%s", want, tail(out, 30))
		}
	}

	agent := startAgent(t, s, dir, "vm1", "simulator", bootLog)
	d := s.waitFor(t, "vm1", "pending with firmware values to approve", func(d api.MachineDetail) bool {
		return d.State == api.StatePending && hasReason(d, "reference_unapproved")
	})
	s.admin(t, http.MethodPost, "/v1/machines/vm1/approve", nil)
	d = s.waitFor(t, "vm1", "trusted", stateIs(api.StateTrusted))
	if len(d.Verdict.Reasons) != 1 || d.Verdict.Reasons[0].Action != "warn" || d.Verdict.Reasons[0].Code != "rule_failed" ||
		!strings.Contains(d.Verdict.Reasons[0].Message, "rule kernel_cmdline") {
		t.Errorf("trusted verdict reasons = %+v, want the kernel_cmdline warning", d.Verdict.Reasons)
	}
	approved := false
	for _, h := range d.History {
		approved = approved || (h.Kind == "approved" && strings.Contains(h.Detail, "firmware values revision 1 approved"))
	}
	if !approved {
		t.Errorf("history lacks the approval of firmware values revision 1: %+v", d.History)
	}

	token, _ := os.ReadFile(filepath.Join(s.dataDir, "admin-token"))
	env := []string{"VOUCH_SERVER=" + s.url, "VOUCH_SERVER_FINGERPRINT=" + s.fingerprint, "VOUCH_TOKEN=" + strings.TrimSpace(string(token))}
	if show := vouchRun(t, env, "hosts", "show", "vm1"); !strings.Contains(show, "[rule_failed, warn] rule kernel_cmdline") {
		t.Errorf("hosts show does not print the warning:\n%s", show)
	}

	// A boot application the bundle does not allow, extended into PCR 4
	// and logged.
	if err := agent.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	d = s.waitFor(t, "vm1", "untrusted", stateIs(api.StateUntrusted))
	var r *api.Reason
	for i := range d.Verdict.Reasons {
		if d.Verdict.Reasons[i].Code == "event_unmatched" {
			r = &d.Verdict.Reasons[i]
		}
	}
	if r == nil || r.PCR == nil || *r.PCR != 4 || r.Event == nil || r.Action != "" || len(r.Expected) == 0 {
		t.Fatalf("reasons = %+v, want event_unmatched on PCR 4", d.Verdict.Reasons)
	}
	if !strings.HasPrefix(r.Message, "PCR 4, event 49, unapproved.efi Authenticode sha256 ") ||
		!strings.Contains(r.Message, ": bundle debian-12.8 allows ") {
		t.Errorf("message %q does not name the PCR, the event and what the bundle allows", r.Message)
	}
	show := vouchRun(t, env, "hosts", "show", "vm1")
	if !strings.Contains(show, "[event_unmatched] PCR 4, event 49, unapproved.efi") {
		t.Errorf("hosts show does not explain the event:\n%s", show)
	}

	// SIGHUP reloads the bundles: the stranger's bundle is gone now.
	os.Remove(filepath.Join(bundles, "stranger.json"))
	if err := s.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, s.proc, `msg="bundles loaded" in_use=1 accepted=1 kept=0 rejected=1`)
}

// TestEndToEndFirmwareUpdate reboots a machine on swtpm into the same
// firmware with Secure Boot turned off: its firmware values change, and it
// stays untrusted until the new revision is approved.
func TestEndToEndFirmwareUpdate(t *testing.T) {
	dir := t.TempDir()
	sw := startSwtpm(t, filepath.Join(dir, "swtpm"))
	bundles := filepath.Join(dir, "bundles")
	os.Mkdir(bundles, 0o700)
	key := filepath.Join(dir, "debian")
	vouchRun(t, nil, "bundle", "keygen", "--out", key)
	vouchRun(t, nil, "bundle", "create", "--publisher", "debian", "--product", "debian", "--version", "12.8",
		"--from-predict", filepath.Join("..", "..", "bundle", "testdata", "predict-debian-12-shim-sbms.json"), "--out", filepath.Join(dir, "b.json"))
	vouchRun(t, nil, "bundle", "sign", "--key", key+".key", "--out", filepath.Join(bundles, "debian-12.8.json"), filepath.Join(dir, "b.json"))
	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-mode", "tofu", "--bundles", bundles, "--trust", "debian="+key+".pub")
	corpus := filepath.Join("..", "..", "policy", "testdata", "ovmf-swtpm")

	a := startAgent(t, s, dir, "vm2", sw.spec(), filepath.Join(corpus, "shim-sbms", "eventlog.bin"))
	s.waitFor(t, "vm2", "pending", func(d api.MachineDetail) bool { return hasReason(d, "reference_unapproved") })
	s.admin(t, http.MethodPost, "/v1/machines/vm2/approve", nil)
	s.waitFor(t, "vm2", "trusted", stateIs(api.StateTrusted))
	a.stop()

	sw.powerCycle(t)
	a = startAgent(t, s, dir, "vm2", sw.spec(), filepath.Join(corpus, "shim-sboff", "eventlog.bin"))
	d := s.waitFor(t, "vm2", "untrusted after the firmware change", stateIs(api.StateUntrusted))
	r := d.Verdict.Reasons[0]
	if r.Code != "firmware_changed" || !strings.Contains(r.Message, "PCR 7 SecureBoot (secure-boot-variable): sha256 ccfc4bb32888… → sha256 115aa827dbcc…") ||
		!strings.Contains(r.Message, "approve revision 2") {
		t.Fatalf("first reason = %+v, want firmware_changed with the difference", r)
	}
	if d.ReferenceApproved {
		t.Error("the new firmware revision counts as approved")
	}

	s.admin(t, http.MethodPost, "/v1/machines/vm2/approve", nil)
	d = s.waitFor(t, "vm2", "trusted with revision 2", stateIs(api.StateTrusted))
	approved, changed := false, false
	for _, h := range d.History {
		approved = approved || (h.Kind == "approved" && strings.Contains(h.Detail, "firmware values revision 2 approved (PCR"))
		changed = changed || (h.To == api.StateUntrusted && strings.Contains(h.Detail, "firmware values differ from approved revision 1"))
	}
	if !approved {
		t.Errorf("history lacks the approval of revision 2 with its difference: %+v", d.History)
	}
	if !changed {
		t.Errorf("history lacks the firmware change: %+v", d.History)
	}
	a.stop()
}
