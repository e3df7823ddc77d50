package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/vouch-attest/vouch/attest"
)

// openTestSimulator opens the in-process simulator or skips when this build
// has none.
func openTestSimulator(t *testing.T) *TPM {
	t.Helper()
	if !SimulatorAvailable {
		t.Skip("this build has no simulator (CGO_ENABLED=0)")
	}
	tp, err := Open(Config{Transport: TransportSimulator})
	if err != nil {
		t.Fatalf("Open(simulator): %v", err)
	}
	t.Cleanup(func() {
		assertNoTransientHandles(t, tp)
		if err := tp.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tp
}

func assertNoTransientHandles(t *testing.T, tp *TPM) {
	t.Helper()
	hs, err := tp.TransientHandles()
	if err != nil {
		t.Errorf("TransientHandles: %v", err)
		return
	}
	if len(hs) != 0 {
		t.Errorf("transient handles left loaded: %#x", hs)
	}
}

// roundTrip runs enrollment and attestation against an open TPM: EK, AK,
// credential activation, quote and verification.
func roundTrip(t *testing.T, tp *TPM, akType, ekType KeyType) {
	t.Helper()
	ek, err := tp.EK(ekType)
	if err != nil {
		t.Fatalf("EK(%s): %v", ekType, err)
	}
	assertNoTransientHandles(t, tp)
	ak, err := tp.CreateAK(AKOptions{Type: akType, Parent: ekType})
	if err != nil {
		t.Fatalf("CreateAK: %v", err)
	}
	assertNoTransientHandles(t, tp)

	// The AK survives a save/load round trip.
	blob, err := ak.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	ak, err = UnmarshalAK(blob)
	if err != nil {
		t.Fatalf("UnmarshalAK: %v", err)
	}

	// Verifier side: check the AK and bind it to the EK.
	akPub, err := attest.ParseAKPublic(ak.Public)
	if err != nil {
		t.Fatalf("ParseAKPublic: %v", err)
	}
	ekPub, err := attest.ParseEKPublic(ek.Public)
	if err != nil {
		t.Fatalf("ParseEKPublic: %v", err)
	}
	// A verifier that has only the EK's public key (from its certificate)
	// rebuilds the same public area from the default template.
	fromKey, err := attest.EKPublicFromKey(ek.Key)
	if err != nil {
		t.Fatalf("EKPublicFromKey: %v", err)
	}
	if !bytes.Equal(fromKey.Marshal(), ek.Public) {
		t.Errorf("EK public area rebuilt from the key differs from the TPM's")
	}
	act, err := attest.NewActivation(rand.Reader, ekPub, akPub)
	if err != nil {
		t.Fatalf("NewActivation: %v", err)
	}
	secret, err := tp.ActivateCredential(ak, act.CredentialBlob, act.EncryptedSecret)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	assertNoTransientHandles(t, tp)
	if err := act.Check(secret); err != nil {
		t.Fatalf("Activation.Check: %v", err)
	}

	// Extend a PCR so the quote covers a non-initial value.
	banks, err := tp.ActiveBanks()
	if err != nil {
		t.Fatalf("ActiveBanks: %v", err)
	}
	digests := map[attest.Algorithm][]byte{}
	for _, b := range banks {
		h := attest.HashFunc(b.Hash).New()
		h.Write([]byte("vouch round trip"))
		digests[b.Hash] = h.Sum(nil)
	}
	if err := tp.ExtendPCR(16, digests); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}

	sel, err := tp.SelectAllBanks([]int{0, 1, 2, 3, 4, 5, 6, 7, 16})
	if err != nil {
		t.Fatalf("SelectAllBanks: %v", err)
	}
	nonce := sha256.Sum256([]byte("nonce"))
	q, pcrs, err := tp.QuoteWithPCRs(ak, nonce[:], sel)
	if err != nil {
		t.Fatalf("QuoteWithPCRs: %v", err)
	}
	assertNoTransientHandles(t, tp)
	vq, err := attest.VerifyQuote(akPub, *q, attest.QuoteExpectations{Nonce: nonce[:], Selection: sel, PCRs: pcrs})
	if err != nil {
		t.Fatalf("VerifyQuote: %v", err)
	}
	for _, b := range sel {
		if got := len(vq.Verified[b.Hash]); got != len(b.PCRs) {
			t.Errorf("bank %s: %d verified PCRs, want %d", b.Hash, got, len(b.PCRs))
		}
	}
	var verr *attest.VerificationError
	if _, err := attest.VerifyQuote(akPub, *q, attest.QuoteExpectations{Nonce: []byte("other"), Selection: sel, PCRs: pcrs}); !errors.As(err, &verr) || verr.Reason != attest.ReasonNonceMismatch {
		t.Errorf("VerifyQuote with another nonce: got %v, want reason nonce_mismatch", err)
	}
	if bytes.Equal(q.Attest, nil) {
		t.Fatal("empty quote")
	}
}

func TestSimulatorRoundTrip(t *testing.T) {
	for _, tc := range []struct{ ak, ek KeyType }{{ECC, ECC}, {RSA, ECC}, {ECC, RSA}, {RSA, RSA}} {
		t.Run(string(tc.ak)+"-ak-"+string(tc.ek)+"-ek", func(t *testing.T) {
			tp := openTestSimulator(t)
			roundTrip(t, tp, tc.ak, tc.ek)
		})
	}
}
