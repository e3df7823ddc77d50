// Package agent is the vouch agent. It enrolls its machine's TPM with the
// vouch server, then keeps an outbound session open and responds to each
// challenge with a quote, the PCR values of every active bank and the
// event log.
package agent

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
)

// DefaultIMAPath is the securityfs file of the binary IMA measurement list.
const DefaultIMAPath = "/sys/kernel/security/ima/binary_runtime_measurements"

// DefaultEventLogPath is the securityfs file of the firmware's TCG event log on Linux.
const DefaultEventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// TPM is the set of TPM operations the agent uses. The tpm package provides the
// implementation for devices, swtpm and the simulator.
type TPM interface {
	// EK returns the EK's TPMT_PUBLIC and its certificate (nil if none).
	EK() (publicArea, certificate []byte, err error)
	// AKPublic returns the TPMT_PUBLIC of the AK the agent attests with.
	AKPublic() []byte
	// ActivateCredential recovers the secret of a MakeCredential challenge
	// bound to the EK and the AK.
	ActivateCredential(credential, encryptedSecret []byte) ([]byte, error)
	// Quote signs pcrs of every active bank over nonce with the AK and
	// returns the TPMS_ATTEST, the TPMT_SIGNATURE and the PCR values.
	Quote(nonce []byte, pcrs []int) (quote, signature []byte, banks []api.PCRBank, err error)
}

