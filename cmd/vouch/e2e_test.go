package main

// End-to-end tests: the vouch binary runs as a server and as agents, real
// processes talking HTTPS on loopback, with the TPM simulator and swtpm.
// The binary is built once per test run (vouchBinary).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/tpm"
)

// proc is a vouch process whose output goes to a file in the test's
// directory.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func startProc(t *testing.T, logPath string, args ...string) *proc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vouchBinary(t), args...)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &proc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// exited waits up to d for the process to exit and returns its exit code.
func (p *proc) exited(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("process still running after %s; output:\n%s", d, p.output())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

type testServer struct {
	proc        *proc
	url         string
	fingerprint string
	dataDir     string
	client      *api.Client
	addr        string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer runs vouch server on addr (a free one when empty) with a
// 1 s interval plus args.
func startServer(t *testing.T, dataDir, addr string, args ...string) *testServer {
	t.Helper()
	if addr == "" {
		addr = freeAddr(t)
	}
	all := append([]string{"server", "--data-dir", dataDir, "--listen", addr, "--interval", "1s", "--challenge-ttl", "5s", "--log-level", "debug"}, args...)
	p := startProc(t, filepath.Join(filepath.Dir(dataDir), fmt.Sprintf("server-%d.log", time.Now().UnixNano())), all...)
	s := &testServer{proc: p, url: "https://" + addr, dataDir: dataDir, addr: addr}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.output(), "\n") {
			if _, fp, ok := strings.Cut(line, "--server-fingerprint): "); ok {
				s.fingerprint = strings.TrimSpace(fp)
			}
		}
		if s.fingerprint != "" && strings.Contains(p.output(), "verifier listening") {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("server exited:\n%s", p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if s.fingerprint == "" {
		t.Fatalf("server printed no fingerprint:\n%s", p.output())
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := api.TLSConfig(s.fingerprint, "")
	if err != nil {
		t.Fatal(err)
	}
	s.client = &api.Client{BaseURL: s.url, Token: strings.TrimSpace(string(token)),
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}}
	return s
}

func (s *testServer) machine(t *testing.T, name string) (api.MachineDetail, error) {
	t.Helper()
	var d api.MachineDetail
	_, err := s.client.Do(context.Background(), http.MethodGet, "/v1/machines/"+name, nil, &d)
	return d, err
}

func (s *testServer) waitFor(t *testing.T, name, what string, ok func(api.MachineDetail) bool) api.MachineDetail {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last api.MachineDetail
	for time.Now().Before(deadline) {
		d, err := s.machine(t, name)
		if err == nil {
			last = d
			if ok(d) {
				return d
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("machine %s never became %s; last: %+v\nserver output:\n%s", name, what, last, tail(s.proc.output(), 40))
	return last
}

func (s *testServer) admin(t *testing.T, method, path string, in any) {
	t.Helper()
	if _, err := s.client.Do(context.Background(), method, path, in, nil); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func demoLog(t *testing.T, dir, name string) string {
	t.Helper()
	raw, err := demoLogs.ReadFile("testdata/demo/" + name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startAgent(t *testing.T, s *testServer, dir, name, tpmSpec, bootLog string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"agent", "--server", s.url, "--server-fingerprint", s.fingerprint,
		"--name", name, "--state-dir", filepath.Join(dir, "agent-"+name), "--tpm", tpmSpec,
		"--simulate-boot", bootLog, "--min-backoff", "100ms", "--max-backoff", "1s", "--wait", "5s",
		"--log-level", "debug"}, extra...)
	return startProc(t, filepath.Join(dir, fmt.Sprintf("agent-%s-%d.log", name, time.Now().UnixNano())), args...)
}

func stateIs(state string) func(api.MachineDetail) bool {
	return func(d api.MachineDetail) bool { return d.State == state }
}

func hasReason(d api.MachineDetail, code string) bool {
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

func needSimulator(t *testing.T) {
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no TPM simulator (cgo disabled)")
	}
}

// TestEndToEndSimulator follows two machines from enrollment to a
// tampered boot and through a kill -9 of the server.
func TestEndToEndSimulator(t *testing.T) {
	needSimulator(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	s := startServer(t, dataDir, "", "--ek-mode", "tofu")

	// A request without the admin token is rejected.
	anon := *s.client
	anon.Token = ""
	_, err := anon.Do(context.Background(), http.MethodGet, "/v1/machines", nil, nil)
	if api.ErrorCode(err) != api.CodeUnauthorized {
		t.Errorf("machines without a token: %v, want %s", err, api.CodeUnauthorized)
	}
	anon.Token = "vouch_wrong"
	_, err = anon.Do(context.Background(), http.MethodGet, "/v1/machines", nil, nil)
	if api.ErrorCode(err) != api.CodeUnauthorized {
		t.Errorf("machines with a wrong token: %v, want %s", err, api.CodeUnauthorized)
	}

	web := startAgent(t, s, dir, "web", "simulator", demoLog(t, dir, "rhel8-uefi.bin"))
	db := startAgent(t, s, dir, "db", "simulator", demoLog(t, dir, "cos-85-amd-sev.bin"))

	for _, name := range []string{"web", "db"} {
		d := s.waitFor(t, name, "pending with learned reference values", func(d api.MachineDetail) bool {
			return d.State == api.StatePending && hasReason(d, "reference_unapproved")
		})
		if d.BootCount != 1 {
			t.Errorf("%s boot count = %d, want 1", name, d.BootCount)
		}
		s.admin(t, http.MethodPost, "/v1/machines/"+name+"/approve", nil)
		s.waitFor(t, name, "trusted", stateIs(api.StateTrusted))
	}

	// Tamper: an unapproved boot application in PCR 4, logged.
	if err := web.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	d := s.waitFor(t, "web", "untrusted", stateIs(api.StateUntrusted))
	if len(d.Verdict.Reasons) != 1 {
		t.Fatalf("reasons = %+v, want one", d.Verdict.Reasons)
	}
	r := d.Verdict.Reasons[0]
	if r.Code != "event_unexpected" || r.PCR == nil || *r.PCR != 4 || r.Event == nil || *r.Event != 83 || r.Type != "EV_EFI_BOOT_SERVICES_APPLICATION" {
		t.Errorf("reason = %+v, want event_unexpected for PCR 4 event 83 EV_EFI_BOOT_SERVICES_APPLICATION", r)
	}
	if !strings.Contains(r.Message, "PCR 4 event 83") {
		t.Errorf("message %q does not name the event", r.Message)
	}
	if dbState, _ := s.machine(t, "db"); dbState.State != api.StateTrusted {
		t.Errorf("db state = %s, want trusted", dbState.State)
	}

	// Tamper without a log entry: the replay no longer matches PCR 4.
	if err := db.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	d = s.waitFor(t, "db", "untrusted", stateIs(api.StateUntrusted))
	if !hasReason(d, "eventlog_replay_mismatch") || *d.Verdict.Reasons[0].PCR != 4 {
		t.Errorf("db reasons = %+v, want eventlog_replay_mismatch on PCR 4", d.Verdict.Reasons)
	}

	// kill -9 the server and restart it on the same address: every machine
	// and verdict is still there, and the agents reconnect.
	before := map[string]api.MachineDetail{}
	for _, name := range []string{"web", "db"} {
		before[name], _ = s.machine(t, name)
	}
	var hist []api.HistoryEvent
	s.client.Do(context.Background(), http.MethodGet, "/v1/history?limit=1000", nil, &hist)
	s.proc.kill9()
	s2 := startServer(t, dataDir, s.addr, "--ek-mode", "tofu")
	if s2.fingerprint != s.fingerprint {
		t.Errorf("fingerprint changed across restart: %s -> %s", s.fingerprint, s2.fingerprint)
	}
	for _, name := range []string{"web", "db"} {
		after, err := s2.machine(t, name)
		if err != nil {
			t.Fatalf("%s after restart: %v", name, err)
		}
		if after.State != before[name].State || after.EKSHA256 != before[name].EKSHA256 || after.BootCount != before[name].BootCount {
			t.Errorf("%s after restart = %+v, before %+v", name, after.Machine, before[name].Machine)
		}
		if after.Verdict == nil || !after.Verdict.At.Equal(before[name].Verdict.At) && after.Verdict.At.Before(before[name].Verdict.At) {
			t.Errorf("%s lost its verdict across the restart", name)
		}
	}
	var hist2 []api.HistoryEvent
	s2.client.Do(context.Background(), http.MethodGet, "/v1/history?limit=1000", nil, &hist2)
	if len(hist2) < len(hist) {
		t.Errorf("history has %d entries after restart, %d before", len(hist2), len(hist))
	}
	// The agents come back on their own and are judged again.
	restart := time.Now()
	s2.waitFor(t, "web", "judged after the restart", func(d api.MachineDetail) bool {
		return d.Verdict != nil && d.Verdict.At.After(restart) && d.State == api.StateUntrusted
	})
	web.stop()
	db.stop()

	// SIGTERM stops the server gracefully.
	s2.proc.stop()
	if code := s2.proc.exited(t, time.Second); code != 0 || !strings.Contains(s2.proc.output(), "verifier stopped") {
		t.Errorf("server after SIGTERM: exit %d\n%s", code, tail(s2.proc.output(), 5))
	}
}

// TestEnrollmentRejections covers the EK rules: vendor-roots mode rejects
// an EK without a vendor certificate, and a name taken by one TPM cannot
// be claimed by another.
func TestEnrollmentRejections(t *testing.T) {
	needSimulator(t)
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "")

	// Vendor-roots mode: the simulator's EK has no certificate.
	a := startAgent(t, s, dir, "unknown", "simulator", demoLog(t, dir, "rhel8-uefi.bin"))
	if code := a.exited(t, 20*time.Second); code != exitMismatch {
		t.Errorf("agent with an unknown EK exited with %d, want %d", code, exitMismatch)
	}
	if out := a.output(); !strings.Contains(out, api.CodeEKUntrusted) {
		t.Errorf("agent output does not name %s:\n%s", api.CodeEKUntrusted, out)
	}
	if _, err := s.machine(t, "unknown"); api.ErrorCode(err) != api.CodeNotFound {
		t.Errorf("machine with an unknown EK was stored: %v", err)
	}
	if out := s.proc.output(); !strings.Contains(out, "--ek-mode tofu") {
		t.Errorf("server without --ek-roots gave no warning:\n%s", out)
	}
	akPath := filepath.Join(dir, "agent-unknown", "ak.bin")
	if _, err := os.Stat(akPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the rejected agent left %s behind (stat: %v)", akPath, err)
	}

	// The same state directory against a tofu server enrolls; a restarted
	// simulator is a new TPM, so the agent then stops on the saved AK.
	tofu := startServer(t, filepath.Join(dir, "tofu"), "", "--ek-mode", "tofu")
	a = startAgent(t, tofu, dir, "unknown", "simulator", demoLog(t, dir, "rhel8-uefi.bin"))
	tofu.waitFor(t, "unknown", "enrolled", func(api.MachineDetail) bool { return true })
	a.stop()
	a = startAgent(t, tofu, dir, "unknown", "simulator", demoLog(t, dir, "rhel8-uefi.bin"))
	if code := a.exited(t, 20*time.Second); code != exitMismatch || !strings.Contains(a.output(), akPath) || !strings.Contains(a.output(), "vouch hosts forget unknown") {
		t.Errorf("agent with another TPM's AK: exit %d, want %d, output:\n%s", code, exitMismatch, tail(a.output(), 10))
	}
}

// swtpm runs Debian's swtpm on a Unix socket with persistent state.
type swtpm struct {
	dir, sock, ctrl string
	proc            *exec.Cmd
	done            chan struct{}
}

func startSwtpm(t *testing.T, dir string) *swtpm {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm is not installed (apt-get install swtpm swtpm-tools)")
	}
	st := &swtpm{dir: dir, sock: filepath.Join(dir, "swtpm.sock"), ctrl: filepath.Join(dir, "swtpm.ctrl")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st.proc = exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+st.sock, "--ctrl", "type=unixio,path="+st.ctrl,
		"--flags", "not-need-init,startup-clear")
	out, _ := os.Create(filepath.Join(dir, "swtpm.log"))
	st.proc.Stdout, st.proc.Stderr = out, out
	if err := st.proc.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	st.done = make(chan struct{})
	go func() { st.proc.Wait(); close(st.done) }()
	t.Cleanup(func() {
		st.proc.Process.Signal(syscall.SIGTERM)
		select {
		case <-st.done:
		case <-time.After(5 * time.Second):
			st.proc.Process.Kill()
			<-st.done
		}
	})
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(st.sock); err == nil {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("swtpm did not create its socket")
	return nil
}

// powerCycle resets the TPM as a reboot does: PCRs return to their reset
// values and resetCount increases at the next TPM2_Startup.
func (st *swtpm) powerCycle(t *testing.T) {
	t.Helper()
	out, err := exec.Command("swtpm_ioctl", "--unix", st.ctrl, "-i").CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm_ioctl -i: %v\n%s", err, out)
	}
}

func (st *swtpm) spec() string { return "swtpm:unix:" + st.sock }

// TestEndToEndSwtpm runs agents on swtpm, whose state outlives the agent:
// an agent restart keeps its identity, a power cycle is a reboot, and the
// TPM's EK cannot enroll under a second name, nor after revocation.
func TestEndToEndSwtpm(t *testing.T) {
	dir := t.TempDir()
	sw := startSwtpm(t, filepath.Join(dir, "swtpm"))
	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-mode", "tofu", "--insecure-auto-approve-reference")
	bootLog := demoLog(t, dir, "ubuntu-2104-no-secure-boot.bin")

	a := startAgent(t, s, dir, "alpha", sw.spec(), bootLog)
	d := s.waitFor(t, "alpha", "trusted", stateIs(api.StateTrusted))
	ek := d.EKSHA256
	a.stop()
	akBefore, err := os.ReadFile(filepath.Join(dir, "agent-alpha", "ak.bin"))
	if err != nil {
		t.Fatal(err)
	}

	// Restart: same state dir, same TPM: no new enrollment, still trusted.
	since := time.Now()
	a = startAgent(t, s, dir, "alpha", sw.spec(), bootLog)
	d = s.waitFor(t, "alpha", "judged after the agent restart", func(d api.MachineDetail) bool {
		return d.Verdict != nil && d.Verdict.At.After(since)
	})
	if d.State != api.StateTrusted || d.BootCount != 1 || d.EKSHA256 != ek {
		t.Errorf("after agent restart: state %s, boots %d, EK %s; want trusted, 1, %s", d.State, d.BootCount, d.EKSHA256, ek)
	}
	if strings.Contains(a.output(), "enrollment challenge") || !strings.Contains(a.output(), "enrolled=true") {
		t.Errorf("restarted agent enrolled again:\n%s", a.output())
	}
	akAfter, _ := os.ReadFile(filepath.Join(dir, "agent-alpha", "ak.bin"))
	if string(akAfter) != string(akBefore) {
		t.Error("the AK changed across the agent restart")
	}
	a.stop()

	// Reboot: power-cycle the TPM; the agent replays the boot again.
	sw.powerCycle(t)
	a = startAgent(t, s, dir, "alpha", sw.spec(), bootLog)
	d = s.waitFor(t, "alpha", "on its second boot", func(d api.MachineDetail) bool { return d.BootCount == 2 })
	if d.State != api.StateTrusted {
		t.Errorf("after reboot: state %s, reasons %+v; want trusted", d.State, d.Verdict)
	}
	var sawReboot bool
	for _, h := range d.History {
		if h.Kind == "reboot" || strings.Contains(h.Detail, "reboot") {
			sawReboot = true
		}
	}
	if !sawReboot {
		t.Errorf("history has no reboot entry: %+v", d.History)
	}
	a.stop()

	// The same TPM under a new name is rejected.
	b := startAgent(t, s, dir, "beta", sw.spec(), bootLog)
	if code := b.exited(t, 20*time.Second); code != exitMismatch || !strings.Contains(b.output(), "already enrolled as") {
		t.Errorf("same EK under a new name: exit %d, output:\n%s", code, tail(b.output(), 10))
	}

	// Another TPM under an existing name is rejected.
	if tpm.SimulatorAvailable {
		other := filepath.Join(dir, "other")
		os.MkdirAll(other, 0o700)
		c := startAgent(t, s, other, "alpha", "simulator", bootLog)
		if code := c.exited(t, 20*time.Second); code != exitMismatch || !strings.Contains(c.output(), "enrolled with another EK") {
			t.Errorf("existing name with another EK: exit %d, output:\n%s", code, tail(c.output(), 10))
		}
	}

	// Revoke: the TPM can never enroll again, under any name.
	s.admin(t, http.MethodPost, "/v1/machines/alpha/revoke", api.RevokeRequest{Reason: "test"})
	s.admin(t, http.MethodDelete, "/v1/machines/alpha", nil)
	g := startAgent(t, s, dir, "gamma", sw.spec(), bootLog)
	if code := g.exited(t, 20*time.Second); code != exitMismatch || !strings.Contains(g.output(), api.CodeEKRevoked) {
		t.Errorf("revoked EK under a new name: exit %d, output:\n%s", code, tail(g.output(), 10))
	}
	var eks []api.EK
	s.client.Do(context.Background(), http.MethodGet, "/v1/eks", nil, &eks)
	found := false
	for _, e := range eks {
		if e.SHA256 == ek && e.Status == "revoked" {
			found = true
		}
	}
	if !found {
		t.Errorf("EK %s not listed as revoked: %+v", ek, eks)
	}
}

// TestHostsCLI drives the admin CLI against a live server.
func TestHostsCLI(t *testing.T) {
	needSimulator(t)
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-mode", "tofu")
	startAgent(t, s, dir, "cli1", "simulator", demoLog(t, dir, "rhel8-uefi.bin"))
	s.waitFor(t, "cli1", "pending", stateIs(api.StatePending))

	run := func(env []string, args ...string) (string, int) {
		cmd := exec.Command(vouchBinary(t), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	tokenFile := filepath.Join(s.dataDir, "admin-token")
	flags := []string{"--server", s.url, "--server-fingerprint", s.fingerprint, "--token-file", tokenFile}
	out, code := run(nil, append([]string{"hosts", "list"}, flags...)...)
	if code != 0 || !strings.Contains(out, "cli1") || !strings.Contains(out, "pending") {
		t.Errorf("hosts list: exit %d\n%s", code, out)
	}
	token, _ := os.ReadFile(tokenFile)
	env := []string{"VOUCH_SERVER=" + s.url, "VOUCH_SERVER_FINGERPRINT=" + s.fingerprint, "VOUCH_TOKEN=" + strings.TrimSpace(string(token))}
	out, code = run(env, "hosts", "approve", "cli1")
	if code != 0 {
		t.Errorf("hosts approve: exit %d\n%s", code, out)
	}
	s.waitFor(t, "cli1", "trusted", stateIs(api.StateTrusted))
	out, code = run(env, "hosts", "list", "-o", "json")
	var ms []api.Machine
	if code != 0 || json.Unmarshal([]byte(out), &ms) != nil || len(ms) != 1 || ms[0].State != api.StateTrusted {
		t.Errorf("hosts list -o json: exit %d\n%s", code, out)
	}
	out, code = run(env, "hosts", "show", "cli1")
	if code != 0 || !strings.Contains(out, "State:     trusted") {
		t.Errorf("hosts show: exit %d\n%s", code, out)
	}

	// Signed attestation results, fetched by the administrator and
	// written by the agent, verify with the server's result key.
	resultKey := filepath.Join(s.dataDir, "result-key.pub")
	fetched := filepath.Join(dir, "result-admin.json")
	if out, code := run(env, "hosts", "result", "cli1", "--out", fetched); code != 0 {
		t.Fatalf("hosts result: exit %d\n%s", code, out)
	}
	out, code = run(nil, "result", "verify", fetched, "--key", resultKey, "--machine", "cli1")
	if code != 0 || !strings.Contains(out, "State:     trusted") {
		t.Errorf("result verify of the fetched result: exit %d\n%s", code, out)
	}
	agentResult := filepath.Join(dir, "agent-cli1", "result.json")
	waitUntil(t, 10*time.Second, "the agent writes result.json", func() bool {
		out, code = run(nil, "result", "verify", agentResult, "--key", resultKey, "-o", "json")
		return code == 0
	})
	if out, code := run(nil, "result", "verify", fetched, "--key", resultKey, "--machine", "cli2"); code != exitMismatch || !strings.Contains(out, `not "cli2"`) {
		t.Errorf("result verify --machine cli2: exit %d\n%s", code, out)
	}
	if out, code := run(nil, "result", "verify", fetched, "--key", resultKey, "--at", "2099-01-01T00:00:00Z"); code != exitMismatch || !strings.Contains(out, "not valid at this time") {
		t.Errorf("result verify of an expired result: exit %d\n%s", code, out)
	}
	if out, code := run(nil, "result", "verify", tokenFile, "--key", resultKey); code != exitUnreadable {
		t.Errorf("result verify of a file that is no result: exit %d\n%s", code, out)
	}

	// A config file works too.
	cfg := filepath.Join(dir, "client.json")
	os.WriteFile(cfg, fmt.Appendf(nil, `{"server": %q, "server_fingerprint": %q, "token_file": %q}`, s.url, s.fingerprint, tokenFile), 0o600)
	out, code = run([]string{"VOUCH_CONFIG=" + cfg}, "hosts", "history", "cli1")
	if code != 0 || !strings.Contains(out, "enrolled") {
		t.Errorf("hosts history with a config file: exit %d\n%s", code, out)
	}

	// Without a token, and with a wrong fingerprint.
	out, code = run([]string{"VOUCH_CONFIG=/nonexistent"}, "hosts", "list", "--server", s.url)
	if code != exitUsage {
		t.Errorf("hosts list without a config: exit %d\n%s", code, out)
	}
	out, code = run([]string{"VOUCH_TOKEN=vouch_wrong"}, "hosts", "list", "--server", s.url, "--server-fingerprint", s.fingerprint)
	if code != exitUsage || !strings.Contains(out, "unauthorized") {
		t.Errorf("hosts list with a wrong token: exit %d\n%s", code, out)
	}
	wrongFP := strings.Repeat("00", 32)
	out, code = run(env[2:], "hosts", "list", "--server", s.url, "--server-fingerprint", wrongFP)
	if code != exitUnavailable || !strings.Contains(out, "pinned fingerprint") {
		t.Errorf("hosts list with a wrong fingerprint: exit %d\n%s", code, out)
	}

	// A per-machine interval, then back to the default.
	out, code = run(env, "hosts", "interval", "cli1", "30s", "-o", "json")
	var m api.Machine
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m.IntervalSeconds != 30 {
		t.Errorf("hosts interval 30s: exit %d\n%s", code, out)
	}
	out, code = run(env, "hosts", "interval", "cli1", "0")
	if code != 0 || !strings.Contains(out, "default interval") {
		t.Errorf("hosts interval 0: exit %d\n%s", code, out)
	}
	out, code = run(env, "hosts", "interval", "cli1", "10ms")
	if code != exitUsage {
		t.Errorf("hosts interval 10ms: exit %d\n%s", code, out)
	}

	// Revoke, then forget; ek list shows the EK revoked.
	out, code = run(env, "hosts", "revoke", "cli1", "--reason", "decommissioned")
	if code != 0 {
		t.Errorf("hosts revoke: exit %d\n%s", code, out)
	}
	out, _ = run(env, "ek", "list")
	if !strings.Contains(out, "revoked") {
		t.Errorf("ek list after revoke:\n%s", out)
	}
	out, code = run(env, "hosts", "forget", "cli1")
	if code != 0 {
		t.Errorf("hosts forget: exit %d\n%s", code, out)
	}
	out, code = run(env, "hosts", "show", "cli1")
	if code != exitUsage || !strings.Contains(out, "not_found") {
		t.Errorf("hosts show after forget: exit %d\n%s", code, out)
	}

	// Token rotation: the new token works, the old one no longer does.
	newToken := filepath.Join(dir, "new-token")
	if out, code := run(env, "token", "rotate", "--out", newToken); code != 0 {
		t.Fatalf("token rotate: exit %d\n%s", code, out)
	}
	if fi, err := os.Stat(newToken); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new token file: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}
	if out, code := run(env[:2], "hosts", "list", "--token-file", newToken); code != 0 {
		t.Errorf("hosts list with the rotated token: exit %d\n%s", code, out)
	}
	if out, code := run(env, "hosts", "list"); code != exitUsage || !strings.Contains(out, "unauthorized") {
		t.Errorf("hosts list with the old token: exit %d\n%s", code, out)
	}
}

// provisionSwtpm manufactures a swtpm state with EK certificates signed by
// a local CA in dir (swtpm_setup with swtpm_localca, kept out of the
// system-wide /var/lib/swtpm-localca), and returns the CA's root and
// intermediate certificate files.
func provisionSwtpm(t *testing.T, dir string) (root, intermediate string) {
	t.Helper()
	if _, err := exec.LookPath("swtpm_setup"); err != nil {
		t.Skip("swtpm_setup is not installed (apt-get install swtpm-tools)")
	}
	ca := filepath.Join(dir, "localca")
	for _, d := range []string{ca, filepath.Join(dir, "swtpm")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	localConf := filepath.Join(dir, "localca.conf")
	os.WriteFile(localConf, fmt.Appendf(nil, "statedir = %s\nsigningkey = %s/signkey.pem\nissuercert = %s/issuercert.pem\ncertserial = %s/certserial\n", ca, ca, ca, ca), 0o600)
	options := filepath.Join(dir, "localca.options")
	os.WriteFile(options, []byte("--platform-manufacturer vouch-test\n--platform-version 1\n--platform-model swtpm\n"), 0o600)
	setupConf := filepath.Join(dir, "swtpm_setup.conf")
	os.WriteFile(setupConf, fmt.Appendf(nil, "create_certs_tool = swtpm_localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\nactive_pcr_banks = sha256,sha1\n", localConf, options), 0o600)
	out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", filepath.Join(dir, "swtpm"), "--create-ek-cert", "--config", setupConf).CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	return filepath.Join(ca, "swtpm-localca-rootca-cert.pem"), filepath.Join(ca, "issuercert.pem")
}

// TestVendorRootsSwtpm enrolls a swtpm whose EK certificate chains to the
// configured roots, and rejects it when the roots are another vendor's.
func TestVendorRootsSwtpm(t *testing.T) {
	dir := t.TempDir()
	root, intermediate := provisionSwtpm(t, dir)
	sw := startSwtpm(t, filepath.Join(dir, "swtpm"))
	bootLog := demoLog(t, dir, "rhel8-uefi.bin")

	// Roots of another vendor: the real TPM vendor CAs in testdata.
	other := startServer(t, filepath.Join(dir, "data-other"), "", "--ek-roots", "testdata/ekroots")
	a := startAgent(t, other, dir, "vendor", sw.spec(), bootLog)
	if code := a.exited(t, 20*time.Second); code != exitMismatch || !strings.Contains(a.output(), api.CodeEKUntrusted) {
		t.Errorf("EK certificate of an unknown vendor: exit %d\n%s", code, tail(a.output(), 10))
	}
	other.proc.stop()

	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-roots", root, "--ek-intermediates", intermediate)
	second := filepath.Join(dir, "second")
	os.MkdirAll(second, 0o700)
	a = startAgent(t, s, second, "vendor", sw.spec(), bootLog)
	d := s.waitFor(t, "vendor", "pending with learned reference values", func(d api.MachineDetail) bool {
		return d.State == api.StatePending && hasReason(d, "reference_unapproved")
	})
	var eks []api.EK
	s.client.Do(context.Background(), http.MethodGet, "/v1/eks", nil, &eks)
	if len(eks) != 1 || eks[0].SHA256 != d.EKSHA256 || !strings.Contains(eks[0].Note, "vendor-root") {
		t.Errorf("EKs = %+v, want the machine's EK trusted by a vendor root", eks)
	}
	a.stop()
}

// recordingProxy sits between agents and the server with the server's own
// certificate (read from its data directory), forwards every request and
// keeps the evidence bodies, as an attacker on the path with the server's
// key would see them.
type recordingProxy struct {
	url      string
	mu       sync.Mutex
	evidence map[string][][]byte // machine name -> evidence bodies
}

func startRecordingProxy(t *testing.T, s *testServer) *recordingProxy {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.dataDir, "server.pem"), filepath.Join(s.dataDir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(s.url)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = s.client.HTTP.Transport
	p := &recordingProxy{evidence: map[string][][]byte{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/agents/"); ok && strings.HasSuffix(rest, "/evidence") {
			body, _ := io.ReadAll(r.Body)
			p.mu.Lock()
			name := strings.TrimSuffix(rest, "/evidence")
			p.evidence[name] = append(p.evidence[name], body)
			p.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *recordingProxy) last(name string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.evidence[name]
	if len(list) == 0 {
		return nil
	}
	return list[len(list)-1]
}

// TestReplayAndForeignEvidence replays evidence captured on the wire from
// real agent processes: the same evidence again (a reused nonce), and one
// machine's evidence sent for another machine's challenge.
func TestReplayAndForeignEvidence(t *testing.T) {
	needSimulator(t)
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-mode", "tofu", "--insecure-auto-approve-reference")
	proxy := startRecordingProxy(t, s)
	viaProxy := &testServer{url: proxy.url, fingerprint: s.fingerprint}
	alice := startAgent(t, viaProxy, dir, "alice", "simulator", demoLog(t, dir, "rhel8-uefi.bin"))
	bob := startAgent(t, viaProxy, dir, "bob", "simulator", demoLog(t, dir, "cos-85-amd-sev.bin"))
	s.waitFor(t, "alice", "trusted", stateIs(api.StateTrusted))
	s.waitFor(t, "bob", "trusted", stateIs(api.StateTrusted))
	// Stopped agents leave no evidence in flight, so the recorded bodies
	// have all been judged.
	alice.stop()
	bob.stop()

	anon := &api.Client{BaseURL: s.url, HTTP: s.client.HTTP}
	post := func(name string, body []byte) (int, error) {
		var raw json.RawMessage = body
		return anon.Do(context.Background(), http.MethodPost, "/v1/agents/"+name+"/evidence", raw, nil)
	}

	// Bob's evidence for a fresh challenge of Alice's: Bob's AK signed it.
	var ch api.Challenge
	// Alice's agent is stopped: the server reports that no agent is
	// connected, and still makes her next challenge due now.
	if _, err := s.client.Do(context.Background(), http.MethodPost, "/v1/machines/alice/attest", nil, nil); err != nil && api.ErrorCode(err) != api.CodeNoAgent {
		t.Fatalf("attest alice: %v", err)
	}
	if _, err := anon.Do(context.Background(), http.MethodGet, "/v1/agents/alice/challenge?wait=5", nil, &ch); err != nil {
		t.Fatal(err)
	}
	var bobs api.Evidence
	if err := json.Unmarshal(proxy.last("bob"), &bobs); err != nil {
		t.Fatal(err)
	}
	bobs.ChallengeID = ch.ID
	forged, _ := json.Marshal(bobs)
	status, err := post("alice", forged)
	if status != http.StatusForbidden || api.ErrorCode(err) != api.CodeEvidence {
		t.Errorf("bob's evidence for alice: status %d, %v; want 403 %s", status, err, api.CodeEvidence)
	}
	if d, _ := s.machine(t, "alice"); d.State != api.StateTrusted {
		t.Errorf("alice after forged evidence: %s", d.State)
	}

	// Alice's last evidence again: its nonce was used already.
	status, err = post("alice", proxy.last("alice"))
	if status != http.StatusConflict || api.ErrorCode(err) != api.CodeChallenge {
		t.Errorf("replayed evidence: status %d, %v; want 409 %s", status, err, api.CodeChallenge)
	}
	d := s.waitFor(t, "alice", "untrusted", stateIs(api.StateUntrusted))
	if !hasReason(d, "nonce_reused") {
		t.Errorf("alice after the replay: %+v", d.Verdict)
	}
}

// waitUntil polls ok every 200 ms until it returns true, and fails the
// test when it has not within timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting until %s", timeout, what)
}
