package verifier

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/vouch-attest/vouch/agent"
	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/tpm"
)

func sha1Event(index, pcr int, typ, sha1 string) MeasuredEvent {
	return MeasuredEvent{Index: index, PCR: pcr, Type: typ, Digests: map[string]string{"sha1": sha1}}
}

func TestFirstBootPolicySHA1Only(t *testing.T) {
	boot := &Boot{Events: []MeasuredEvent{sha1Event(1, 0, "EV_S_CRTM_VERSION", "aa"), sha1Event(2, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "bb")}}
	ref, err := FirstBootPolicy{}.Learn(boot)
	if err != nil {
		t.Fatal(err)
	}

	out, err := FirstBootPolicy{}.Evaluate(ref, boot)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reasons) != 1 {
		t.Fatalf("reasons = %+v, want one sha1_only", out.Reasons)
	}
	if r := out.Reasons[0]; r.Code != ReasonSHA1Only || r.Bank != "sha1" {
		t.Errorf("reason = %+v, want code %s in bank sha1", r, ReasonSHA1Only)
	}

	out, err = FirstBootPolicy{InsecureAllowSHA1: true}.Evaluate(ref, boot)
	if err != nil || len(out.Reasons) != 0 {
		t.Errorf("with InsecureAllowSHA1: reasons %+v, %v; want none", out.Reasons, err)
	}

	// Both banks verified: SHA-1 is not the only one.
	both := &Boot{Events: []MeasuredEvent{ev(1, 0, "EV_S_CRTM_VERSION", "aa")}}
	ref, err = FirstBootPolicy{}.Learn(both)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := (FirstBootPolicy{}).Evaluate(ref, both); err != nil || len(out.Reasons) != 0 {
		t.Errorf("sha1 and sha256 banks: reasons %+v, %v; want none", out.Reasons, err)
	}
}

// sha1QuoteTPM quotes the SHA-1 bank only, as a TPM whose SHA-256 bank is
// not active would. The simulator has both banks active.
type sha1QuoteTPM struct {
	*agent.DeviceTPM
	t      *tpm.TPM
	akPath string
}

func (s sha1QuoteTPM) Quote(nonce []byte, pcrs []int) ([]byte, []byte, []api.PCRBank, error) {
	ak, err := tpm.LoadAKFile(s.akPath)
	if err != nil {
		return nil, nil, nil, err
	}
	q, values, err := s.t.QuoteWithPCRs(ak, nonce, attest.Selection{{Hash: attest.AlgSHA1, PCRs: pcrs}})
	if err != nil {
		return nil, nil, nil, err
	}
	bank := api.PCRBank{Alg: uint16(attest.AlgSHA1), Values: values[attest.AlgSHA1]}
	return q.Attest, q.Signature, []api.PCRBank{bank}, nil
}

// TestSHA1OnlyQuote: a machine whose quote and log verify in the SHA-1
// bank only is untrusted (sha1_only) under the first-boot policy, and
// pending approval as usual once the policy accepts SHA-1.
func TestSHA1OnlyQuote(t *testing.T) {
	for _, tt := range []struct {
		name      string
		policy    FirstBootPolicy
		wantState string
		wantCode  string
	}{
		{"rejected", FirstBootPolicy{}, api.StateUntrusted, ReasonSHA1Only},
		{"accepted on request", FirstBootPolicy{InsecureAllowSHA1: true}, api.StatePending, ReasonReferenceUnapproved},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{Policy: tt.policy})
			stateDir := t.TempDir()
			dev, err := agent.NewDeviceTPM(simulator(t), stateDir)
			if err != nil {
				t.Fatal(err)
			}
			logPath := filepath.Join(t.TempDir(), "eventlog.bin")
			if err := os.WriteFile(logPath, readTestLog(t), 0o600); err != nil {
				t.Fatal(err)
			}
			quoter := sha1QuoteTPM{DeviceTPM: dev, t: simulator(t), akPath: filepath.Join(stateDir, "ak.bin")}
			a, err := agent.New(agent.Config{Server: h.http.URL, Name: "sha1-machine", StateDir: stateDir, EventLogPath: logPath, TPM: quoter})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Enroll(context.Background()); err != nil {
				t.Fatal(err)
			}

			v := h.attest(t, a)
			if v.State != tt.wantState || len(v.Reasons) == 0 || v.Reasons[0].Code != tt.wantCode {
				t.Errorf("verdict = %s %+v, want %s with %s first", v.State, v.Reasons, tt.wantState, tt.wantCode)
			}
			for _, r := range v.Reasons {
				if r.Code == ReasonEventUnexpected || r.Code == ReasonEventMissing {
					t.Errorf("the first boot differs from itself: %+v", r)
				}
			}
			if tt.wantState != api.StatePending {
				return
			}
			if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/sha1-machine/approve", nil, nil); err != nil {
				t.Fatal(err)
			}
			if v := h.attest(t, a); v.State != api.StateTrusted || len(v.Reasons) != 0 {
				t.Errorf("verdict after approval = %s %+v, want trusted", v.State, v.Reasons)
			}
		})
	}
}