// Config configures an Agent.
type Config struct {
	// Server is the verifier's base URL, such as https://verifier:8443.
	Server string
	// HTTP is the client used to reach Server (carrying its TLS pin).
	HTTP *http.Client
	// Name is the machine's name at the verifier.
	Name string
	// StateDir holds the agent's identity across restarts.
	StateDir string
	// EventLogPath is the TCG event log (default DefaultEventLogPath).
	EventLogPath string
	// IMAPath is the binary IMA measurement list; empty sends none.
	IMAPath string
	// ResultPath is the file, readable by local services, that receives
	// the verifier's signed attestation result after each verdict
	// (default StateDir/result.json).
	ResultPath string
	TPM        TPM
	Facts      api.Facts
	Logger     *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnection delay (defaults 1s
	// and 60s). Each failure doubles it, and jitter spreads it over its
	// upper half.
	MinBackoff, MaxBackoff time.Duration
	// Wait is how long each challenge request may be held open (default 25s).
	Wait time.Duration
}

// Agent runs the enrollment and attestation loop.
type Agent struct {
	cfg    Config
	client *api.Client
	log    *slog.Logger
	state  state
	// resetCount is the TPM resetCount of the last quote the verifier
	// accepted, and quoted whether there was one: a change means a reboot,
	// after which the IMA list is sent from its start. lastResetCount is
	// the resetCount of the evidence being sent.
	resetCount     uint32
	quoted         bool
	lastResetCount uint32
	// imaSent is the part of the IMA list sent in this boot (ima.go).
	imaSent imaPrefix
}

// state is the agent's identity, kept in StateDir/agent.json.
type state struct {
	Name     string `json:"name"`
	Server   string `json:"server"`
	Enrolled bool   `json:"enrolled"`
	EKSHA256 string `json:"ek_sha256,omitempty"`
	// ResetCount is the TPM resetCount of the last quote. A restarted
	// agent compares it with its first quote's to notice a reboot, after
	// which the verifier's IMA offset belongs to the previous boot.
	ResetCount *uint32 `json:"reset_count,omitempty"`
}

// PermanentError is a failure that retrying cannot change: a rejection by
// the verifier (a revoked EK, a name taken by another TPM) or an AK the TPM
// rejects (*AKNotInTPMError). The agent stops on it.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// ServerIdentityError is a verifier whose TLS certificate does not match
// the agent's --server-fingerprint, --ca or system roots, before the agent
// ever reached it: a configuration error, which retrying cannot change.
type ServerIdentityError struct{ Err error }

func (e *ServerIdentityError) Error() string { return e.Err.Error() }
func (e *ServerIdentityError) Unwrap() error { return e.Err }

// serverIdentityRejected reports whether err is the TLS client's rejection
// of the verifier's certificate for its pin, CA or host name. An expired
// certificate is not one: the verifier can renew it.
func serverIdentityRejected(err error) bool {
	var pin *api.PinMismatchError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	return errors.As(err, &pin) || errors.As(err, &unknown) || errors.As(err, &host)
}

// New returns an agent loaded with the state stored in cfg.StateDir.
func New(cfg Config) (*Agent, error) {
	if cfg.TPM == nil || cfg.Server == "" || cfg.StateDir == "" {
		return nil, errors.New("agent: TPM, Server and StateDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EventLogPath == "" {
		cfg.EventLogPath = DefaultEventLogPath
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(60*time.Second, cfg.MinBackoff)
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 25 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	a := &Agent{cfg: cfg, client: &api.Client{BaseURL: cfg.Server, HTTP: cfg.HTTP}, log: cfg.Logger}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	data, err := os.ReadFile(a.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read agent state: %w", err)
	default:
		if err := json.Unmarshal(data, &a.state); err != nil {
			return nil, fmt.Errorf("agent state %s is corrupt (%v): delete it to enroll again", a.statePath(), err)
		}
	}
	switch {
	case cfg.Name != "" && a.state.Name != "" && cfg.Name != a.state.Name:
		return nil, fmt.Errorf("this agent is enrolled as %q, not %q: use that name or a new --state-dir", a.state.Name, cfg.Name)
	case a.state.Name == "":
		a.state.Name = cfg.Name
	}
	if a.state.Name == "" {
		return nil, errors.New("agent: no machine name: give --name")
	}
	if !a.state.Enrolled || a.state.Server != cfg.Server {
		// Checked here rather than only at the verifier, which would reject
		// every enrollment attempt of the agent's retry loop.
		if err := api.CheckNewMachineName(a.state.Name); err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
	}
	if a.state.Server != cfg.Server {
		// A new verifier has not seen this machine.
		a.state.Server = cfg.Server
		a.state.Enrolled = false
	}
	if a.state.ResetCount != nil {
		a.resetCount, a.quoted = *a.state.ResetCount, true
	}
	return a, nil
}

// Name returns the machine name the agent enrolls as.
func (a *Agent) Name() string { return a.state.Name }

func (a *Agent) statePath() string { return filepath.Join(a.cfg.StateDir, "agent.json") }

func (a *Agent) saveState() error {
	data, err := json.MarshalIndent(a.state, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write agent state: %w", err)
	}
	return os.Rename(tmp, a.statePath())
}

// Run enrolls when needed and responds to challenges until ctx is done. It
// returns ctx's error, a *PermanentError when the verifier rejects the
// machine for good, or a *ServerIdentityError when the verifier's
// certificate does not match the agent's pin or CA at its first contact.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent started", "machine", a.state.Name, "server", a.cfg.Server, "enrolled", a.state.Enrolled)
	defer a.log.Info("agent stopped", "machine", a.state.Name)
	failures := 0
	// reached is whether this agent has talked to the verifier before: in
	// this run, or in an earlier one that enrolled it there.
	reached := a.state.Enrolled
	for ctx.Err() == nil {
		var err error
		if !a.state.Enrolled {
			err = a.Enroll(ctx)
		} else {
			err = a.AttestOnce(ctx)
		}
		if err == nil {
			failures = 0
			reached = true
			continue
		}
		identity := serverIdentityRejected(err)
		if identity && !reached {
			a.log.Error("the verifier's certificate does not match this agent's pin or CA; stopping", "server", a.cfg.Server, "err", err)
			return &ServerIdentityError{Err: err}
		}
		var perm *PermanentError
		var stale *AKNotInTPMError
		switch {
		case errors.As(err, &stale):
			stale.Machine = a.state.Name
			a.log.Error("the AK does not belong to this TPM; stopping", "ak", stale.Path, "err", err)
			return err
		case errors.As(err, &perm):
			a.log.Error("verifier rejected this machine; stopping", "err", err)
			return err
		}
		if ctx.Err() != nil {
			break
		}
		failures++
		delay := a.backoff(failures)
		if identity {
			// A verifier this agent reached before changed its certificate.
			// During a CA rotation behind a load balancer some replicas may
			// still serve the old one, so the agent keeps trying them.
			a.log.Error("the verifier's certificate no longer matches this agent's pin or CA; retrying in case its CA rotation is rolled back or a replica still serves the old CA: if the CA was replaced, give the agent the new --server-fingerprint or --ca and restart it",
				"server", a.cfg.Server, "err", err, "attempt", failures, "retry_in", delay.Round(time.Millisecond))
		} else {
			a.log.Warn("verifier request failed; retrying", "err", err, "attempt", failures, "retry_in", delay.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	return ctx.Err()
}

// backoff returns the delay before retry n (from 1): exponential from
// MinBackoff, capped at MaxBackoff, and drawn at random from the upper half
// of that value so a fleet that lost its verifier does not reconnect in step.
func (a *Agent) backoff(n int) time.Duration {
	d := a.cfg.MinBackoff
	for i := 1; i < n && d < a.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, a.cfg.MaxBackoff)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Enroll registers the EK and AK with the verifier and proves by
// credential activation that both are in this TPM.
func (a *Agent) Enroll(ctx context.Context) error {
	ekPublic, ekCert, err := a.cfg.TPM.EK()
	if err != nil {
		return fmt.Errorf("read EK: %w", err)
	}
	req := api.EnrollRequest{
		Name: a.state.Name, EKPublicArea: ekPublic, EKCertificate: ekCert,
		AKPublic: a.cfg.TPM.AKPublic(), Facts: a.cfg.Facts,
	}
	var ch api.EnrollChallenge
	if _, err := a.client.Do(ctx, http.MethodPost, "/v1/enroll", req, &ch); err != nil {
		return classify(fmt.Errorf("enroll: %w", err))
	}
	secret, err := a.cfg.TPM.ActivateCredential(ch.Credential, ch.EncryptedSecret)
	if err != nil {
		return fmt.Errorf("activate credential: %w", err)
	}
	var res api.EnrollResult
	if _, err := a.client.Do(ctx, http.MethodPost, "/v1/enroll/"+url.PathEscape(ch.EnrollmentID)+"/activate", api.ActivateRequest{Secret: secret}, &res); err != nil {
		return classify(fmt.Errorf("activate: %w", err))
	}
	a.state.Enrolled = true
	a.state.EKSHA256 = res.Machine.EKSHA256
	if err := a.saveState(); err != nil {
		return err
	}
	a.log.Info("enrolled", "machine", res.Machine.Name, "state", res.Machine.State, "ek_sha256", res.Machine.EKSHA256)
	return nil
}

// classify marks the verifier's final rejections permanent.
func classify(err error) error {
	switch api.ErrorCode(err) {
	case api.CodeEKRevoked, api.CodeEKUntrusted, api.CodeConflict, api.CodeAKInvalid:
		return &PermanentError{Err: err}
	}
	return err
}

// AttestOnce waits for one challenge (or the end of the wait) and sends
// evidence for it.
func (a *Agent) AttestOnce(ctx context.Context) error {
	path := fmt.Sprintf("/v1/agents/%s/challenge?wait=%g", url.PathEscape(a.state.Name), a.cfg.Wait.Seconds())
	reqCtx, cancel := context.WithTimeout(ctx, a.cfg.Wait+30*time.Second)
	defer cancel()
	var ch api.Challenge
	status, err := a.client.Do(reqCtx, http.MethodGet, path, nil, &ch)
	if api.ErrorCode(err) == api.CodeNotEnrolled {
		a.log.Warn("verifier does not know this machine; enrolling again")
		a.state.Enrolled = false
		return a.saveState()
	}
	if err != nil {
		return classify(fmt.Errorf("wait for challenge: %w", err))
	}
	if status == http.StatusNoContent {
		return nil
	}
	ev, err := a.Evidence(&ch)
	if err != nil {
		return err
	}
	var verdict api.Verdict
	if _, err := a.client.Do(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(a.state.Name)+"/evidence", ev, &verdict); err != nil {
		return classify(fmt.Errorf("send evidence: %w", err))
	}
	a.recordResetCount(a.lastResetCount)
	codes := make([]string, len(verdict.Reasons))
	for i, r := range verdict.Reasons {
		codes[i] = r.Code
	}
	a.log.Info("attested", "state", verdict.State, "boot", verdict.BootCount, "reasons", codes)
	if len(verdict.Result) > 0 {
		if err := a.saveResult(verdict.Result); err != nil {
			a.log.Warn("cannot store the signed attestation result", "file", a.resultPath(), "err", err)
		}
	}
	return nil
}

func (a *Agent) resultPath() string {
	if a.cfg.ResultPath != "" {
		return a.cfg.ResultPath
	}
	return filepath.Join(a.cfg.StateDir, "result.json")
}

// saveResult replaces the stored attestation result. The result is signed
// and not secret, so local services may read it (mode 0644).
func (a *Agent) saveResult(signed []byte) error {
	tmp := a.resultPath() + ".tmp"
	if err := os.WriteFile(tmp, signed, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, a.resultPath())
}

// Evidence builds the evidence for ch: a quote over its nonce, the PCR
// values and the event log (omitted when the verifier has this boot's log
// already).
func (a *Agent) Evidence(ch *api.Challenge) (*api.Evidence, error) {
	if len(ch.Nonce) != api.NonceSize {
		return nil, fmt.Errorf("challenge nonce has %d bytes, want %d", len(ch.Nonce), api.NonceSize)
	}
	quote, sig, banks, err := a.cfg.TPM.Quote(ch.Nonce, ch.PCRs)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	ev := &api.Evidence{ChallengeID: ch.ID, Quote: quote, Signature: sig, PCRs: banks}
	// NOTE: the log is read after the quote, so an event recorded in
	// between makes this replay fail; the next challenge succeeds.
	log, err := os.ReadFile(a.cfg.EventLogPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ev.EventLogMissing = fmt.Sprintf("%s does not exist (securityfs not mounted, or the firmware exposes no TCG2 event log)", a.cfg.EventLogPath)
	case err != nil:
		ev.EventLogMissing = fmt.Sprintf("cannot read %s: %v", a.cfg.EventLogPath, err)
	case len(log) == 0:
		ev.EventLogMissing = fmt.Sprintf("%s is empty", a.cfg.EventLogPath)
	case len(log) > api.MaxEventLogBytes:
		ev.EventLogMissing = fmt.Sprintf("%s has %d bytes, more than the %d the protocol carries", a.cfg.EventLogPath, len(log), api.MaxEventLogBytes)
	default:
		sum := sha256.Sum256(log)
		ev.EventLogSHA256 = hex.EncodeToString(sum[:])
		if ev.EventLogSHA256 != ch.EventLogSHA256 {
			ev.EventLog = log
		}
	}
	if ev.EventLogMissing != "" {
		a.log.Warn("no event log to send", "reason", ev.EventLogMissing)
	}
	if a.cfg.IMAPath != "" {
		ev.IMA = a.imaEvidence(ch, quote)
	}
	return ev, nil
}

// imaEvidence returns the IMA entries from the challenge's offset, or from
// 0 after a reboot, cut at an entry boundary to fit the protocol's limit.
func (a *Agent) imaEvidence(ch *api.Challenge, quote []byte) *api.IMAEvidence {
	offset := ch.IMAOffset
	if info, err := attest.ParseAttestationData(quote); err == nil {
		if a.quoted && info.ClockInfo.ResetCount != a.resetCount {
			offset = 0
		}
		a.lastResetCount = info.ClockInfo.ResetCount
	}
	data, err := os.ReadFile(a.cfg.IMAPath)
	return a.imaChunk(offset, data, err)
}

// recordResetCount keeps the resetCount of the last accepted quote, in
// memory and in agent.json, so that an agent restarted after a reboot still
// sends the IMA list from its start.
func (a *Agent) recordResetCount(resetCount uint32) {
	changed := !a.quoted || resetCount != a.resetCount
	a.resetCount, a.quoted = resetCount, true
	if !changed {
		return
	}
	a.state.ResetCount = &resetCount
	if err := a.saveState(); err != nil {
		a.log.Warn("cannot save the TPM reset count; a restart after a reboot may send IMA entries from a stale offset", "err", err)
	}
}
