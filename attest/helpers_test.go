package attest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// loadEvidence reads a QuoteEvidence fixture from testdata.
func loadEvidence(t testing.TB, name string) *QuoteEvidence {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev QuoteEvidence
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &ev
}

func (ev *QuoteEvidence) expectations() QuoteExpectations {
	return QuoteExpectations{Nonce: ev.Nonce, Selection: Selection(ev.Selection), PCRs: PCRValues(ev.PCRs)}
}

func (ev *QuoteEvidence) quote() Quote {
	return Quote{Attest: ev.Attest, Signature: ev.Signature}
}

func mustAK(t testing.TB, pub []byte) *AKPublic {
	t.Helper()
	ak, err := ParseAKPublic(pub)
	if err != nil {
		t.Fatalf("ParseAKPublic: %v", err)
	}
	return ak
}

// wantReason fails unless err is a *VerificationError with the reason.
func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	var verr *VerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("got error %v, want a VerificationError with reason %s", err, want)
	}
	if verr.Reason != want {
		t.Fatalf("got reason %s (%v), want %s", verr.Reason, err, want)
	}
}

func clonePCRs(v PCRValues) PCRValues {
	out := make(PCRValues, len(v))
	for alg, bank := range v {
		for i, d := range bank {
			SetPCR(out, alg, i, append([]byte(nil), d...))
		}
	}
	return out
}
