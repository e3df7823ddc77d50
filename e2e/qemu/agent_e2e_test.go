package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/e2e/qemu/guestproto"
)

// VouchBinEnv names a prebuilt static vouch binary to use instead of
// building ./cmd/vouch.
const VouchBinEnv = "VOUCH_E2E_VOUCH"

var (
	vouchOnce  sync.Once
	vouchBin   string
	vouchErr   error
	vouchAgent bool
)

// buildVouch builds (once) the static vouch binary for the guest and the
// host, and reports whether it has the agent, server and hosts commands.
func buildVouch() (available bool, err error) {
	vouchOnce.Do(func() {
		if p := os.Getenv(VouchBinEnv); p != "" {
			vouchBin = p
		} else {
			vouchBin = filepath.Join(buildDir, "vouch")
			if vouchErr = BuildStatic(context.Background(), repoRoot, "./cmd/vouch", vouchBin); vouchErr != nil {
				return
			}
		}
		vouchAgent = true
		for _, sub := range []string{"agent", "server", "hosts"} {
			if exec.Command(vouchBin, sub, "--help").Run() != nil {
				vouchAgent = false
			}
		}
	})
	return vouchAgent, vouchErr
}

// agentAvailable reports whether TestAgentScenarios can run. Call it after
// harness.
func agentAvailable() bool {
	ok, err := buildVouch()
	return err == nil && ok
}

// vouchBinary returns the static vouch binary, skipping the test when it
// has no agent yet.
func vouchBinary(t *testing.T) string {
	t.Helper()
	ok, err := buildVouch()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		// NOTE: lets this package land before the agent and server do.
		t.Skipf("%s has no agent, server or hosts command yet", vouchBin)
	}
	return vouchBin
}

// verifierProcess is a `vouch server` on loopback.
type verifierProcess struct {
	bin         string
	url         string // https://127.0.0.1:PORT
	addr        string // 127.0.0.1:PORT
	fingerprint string
	tokenFile   string
	cmd         *exec.Cmd
	logFile     string
	config      string // empty client config, so that no user's file is read
}

var (
	listeningRE   = regexp.MustCompile(`listening on https://(127\.0\.0\.1:[0-9]+)`)
	fingerprintRE = regexp.MustCompile(`fingerprint[^:]*: *([0-9A-Fa-f:]+)\s*$`)
	tokenFileRE   = regexp.MustCompile(`admin token file: *(\S+)`)
)

// startVerifier runs `vouch server` trusting EK certificates that chain to
// the TPM's swtpm-localca root, and waits for it to print its address, CA
// fingerprint and token file.
func startVerifier(t *testing.T, bin string, tpm *TPM, policy ...string) *verifierProcess {
	t.Helper()
	dir := t.TempDir()
	v := &verifierProcess{bin: bin, logFile: filepath.Join(dir, "server.log")}
	// swtpm-localca signs EK certificates with an intermediate CA, which
	// the certificates in NV do not carry.
	ekArgs := []string{"--ek-mode", "vendor-roots", "--ek-roots", tpm.RootCA(), "--ek-intermediates", tpm.IssuerCA()}
	config := filepath.Join(dir, "client.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v.config = config
	logf, err := os.Create(v.logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	v.cmd = exec.Command(bin, append([]string{"server",
		"--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"),
		// The agent dials the verifier at VerifierAddr.
		"--host", "127.0.0.1,10.0.2.100",
		"--interval", "3s",
		"--log-level", "debug"}, append(ekArgs, policy...)...)...)
	v.cmd.Stderr = logf
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = v.cmd.Process.Kill()
		_ = v.cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(v.logFile)
			t.Logf("verifier log (last lines):\n%s", tail(string(b), 60))
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for v.addr == "" || v.fingerprint == "" || v.tokenFile == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				b, _ := os.ReadFile(v.logFile)
				t.Fatalf("vouch server exited during start-up:\n%s", b)
			}
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				v.addr = m[1]
			}
			if m := fingerprintRE.FindStringSubmatch(line); m != nil {
				v.fingerprint = m[1]
			}
			if m := tokenFileRE.FindStringSubmatch(line); m != nil {
				v.tokenFile = m[1]
			}
		case <-deadline:
			t.Fatal("vouch server did not print its address, fingerprint and token file within 30s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	v.url = "https://" + v.addr
	return v
}

