package verifier

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/agent"
	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/store"
	"github.com/vouch-attest/vouch/tpm"
)

// The reference simulator runs once per process: tests share it and each
// creates its own AKs.
var (
	simOnce sync.Once
	simTPM  *tpm.TPM
	simErr  error
)

func simulator(t *testing.T) *tpm.TPM {
	t.Helper()
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no TPM simulator (cgo disabled)")
	}
	simOnce.Do(func() {
		simTPM, simErr = tpm.Open(tpm.Config{Transport: "simulator"})
		if simErr != nil {
			return
		}
		// The boot replay needs no saved AK: a directory of its own keeps
		// it from loading an AK another run left behind.
		var dir string
		dir, simErr = os.MkdirTemp("", "vouch-sim-")
		if simErr != nil {
			return
		}
		defer os.RemoveAll(dir)
		var dev *agent.DeviceTPM
		dev, simErr = agent.NewDeviceTPM(simTPM, dir)
		if simErr == nil {
			_, simErr = agent.SimulateBoot(dev, readTestLog(t))
		}
	})
	if simErr != nil {
		t.Fatal(simErr)
	}
	return simTPM
}

func readTestLog(t *testing.T) []byte {
	raw, err := os.ReadFile("../cmd/vouch/testdata/demo/rhel8-uefi.bin")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type harness struct {
	srv    *Server
	store  *store.SQLite
	http   *httptest.Server
	admin  *api.Client
	anon   *api.Client
	logDir string
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "vouch.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	if cfg.Backend == nil {
		cfg.Backend = &AttestBackend{}
	}
	if cfg.EKMode == "" {
		cfg.EKMode = EKModeTOFU
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Hour // tests ask for challenges explicitly
	}
	if cfg.PCRs == nil {
		// Without PCR 10: TestIMAVerifiedIncrementally extends it in the
		// shared simulator.
		cfg.PCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	token, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{
		srv: srv, store: st, http: hs, logDir: dir,
		admin: &api.Client{BaseURL: hs.URL, Token: strings.TrimSpace(string(token))},
		anon:  &api.Client{BaseURL: hs.URL},
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newAgent enrolls a machine on the shared simulator with an AK of its own.
func (h *harness) newAgent(t *testing.T, name string, logPath string) *agent.Agent {
	t.Helper()
	stateDir := t.TempDir()
	dev, err := agent.NewDeviceTPM(simulator(t), stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if logPath == "" {
		logPath = filepath.Join(t.TempDir(), "eventlog.bin")
		if err := os.WriteFile(logPath, readTestLog(t), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := agent.New(agent.Config{Server: h.http.URL, Name: name, StateDir: stateDir, EventLogPath: logPath, TPM: dev})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (h *harness) challenge(t *testing.T, name string) *api.Challenge {
	t.Helper()
	h.srv.kick(name)
	var ch api.Challenge
	status, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/"+name+"/challenge?wait=5", nil, &ch)
	if err != nil || status != http.StatusOK {
		t.Fatalf("challenge for %s: status %d, %v", name, status, err)
	}
	return &ch
}

func (h *harness) send(name string, ev *api.Evidence) (api.Verdict, int, error) {
	var v api.Verdict
	status, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/agents/"+name+"/evidence", ev, &v)
	return v, status, err
}

func (h *harness) machine(t *testing.T, name string) store.Machine {
	t.Helper()
	m, err := h.store.Machine(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// attest runs one challenge-evidence round and returns the verdict.
func (h *harness) attest(t *testing.T, a *agent.Agent) api.Verdict {
	t.Helper()
	ch := h.challenge(t, a.Name())
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := h.send(a.Name(), ev)
	if err != nil {
		t.Fatalf("evidence: %v", err)
	}
	return v
}

func TestAttestationLifecycle(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.newAgent(t, "m1", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := h.machine(t, "m1")
	if m.State != store.StatePending || m.Reasons[0] != ReasonAwaitingAttestation {
		t.Errorf("after enrollment: %s %v", m.State, m.Reasons)
	}
	v := h.attest(t, a)
	if v.State != api.StatePending || v.Reasons[0].Code != ReasonReferenceUnapproved || v.BootCount != 1 {
		t.Errorf("first verdict = %+v, want pending reference_unapproved on boot 1", v)
	}
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/m1/approve", nil, nil); err != nil {
		t.Fatal(err)
	}
	v = h.attest(t, a)
	if v.State != api.StateTrusted || len(v.Reasons) != 0 {
		t.Errorf("verdict after approval = %+v, want trusted", v)
	}
	// The agent omits the unchanged log once the server has it.
	ch := h.challenge(t, "m1")
	if ch.EventLogSHA256 == "" {
		t.Fatal("challenge does not carry the known event log digest")
	}
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.EventLog) != 0 {
		t.Error("agent sent an unchanged event log")
	}
	if v, _, err := h.send("m1", ev); err != nil || v.State != api.StateTrusted {
		t.Errorf("verdict with an omitted log = %+v, %v", v, err)
	}
}

func TestReplayedNonceRejected(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	a := h.newAgent(t, "replay", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch := h.challenge(t, "replay")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := h.send("replay", ev); err != nil || v.State != api.StateTrusted {
		t.Fatalf("first answer: %+v, %v", v, err)
	}
	_, status, err := h.send("replay", ev)
	if status != http.StatusConflict || api.ErrorCode(err) != api.CodeChallenge {
		t.Errorf("replayed evidence: status %d, %v; want 409 %s", status, err, api.CodeChallenge)
	}
	m := h.machine(t, "replay")
	if m.State != store.StateUntrusted || m.Reasons[0] != ReasonNonceReused {
		t.Errorf("after the replay: %s %v, want untrusted nonce_reused", m.State, m.Reasons)
	}
}

func TestEvidenceFromAnotherAKRejected(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	victim := h.newAgent(t, "victim", "")
	if err := victim.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, victim)
	// Another machine's agent (its own AK) sends evidence for the victim's
	// challenge.
	other := h.newAgent(t, "other", "")
	ch := h.challenge(t, "victim")
	ev, err := other.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	_, status, err := h.send("victim", ev)
	if status != http.StatusForbidden || api.ErrorCode(err) != api.CodeEvidence {
		t.Errorf("evidence signed by another AK: status %d, %v; want 403 %s", status, err, api.CodeEvidence)
	}
	if !strings.Contains(err.Error(), "signature") {
		t.Errorf("error %q does not mention the signature", err)
	}
	// Evidence not signed by the victim's AK proves nothing about the
	// victim, so its state stays.
	m := h.machine(t, "victim")
	if m.State != store.StateTrusted {
		t.Errorf("victim after forged evidence: %s %v, want trusted", m.State, m.Reasons)
	}
}

func TestUnknownAndForeignChallenges(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	a := h.newAgent(t, "c1", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch := h.challenge(t, "c1")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	// Evidence for c1's challenge sent to another machine's endpoint.
	if _, status, err := h.send("c2", ev); status != http.StatusBadRequest || api.ErrorCode(err) != api.CodeChallenge {
		t.Errorf("foreign challenge: %d %v", status, err)
	}
	ev.ChallengeID = "0000"
	if _, status, err := h.send("c1", ev); status != http.StatusBadRequest || api.ErrorCode(err) != api.CodeChallenge {
		t.Errorf("unknown challenge: %d %v", status, err)
	}
	if _, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/c2/challenge?wait=0", nil, nil); api.ErrorCode(err) != api.CodeNotEnrolled {
		t.Errorf("challenge for an unknown machine: %v", err)
	}
}

func TestExpiredChallengeRejected(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := newHarness(t, Config{Now: clock, ChallengeTTL: 10 * time.Second})
	a := h.newAgent(t, "late", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch := h.challenge(t, "late")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	_, status, err := h.send("late", ev)
	if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(err), "expired") {
		t.Errorf("late evidence: %d %v", status, err)
	}
}

func TestClockBackwardsUntrusted(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	a := h.newAgent(t, "clock", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	// Pretend an earlier quote of this boot showed a later clock.
	m := h.machine(t, "clock")
	m.Clock += 1 << 40
	if err := h.store.UpdateMachine(context.Background(), m, store.Event{}); err != nil {
		t.Fatal(err)
	}
	v := h.attest(t, a)
	if v.State != api.StateUntrusted || v.Reasons[0].Code != ReasonClockBackwards {
		t.Errorf("verdict = %+v, want untrusted clock_backwards", v)
	}
	// A resetCount lower than the last one is a cleared TPM or an old quote.
	m = h.machine(t, "clock")
	m.ResetCount += 5
	if err := h.store.UpdateMachine(context.Background(), m, store.Event{}); err != nil {
		t.Fatal(err)
	}
	v = h.attest(t, a)
	if v.State != api.StateUntrusted || v.Reasons[0].Code != ReasonResetCountBackwards {
		t.Errorf("verdict = %+v, want untrusted reset_count_backwards", v)
	}
}

func TestNewBootDetected(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	a := h.newAgent(t, "boot", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	// The simulator cannot be reset from here. A lower stored resetCount
	// is what the verifier observes after the machine rebooted.
	m := h.machine(t, "boot")
	m.ResetCount--
	if m.ResetCount > 1<<31 {
		t.Skip("the simulator's resetCount is 0: cannot model a previous boot")
	}
	if err := h.store.UpdateMachine(context.Background(), m, store.Event{}); err != nil {
		t.Fatal(err)
	}
	v := h.attest(t, a)
	if v.State != api.StateTrusted || v.BootCount != 2 {
		t.Errorf("verdict = %+v, want trusted on boot 2", v)
	}
	hist, _ := h.store.History(context.Background(), "boot", 1)
	if len(hist) != 1 || hist[0].Kind != "reboot" {
		t.Errorf("last history entry = %+v, want a reboot", hist)
	}
}

func TestMissingEventLogReported(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	missing := filepath.Join(t.TempDir(), "binary_bios_measurements")
	a := h.newAgent(t, "nolog", missing)
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := h.attest(t, a)
	if v.State != api.StateUntrusted || v.Reasons[0].Code != ReasonEventLogMissing {
		t.Fatalf("verdict = %+v, want untrusted eventlog_missing", v)
	}
	if !strings.Contains(v.Reasons[0].Message, missing) {
		t.Errorf("message %q does not name the missing file", v.Reasons[0].Message)
	}
}

func TestTamperedLogNamesEvent(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	logPath := filepath.Join(t.TempDir(), "eventlog.bin")
	if err := os.WriteFile(logPath, readTestLog(t), 0o600); err != nil {
		t.Fatal(err)
	}
	a := h.newAgent(t, "tamper", logPath)
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := h.attest(t, a); v.State != api.StateTrusted {
		t.Fatalf("before tampering: %+v", v)
	}
	// Alter one digest of a PCR 4 event: the replay no longer matches.
	altered := readTestLog(t)
	log, err := eventlog.Parse(altered)
	if err != nil {
		t.Fatal(err)
	}
	target := -1
	for i, e := range log.Events {
		if e.PCR == 4 && e.Type == eventlog.EV_EFI_BOOT_SERVICES_APPLICATION {
			target = i
			break
		}
	}
	if target < 0 {
		t.Fatal("test log has no boot application in PCR 4")
	}
	for _, d := range log.Events[target].Digests {
		d.Value[0] ^= 0xff // shares memory with altered
	}
	if err := os.WriteFile(logPath, altered, 0o600); err != nil {
		t.Fatal(err)
	}
	v := h.attest(t, a)
	if v.State != api.StateUntrusted || len(v.Reasons) == 0 {
		t.Fatalf("altered log: %+v", v)
	}
	for _, r := range v.Reasons {
		if r.Code != ReasonEventLogMismatch || r.PCR == nil || *r.PCR != 4 {
			t.Errorf("reason = %+v, want %s on PCR 4", r, ReasonEventLogMismatch)
		}
		if !strings.Contains(r.Message, fmt.Sprintf("#%d EV_EFI_BOOT_SERVICES_APPLICATION", log.Events[target].Number)) {
			t.Errorf("message %q does not list the altered event", r.Message)
		}
	}
}

func TestUnreachableAfterMissedIntervals(t *testing.T) {
	// The limit is UnreachableAfter intervals (0.4 s here), whatever the
	// challenge TTL; the sweep runs every 200 ms at this interval.
	h := newHarness(t, Config{Interval: 200 * time.Millisecond, UnreachableAfter: 2, ChallengeTTL: 10 * time.Second, AutoApproveReference: true})
	a := h.newAgent(t, "gone", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	last := h.machine(t, "gone").LastVerdictAt
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := h.machine(t, "gone"); m.State == store.StateUnreachable {
			if late := m.StateSince.Sub(last); late < 400*time.Millisecond || late > 2*time.Second {
				t.Errorf("unreachable %s after the last verdict, want 0.4 s to 2 s (2 intervals of 200 ms)", late)
			}
			hist, _ := h.store.History(context.Background(), "gone", 1)
			if hist[0].To != store.StateUnreachable {
				t.Errorf("history = %+v", hist[0])
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("machine never became unreachable")
}

func TestEnrollmentRules(t *testing.T) {
	h := newHarness(t, Config{EKMode: EKModePinned})
	a := h.newAgent(t, "pinme", "")
	err := a.Enroll(context.Background())
	if api.ErrorCode(err) != api.CodeEKUntrusted || !strings.Contains(err.Error(), "vouch ek pin") {
		t.Fatalf("unpinned EK in pinned mode: %v", err)
	}
	// Pin the EK by its public key, as 'vouch ek pin' does.
	tp := simulator(t)
	ek, err := tp.EK(tpm.RSA)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(ek.Key)
	if err != nil {
		t.Fatal(err)
	}
	var pinned api.EK
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/eks", api.PinEKRequest{PublicKey: pkix}, &pinned); err != nil {
		t.Fatal(err)
	}
	if pinned.Status != store.EKPinned || pinned.SHA256 != EKHash(pkix) {
		t.Errorf("pinned EK = %+v", pinned)
	}
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatalf("pinned EK: %v", err)
	}
	// A second AK of the same TPM under the same name needs a forget first.
	again := h.newAgent(t, "pinme", "")
	if err := again.Enroll(context.Background()); api.ErrorCode(err) != api.CodeConflict {
		t.Errorf("second AK for an enrolled machine: %v", err)
	}
	// Same TPM, new name.
	other := h.newAgent(t, "pinme-2", "")
	if err := other.Enroll(context.Background()); api.ErrorCode(err) != api.CodeConflict || !strings.Contains(err.Error(), `"pinme"`) {
		t.Errorf("same EK under a new name: %v", err)
	}
	// Revoke, forget: the TPM cannot come back under any name.
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/pinme/revoke", api.RevokeRequest{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/pinme/challenge?wait=0", nil, nil); api.ErrorCode(err) != api.CodeEKRevoked {
		t.Errorf("challenge for a revoked machine: %v", err)
	}
	var eks []api.EK
	if _, err := h.admin.Do(context.Background(), http.MethodGet, "/v1/eks", nil, &eks); err != nil {
		t.Fatal(err)
	}
	for _, ek := range eks {
		if ek.SHA256 == pinned.SHA256 && ek.Note != "revoked with machine pinme" {
			t.Errorf("note of an EK revoked without a reason: %q, want %q", ek.Note, "revoked with machine pinme")
		}
	}
	if _, err := h.admin.Do(context.Background(), http.MethodDelete, "/v1/machines/pinme", nil, nil); err != nil {
		t.Fatal(err)
	}
	fresh := h.newAgent(t, "pinme-3", "")
	if err := fresh.Enroll(context.Background()); api.ErrorCode(err) != api.CodeEKRevoked {
		t.Errorf("revoked EK under a new name: %v", err)
	}
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/eks", api.PinEKRequest{PublicKey: pkix}, nil); api.ErrorCode(err) != api.CodeEKRevoked {
		t.Errorf("pinning a revoked EK: %v", err)
	}
}

func TestVendorRootsModeRejectsEKWithoutCertificate(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	h := newHarness(t, Config{EKMode: EKModeVendorRoots, Logger: logger})
	mu.Lock()
	started := logs.String()
	mu.Unlock()
	for _, want := range []string{"level=WARN", "--ek-roots", "vouch ek pin", "--ek-mode tofu"} {
		if !strings.Contains(started, want) {
			t.Errorf("start log without roots does not contain %q:\n%s", want, started)
		}
	}
	a := h.newAgent(t, "nocert", "")
	err := a.Enroll(context.Background())
	if api.ErrorCode(err) != api.CodeEKUntrusted || !strings.Contains(err.Error(), "no certificate") || !strings.Contains(err.Error(), "--ek-mode tofu") {
		t.Errorf("EK without certificate in vendor-roots mode: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestActivationWithWrongSecret(t *testing.T) {
	h := newHarness(t, Config{})
	tp := simulator(t)
	dev, err := agent.NewDeviceTPM(tp, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ekPub, _, _ := dev.EK()
	var ch api.EnrollChallenge
	if _, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll", api.EnrollRequest{Name: "liar", EKPublicArea: ekPub, AKPublic: dev.AKPublic()}, &ch); err != nil {
		t.Fatal(err)
	}
	_, err = h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll/"+ch.EnrollmentID+"/activate", api.ActivateRequest{Secret: make([]byte, 32)}, nil)
	if api.ErrorCode(err) != api.CodeActivation {
		t.Errorf("wrong secret: %v", err)
	}
	// One try per challenge: the right secret after a wrong one fails too.
	secret, err := dev.ActivateCredential(ch.Credential, ch.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll/"+ch.EnrollmentID+"/activate", api.ActivateRequest{Secret: secret}, nil)
	if api.ErrorCode(err) != api.CodeActivation {
		t.Errorf("second activation attempt: %v", err)
	}
	if _, err := h.store.Machine(context.Background(), "liar"); err == nil {
		t.Error("machine enrolled after a failed activation")
	}
}

func TestRequestValidation(t *testing.T) {
	h := newHarness(t, Config{})
	post := func(path, body string) (int, api.Error) {
		resp, err := http.Post(h.http.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	if code, e := post("/v1/enroll", `{"name":"bad name!"}`); code != 400 || !strings.Contains(e.Message, "invalid machine name") {
		t.Errorf("bad name: %d %+v", code, e)
	}
	// Look-alikes of a host name: a name in another case, or with the
	// trailing dot of a fully qualified DNS name.
	for name, want := range map[string]string{"WEB1": `use "web1"`, "web1.": `use "web1"`, "Web1.example.": `use "web1.example"`} {
		if code, e := post("/v1/enroll", `{"name":"`+name+`"}`); code != 400 || !strings.Contains(e.Message, want) {
			t.Errorf("look-alike name %q: %d %+v, want 400 with %q", name, code, e, want)
		}
	}
	if code, e := post("/v1/enroll", `{"name":"x","surprise":1}`); code != 400 || e.Code != api.CodeBadRequest {
		t.Errorf("unknown field: %d %+v", code, e)
	}
	big := `{"name":"` + strings.Repeat("a", api.MaxRequestBytes) + `"}`
	if code, e := post("/v1/enroll", big); code != 413 || e.Code != api.CodeTooLarge {
		t.Errorf("oversized body: %d %+v", code, e)
	}
	if code, e := post("/v1/enroll", `{"name":"x","ek_public_area":"AAAA"}`); code != 400 || e.Code != api.CodeEKUntrusted {
		t.Errorf("garbage EK: %d %+v", code, e)
	}
	if code, e := post("/v1/nothing", `{}`); code != 404 || e.Code != api.CodeNotFound {
		t.Errorf("unknown endpoint: %d %+v", code, e)
	}
	resp, err := http.Get(h.http.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc["openapi"] == nil {
		t.Errorf("openapi document: %v %v", err, doc["openapi"])
	}
	resp.Body.Close()
}

func TestAdminTokenRotation(t *testing.T) {
	h := newHarness(t, Config{})
	fi, err := os.Stat(filepath.Join(h.logDir, tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, want 0600", fi.Mode().Perm())
	}
	if _, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/machines", nil, nil); api.ErrorCode(err) != api.CodeUnauthorized {
		t.Errorf("no token: %v", err)
	}
	var tok api.TokenResponse
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/token/rotate", nil, &tok); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.Do(context.Background(), http.MethodGet, "/v1/machines", nil, nil); api.ErrorCode(err) != api.CodeUnauthorized {
		t.Errorf("old token after rotation: %v", err)
	}
	h.admin.Token = tok.Token
	if _, err := h.admin.Do(context.Background(), http.MethodGet, "/v1/machines", nil, nil); err != nil {
		t.Errorf("new token: %v", err)
	}
	onDisk, _ := os.ReadFile(filepath.Join(h.logDir, tokenFile))
	if strings.TrimSpace(string(onDisk)) != tok.Token {
		t.Error("token file does not hold the new token")
	}
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	h := newHarness(t, Config{})
	var doc struct {
		Paths map[string]map[string]struct {
			Security []map[string][]string `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	for _, rt := range h.srv.routes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("openapi.json does not document %s", rt.pattern)
			continue
		}
		if documented := len(op.Security) > 0; documented != rt.admin {
			t.Errorf("%s: admin %v in code, security %v in openapi.json", rt.pattern, rt.admin, op.Security)
		}
	}
}

func TestIMAVerifiedIncrementally(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14}})
	stateDir := t.TempDir()
	dev, err := agent.NewDeviceTPM(simulator(t), stateDir)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(stateDir, "eventlog.bin")
	os.WriteFile(logPath, readTestLog(t), 0o600)
	imaPath := filepath.Join(stateDir, "ima.bin")
	if err := agent.SimulateIMA(dev, imaPath, []string{"/usr/bin/a", "/usr/bin/b", "/usr/bin/c"}); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Server: h.http.URL, Name: "ima", StateDir: stateDir, EventLogPath: logPath, IMAPath: imaPath, TPM: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := h.attest(t, a); v.State != api.StateTrusted {
		t.Fatalf("first round: %+v", v)
	}
	if m := h.machine(t, "ima"); m.IMAOffset != 4 {
		t.Errorf("IMA offset = %d, want 4 (boot_aggregate and 3 files)", m.IMAOffset)
	}

	// Two more measurements: only they are sent.
	if err := agent.SimulateIMA(dev, imaPath, []string{"/usr/bin/d", "/usr/bin/e"}); err != nil {
		t.Fatal(err)
	}
	ch := h.challenge(t, "ima")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	if ev.IMA == nil || ev.IMA.Offset != 4 {
		t.Fatalf("IMA evidence = %+v, want entries from offset 4", ev.IMA)
	}
	if v, _, err := h.send("ima", ev); err != nil || v.State != api.StateTrusted {
		t.Fatalf("second round: %+v %v", v, err)
	}
	if m := h.machine(t, "ima"); m.IMAOffset != 6 {
		t.Errorf("IMA offset = %d, want 6", m.IMAOffset)
	}

	// An extend of PCR 10 that the list does not record.
	if _, err := dev.Extend(10, map[attest.Algorithm][]byte{attest.AlgSHA256: make([]byte, 32), attest.AlgSHA1: make([]byte, 20)}); err != nil {
		t.Fatal(err)
	}
	var v api.Verdict
	for range 5 { // entries may stay pending for a few rounds before failing
		v = h.attest(t, a)
		if v.State == api.StateUntrusted {
			break
		}
	}
	if v.State != api.StateUntrusted || v.Reasons[0].Code != ReasonIMAPCRMismatch {
		t.Errorf("after an unrecorded PCR 10 extend: %+v", v)
	}

	// Without an IMA list, a machine whose PCR 10 was extended is untrusted.
	noIMA, err := agent.New(agent.Config{Server: h.http.URL, Name: "ima", StateDir: stateDir, EventLogPath: logPath, IMAPath: filepath.Join(stateDir, "missing"), TPM: dev})
	if err != nil {
		t.Fatal(err)
	}
	if v := h.attest(t, noIMA); v.State != api.StateUntrusted || v.Reasons[0].Code != ReasonIMAMissing {
		t.Errorf("missing IMA list: %+v", v)
	}
}

func TestRestartKeepsSchedule(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	a := h.newAgent(t, "sched", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)

	// A new server on the same store, as after a restart: the machine was
	// attested just now, so its next challenge waits about an interval.
	srv, err := New(Config{Store: h.store, Backend: &AttestBackend{}, EKMode: EKModeTOFU, Interval: time.Hour}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	c := &api.Client{BaseURL: hs.URL}
	status, err := c.Do(context.Background(), http.MethodGet, "/v1/agents/sched/challenge?wait=0.2", nil, nil)
	if err != nil || status != http.StatusNoContent {
		t.Errorf("challenge right after a restart: status %d, %v; want 204", status, err)
	}
	// A machine that was never attested is challenged at once.
	m := h.machine(t, "sched")
	m.LastVerdictAt = time.Time{}
	if err := h.store.UpdateMachine(context.Background(), m, store.Event{}); err != nil {
		t.Fatal(err)
	}
	srv2, err := New(Config{Store: h.store, Backend: &AttestBackend{}, EKMode: EKModeTOFU, Interval: time.Hour}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	hs2 := httptest.NewServer(srv2.Handler())
	defer hs2.Close()
	var ch api.Challenge
	status, err = (&api.Client{BaseURL: hs2.URL}).Do(context.Background(), http.MethodGet, "/v1/agents/sched/challenge?wait=0.2", nil, &ch)
	if err != nil || status != http.StatusOK || len(ch.Nonce) != api.NonceSize {
		t.Errorf("challenge for a machine never attested: status %d, %v", status, err)
	}
}