// admin runs a `vouch` admin command against the verifier.
func (v *verifierProcess) admin(args ...string) ([]byte, error) {
	args = append(args, "--server", v.url, "--token-file", v.tokenFile, "--server-fingerprint", v.fingerprint)
	cmd := exec.Command(v.bin, args...)
	cmd.Env = append(os.Environ(), "VOUCH_CONFIG="+v.config)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("vouch %s: %w: %s", strings.Join(args[:2], " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// hostDetail is the part of `vouch hosts show -o json` the scenarios read.
type hostDetail struct {
	Name        string   `json:"name"`
	State       string   `json:"state"`
	ReasonCodes []string `json:"reason_codes"`
	BootCount   int64    `json:"boot_count"`
	Approved    bool     `json:"approved"`
	History     []struct {
		Kind   string `json:"kind"`
		Detail string `json:"detail"`
	} `json:"history"`
	Verdict *struct {
		State     string `json:"state"`
		BootCount int64  `json:"boot_count"`
		Reasons   []struct {
			Code    string `json:"code"`
			Action  string `json:"action"`
			Message string `json:"message"`
			PCR     *int   `json:"pcr"`
			Event   *int   `json:"event"`
			Type    string `json:"event_type"`
		} `json:"reasons"`
	} `json:"verdict"`
}

func (d *hostDetail) String() string {
	b, _ := json.MarshalIndent(d, "", "  ")
	return string(b)
}

// reasonPCRs returns the PCRs named by the last verdict's reasons with
// the code.
func (d *hostDetail) reasonPCRs(code string) map[int]bool {
	pcrs := map[int]bool{}
	if d.Verdict != nil {
		for _, r := range d.Verdict.Reasons {
			if r.Code == code && r.PCR != nil && r.Event != nil {
				pcrs[*r.PCR] = true
			}
		}
	}
	return pcrs
}

func (d *hostDetail) hasReason(code string) bool {
	if d.Verdict == nil {
		return false
	}
	for _, r := range d.Verdict.Reasons {
		if r.Code == code {
			return true
		}
	}
	return false
}

func (v *verifierProcess) show(name string) (*hostDetail, error) {
	out, err := v.admin("hosts", "show", name, "-o", "json")
	if err != nil {
		return nil, err
	}
	var d hostDetail
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("decode vouch hosts show: %w: %s", err, out)
	}
	return &d, nil
}

// waitFor polls `vouch hosts show` until ok accepts the machine, the VM
// stops, or the timeout passes.
func (v *verifierProcess) waitFor(t *testing.T, vm *VM, name, what string, ok func(*hostDetail) bool) *hostDetail {
	t.Helper()
	deadline := time.Now().Add(bootTimeout)
	var last *hostDetail
	var lastErr error
	for time.Now().Before(deadline) {
		d, err := v.show(name)
		if err == nil && ok(d) {
			return d
		}
		last, lastErr = d, err
		select {
		case <-vm.Done():
			t.Fatalf("the VM stopped before %s; last state %v (%v)\nserial console:\n%s", what, last, lastErr, tail(vm.SerialLog(), 40))
		case <-time.After(time.Second):
		}
	}
	t.Fatalf("timed out waiting for %s; last state %v (%v)\nserial console:\n%s", what, last, lastErr, tail(vm.SerialLog(), 40))
	return nil
}

// agentGuest returns the initramfs content shared by every machine: the
// guest init runs `vouch agent` against VerifierAddr, with the machine's
// name and the verifier's fingerprint from the harness.
func agentGuest(vouch string, extra ...InitramfsFile) Guest {
	return Guest{
		Init:    initBin,
		Vouch:   vouch,
		Modules: chain.Modules,
		Config: guestproto.Config{
			Mode:       guestproto.ModeExec,
			Interface:  "eth0",
			Address:    "10.0.2.15/24",
			HarnessURL: "http://" + HarnessAddr,
			Exec: []string{"/bin/vouch", "agent",
				"--server", "https://" + VerifierAddr,
				"--tpm", "device",
				"--state-dir", "/var/lib/vouch-agent",
				"--min-backoff", "500ms", "--max-backoff", "5s"},
			StateDir: "/var/lib/vouch-agent",
		},
		Extra: extra,
	}
}

// installAgent writes the machine's disk with the agent guest.
func (m *machine) installAgent(grub GrubConfig, g Guest) {
	m.t.Helper()
	initrd := filepath.Join(m.dir, "initrd.img")
	if err := g.WriteInitrd(initrd); err != nil {
		m.t.Fatal(err)
	}
	m.disk = filepath.Join(m.dir, "disk.img")
	if err := WriteDisk(context.Background(), m.disk, DefaultLayout, ESPFiles(chain, grub, initrd)); err != nil {
		m.t.Fatal(err)
	}
}

// power starts the machine and returns the running VM; the caller stops it.
func (m *machine) power(t *testing.T) (*VM, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sw, err := m.tpm.Start(ctx, filepath.Join(m.dir, "swtpm.sock"), filepath.Join(m.dir, "swtpm.log"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	vm, err := Start(ctx, VMConfig{
		Firmware:  m.fw,
		Vars:      filepath.Join(m.dir, "vars.fd"),
		Disk:      m.disk,
		TPMSocket: sw.Socket,
		Serial:    filepath.Join(m.dir, "serial.log"),
		Forwards: []Forward{
			{Guest: HarnessAddr, Host: m.server.addr},
			{Guest: VerifierAddr, Host: m.verifier},
		},
		Relay: exe,
		Env:   []string{RelayEnv + "=1"},
	})
	if err != nil {
		sw.Stop()
		cancel()
		t.Fatal(err)
	}
	return vm, func() {
		vm.Stop()
		sw.Stop()
		cancel()
	}
}

// The boot menu of the corpus recordings, so that boots of the same
// packages can be compared with them event for event. The command line
// adds no_timer_check: on a busy host the emulated CPU can be too slow for
// the kernel's IO-APIC timer check, which then panics at boot.
const (
	corpusTitle = "realboot"
	cmdline     = "console=ttyS0 panic=-1 no_timer_check"
)

// TestAgentScenarios runs the end-to-end scenarios in order, one VM at a
// time, against one verifier:
//
//   - Secure Boot off: the agent enrolls with its EK certificate, which
//     chains to the swtpm-localca root, and after approval is trusted.
//   - The same VM reboots: the verifier counts a new boot and trusts it.
//   - grub.cfg gets another kernel command line: untrusted, PCR 8 named.
//   - Another initrd: untrusted, the PCR 9 event named.
//   - GRUB's plain `linux`: no event log, and the verdict gives that reason.
//   - Secure Boot on with the Microsoft keys, on a second machine: trusted.
func TestAgentScenarios(t *testing.T) {
	harness(t)
	vouch := vouchBinary(t)
	caDir := filepath.Join(t.TempDir(), "ca")

	sbOff := newMachine(t, FirmwareSecureBootOff, caDir)
	sbOn := newMachine(t, FirmwareSecureBootMicrosoft, caDir)
	guest := agentGuest(vouch)
	good := GrubConfig{Title: corpusTitle, CmdLine: cmdline}
	sbOff.installAgent(good, guest)
	sbOn.installAgent(good, guest)

	// predicted is what `vouch predict` computed for sb-off's first boot
	// files, predictedOn the same for sb-ms, whose variable store holds
	// the Microsoft keys. The verifier judges both machines with bundles
	// built from them.
	predicted, predictedFile := predictBoot(t, sbOff, good, filepath.Join(sbOff.dir, "initrd.img"))
	predictedOn, predictedOnFile := predictBoot(t, sbOn, good, filepath.Join(sbOn.dir, "initrd.img"))
	bundles, trust := signBundles(t, vouch, map[string]string{"sb-off": predictedFile, "sb-ms": predictedOnFile})
	// The secure_boot rule only warns, so that the verdict of sb-off shows
	// Secure Boot off without making the machine untrusted.
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(`{"secure_boot": {"action": "warn"}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := startVerifier(t, vouch, sbOff.tpm, "--bundles", bundles, "--trust", trust, "--policy-rules", rules)
	sbOff.verifier = v.addr
	sbOff.server.setMachine("sb-off", "VOUCH_SERVER_FINGERPRINT="+v.fingerprint)

	// first is what the guest of sb-off's first boot reported.
	var first *guestproto.Report
	// bootCount is the verifier's count of sb-off's boots so far: each
	// scenario waits for a verdict on a later boot, not the last one's.
	var bootCount int64
	newBoot := func(state string) func(*hostDetail) bool {
		return func(d *hostDetail) bool {
			if d.BootCount > bootCount && d.State == state {
				bootCount = d.BootCount
				return true
			}
			return false
		}
	}
	t.Run("SecureBootOffTrusted", func(t *testing.T) {
		vm, stop := sbOff.power(t)
		defer stop()
		d := v.waitFor(t, vm, "sb-off", "enrollment", func(d *hostDetail) bool { return d.BootCount > 0 })
		t.Logf("enrolled: state %s, reasons %v", d.State, d.ReasonCodes)
		// The only trust anchor is the swtpm-localca root, so a vendor-root
		// trust proves the EK certificate chained to it.
		var ekTrust string
		for _, h := range d.History {
			if strings.Contains(h.Detail, " trusted by ") {
				ekTrust = h.Detail
			}
		}
		if !strings.Contains(ekTrust, "trusted by vendor-root") {
			t.Errorf("history records no EK trusted by its vendor root: %q", ekTrust)
		}
		if _, err := v.admin("hosts", "approve", "sb-off"); err != nil {
			t.Fatal(err)
		}
		d = v.waitFor(t, vm, "sb-off", "trusted", func(d *hostDetail) bool { return d.State == "trusted" })
		bootCount = d.BootCount
		t.Logf("verdict:\n%s", d)
		if d.Verdict == nil || d.Verdict.State != "trusted" || !secureBootWarning(d) || len(d.Verdict.Reasons) != 1 {
			t.Errorf("trusted machine's last verdict, want only the secure_boot warning:\n%s", d)
		}

		first = report(t, sbOff)
		events := checkReplay(t, first)
		if first.SecureBoot != "off" {
			t.Errorf("guest reports Secure Boot %q, want off", first.SecureBoot)
		}
		if corpusMatches() {
			n := compareWithCorpus(t, events, "testdata/shim-sboff.eventlog.bin")
			t.Logf("%d of %d events equal to the corpus recording", n, len(events))
		}
		checkPredicted(t, predicted, events)
	})
	if t.Failed() {
		return
	}
	t.Run("RebootSeen", func(t *testing.T) {
		vm, stop := sbOff.power(t)
		defer stop()
		before := bootCount
		d := v.waitFor(t, vm, "sb-off", "the new boot to be trusted", newBoot("trusted"))
		if d.BootCount != before+1 {
			t.Errorf("boot count %d after one reboot, was %d", d.BootCount, before)
		}
		rep := report(t, sbOff)
		if rep.ResetCount != first.ResetCount+1 {
			t.Errorf("TPM reset count %d after one reboot, was %d", rep.ResetCount, first.ResetCount)
		}
		samePCRs(t, first, rep, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	})
	t.Run("CommandLineChanged", func(t *testing.T) {
		sbOff.installAgent(GrubConfig{Title: corpusTitle, CmdLine: cmdline + " vouch.e2e=changed"}, guest)
		vm, stop := sbOff.power(t)
		defer stop()
		d := v.waitFor(t, vm, "sb-off", "an untrusted new boot", newBoot("untrusted"))
		t.Logf("verdict:\n%s", d)
		// GRUB's command events (PCR 8) and grub.cfg's digest (PCR 9).
		if pcrs := d.reasonPCRs("event_unmatched"); !pcrs[8] || !pcrs[9] || len(pcrs) != 2 {
			t.Errorf("event_unmatched reasons name PCRs %v, want PCRs 8 and 9", pcrs)
		}
		named := false
		for _, r := range d.Verdict.Reasons {
			if r.Code == "event_unmatched" && r.PCR != nil && *r.PCR == 8 && strings.Contains(r.Message, "kernel_cmdline: /vmlinuz") && strings.Contains(r.Message, "vouch.e2e=changed") {
				named = true
			}
		}
		if !named {
			t.Error("no event_unmatched reason names PCR 8's kernel_cmdline event with the changed command line")
		}
		rep := report(t, sbOff)
		if !strings.HasSuffix(rep.CmdLine, " vouch.e2e=changed") {
			t.Errorf("guest booted with command line %q", rep.CmdLine)
		}
		samePCRs(t, first, rep, 0, 1, 2, 3, 4, 5, 6, 7)

		// Against the prediction for the original files, only GRUB's
		// command events and grub.cfg's digest are unexpected.
		missing, _ := unpredicted(predicted, checkReplay(t, rep))
		var pcr8 int
		for _, ev := range missing {
			switch {
			case ev.PCR == 8:
				pcr8++
			case ev.PCR == 9 && strings.HasSuffix(printable(ev.Data), "/grub.cfg"):
			default:
				t.Errorf("event %d (PCR %d, %q) differs from the prediction", ev.Index, ev.PCR, printable(ev.Data))
			}
		}
		if pcr8 == 0 {
			t.Error("every PCR 8 event matches the prediction for the original command line")
		}
	})
	t.Run("InitrdChanged", func(t *testing.T) {
		other := agentGuest(vouch, InitramfsFile{Path: "etc/e2e-marker", Mode: 0o644, Data: []byte("another initrd\n")})
		sbOff.installAgent(good, other)
		vm, stop := sbOff.power(t)
		defer stop()
		d := v.waitFor(t, vm, "sb-off", "an untrusted new boot", newBoot("untrusted"))
		t.Logf("verdict:\n%s", d)
		if pcrs := d.reasonPCRs("event_unmatched"); !pcrs[9] || len(pcrs) != 1 {
			t.Errorf("event_unmatched reasons name PCRs %v, want only PCR 9", pcrs)
		}
		var unmatched []string
		for _, r := range d.Verdict.Reasons {
			if r.Code == "event_unmatched" {
				unmatched = append(unmatched, r.Message)
			}
		}
		if len(unmatched) != 1 || !strings.Contains(unmatched[0], "initrd.img") {
			t.Errorf("event_unmatched reasons %q, want one naming initrd.img", unmatched)
		}
		rep := report(t, sbOff)
		samePCRs(t, first, rep, 0, 1, 2, 3, 4, 5, 6, 7, 8)
		missing, _ := unpredicted(predicted, checkReplay(t, rep))
		if len(missing) != 1 || missing[0].PCR != 9 || printable(missing[0].Data) != "/initrd.img" {
			for _, ev := range missing {
				t.Logf("unpredicted: event %d PCR %d %q", ev.Index, ev.PCR, printable(ev.Data))
			}
			t.Errorf("%d events differ from the prediction, want only PCR 9 /initrd.img", len(missing))
		}
	})
	t.Run("NoEventLog", func(t *testing.T) {
		sbOff.installAgent(GrubConfig{Title: corpusTitle, CmdLine: cmdline, Legacy: true}, guest)
		vm, stop := sbOff.power(t)
		defer stop()
		d := v.waitFor(t, vm, "sb-off", "an untrusted new boot", newBoot("untrusted"))
		t.Logf("verdict:\n%s", d)
		if !d.hasReason("eventlog_missing") {
			t.Errorf("no eventlog_missing reason")
		}
		rep := report(t, sbOff)
		if len(rep.EventLog) != 0 || rep.EventLogError == "" {
			t.Errorf("guest read an event log of %d bytes (error %q), want none", len(rep.EventLog), rep.EventLogError)
		}
	})
	t.Run("SecureBootMicrosoftTrusted", func(t *testing.T) {
		sbOn.verifier = v.addr
		sbOn.server.setMachine("sb-ms", "VOUCH_SERVER_FINGERPRINT="+v.fingerprint)
		vm, stop := sbOn.power(t)
		defer stop()
		v.waitFor(t, vm, "sb-ms", "enrollment", func(d *hostDetail) bool { return d.BootCount > 0 })
		if _, err := v.admin("hosts", "approve", "sb-ms"); err != nil {
			t.Fatal(err)
		}
		d := v.waitFor(t, vm, "sb-ms", "trusted", func(d *hostDetail) bool { return d.State == "trusted" })
		t.Logf("verdict:\n%s", d)
		// With Secure Boot on, the secure_boot rule passes: no reason at all.
		if d.Verdict == nil || d.Verdict.State != "trusted" || len(d.Verdict.Reasons) != 0 {
			t.Errorf("trusted machine's last verdict, want no reasons:\n%s", d)
		}

		rep := report(t, sbOn)
		events := checkReplay(t, rep)
		if rep.SecureBoot != "on" {
			t.Errorf("guest reports Secure Boot %q, want on", rep.SecureBoot)
		}
		if corpusMatches() {
			n := compareWithCorpus(t, events, "testdata/shim-sbms.eventlog.bin")
			t.Logf("%d of %d events equal to the corpus recording", n, len(events))
		}
		checkPredicted(t, predictedOn, events)
	})
}

// secureBootWarning reports whether the verdict carries the warning of
// the secure_boot rule, which fails when Secure Boot is off.
func secureBootWarning(d *hostDetail) bool {
	if d.Verdict == nil {
		return false
	}
	for _, r := range d.Verdict.Reasons {
		if r.Code == "rule_failed" && r.Action == "warn" && strings.Contains(r.Message, "secure_boot") {
			return true
		}
	}
	return false
}

// signBundles makes a publisher key and, for each name, a signed bundle of
// that `vouch predict` output, the way a distribution would publish its
// packages' reference values. It returns the bundle directory and the
// --trust value.
func signBundles(t *testing.T, vouch string, predictions map[string]string) (dir, trust string) {
	t.Helper()
	work := t.TempDir()
	dir = filepath.Join(work, "bundles")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(work, "e2e")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(vouch, args...).CombinedOutput(); err != nil {
			t.Fatalf("vouch %s: %v: %s", strings.Join(args[:2], " "), err, out)
		}
	}
	run("bundle", "keygen", "--out", key)
	for name, p := range predictions {
		unsigned := filepath.Join(work, name+".json")
		run("bundle", "create", "--publisher", "e2e", "--product", "debian-"+name, "--version", "12",
			"--from-predict", p, "--out", unsigned)
		run("bundle", "sign", "--key", key+".key", unsigned, "--out", filepath.Join(dir, name+".dsse.json"))
	}
	return dir, "e2e=" + key + ".pub"
}

// report returns the probe report the machine's guest posted during this
// boot, before it started the agent.
func report(t *testing.T, m *machine) *guestproto.Report {
	t.Helper()
	rep := m.server.take()
	if rep == nil {
		t.Fatal("the guest posted no probe report during this boot")
	}
	return rep
}

// samePCRs checks that two boots ended with the same values in pcrs.
func samePCRs(t *testing.T, a, b *guestproto.Report, pcrs ...int) {
	t.Helper()
	for _, bank := range []string{"sha1", "sha256"} {
		for _, pcr := range pcrs {
			if a.PCRs[bank][pcr] != b.PCRs[bank][pcr] {
				t.Errorf("%s PCR %d = %s, first boot %s", bank, pcr, b.PCRs[bank][pcr], a.PCRs[bank][pcr])
			}
		}
	}
}
