package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/vouch-attest/vouch/attest"
)

func TestSimulatorSealUnseal(t *testing.T) {
	tp := openTestSimulator(t)
	sel := attest.Selection{{Hash: attest.AlgSHA256, PCRs: []int{0, 16}}, {Hash: attest.AlgSHA1, PCRs: []int{16}}}
	secret := []byte("a 32-byte key for the disk.....")
	sealed, err := tp.Seal(secret, sel)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	assertNoTransientHandles(t, tp)
	got, err := tp.Unseal(sealed)
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("unsealed %q, want %q", got, secret)
	}

	// Sealing to predicted values works once the PCRs reach them.
	values, err := tp.ReadPCRs(sel)
	if err != nil {
		t.Fatal(err)
	}
	next := make([]byte, 32)
	next[31] = 7
	h := attest.HashFunc(attest.AlgSHA256).New()
	h.Write(values[attest.AlgSHA256][16])
	h.Write(next)
	predicted := clonePCRValues(values)
	attest.SetPCR(predicted, attest.AlgSHA256, 16, h.Sum(nil))
	future, err := tp.SealToValues(secret, attest.Selection{{Hash: attest.AlgSHA256, PCRs: []int{16}}}, predicted)
	if err != nil {
		t.Fatalf("SealToValues: %v", err)
	}
	if _, err := tp.Unseal(future); !errors.Is(err, ErrPolicyMismatch) {
		t.Fatalf("Unseal before the PCR reached the predicted value: got %v, want ErrPolicyMismatch", err)
	}
	assertNoTransientHandles(t, tp)

	if err := tp.ExtendPCR(16, map[attest.Algorithm][]byte{attest.AlgSHA256: next}); err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(future); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal at the predicted value: %q, %v", got, err)
	}
	// The first blob is now refused.
	if _, err := tp.Unseal(sealed); !errors.Is(err, ErrPolicyMismatch) {
		t.Fatalf("Unseal after extend: got %v, want ErrPolicyMismatch", err)
	}
	assertNoTransientHandles(t, tp)
}

func clonePCRValues(v attest.PCRValues) attest.PCRValues {
	out := attest.PCRValues{}
	for alg, bank := range v {
		for i, d := range bank {
			attest.SetPCR(out, alg, i, bytes.Clone(d))
		}
	}
	return out
}

// Failing operations flush what they loaded, too.
func TestSimulatorFlushOnErrors(t *testing.T) {
	tp := openTestSimulator(t)
	ak, err := tp.CreateAK(AKOptions{Type: ECC, Parent: ECC})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.ActivateCredential(ak, []byte("not a credential"), []byte("not a secret")); err == nil {
		t.Error("ActivateCredential with garbage succeeded")
	}
	assertNoTransientHandles(t, tp)

	// An AK blob with a damaged private part fails to load.
	bad := *ak
	bad.private = bytes.Clone(ak.private)
	bad.private[len(bad.private)-1] ^= 0xff
	if _, err := tp.Quote(&bad, nil, attest.Selection{{Hash: attest.AlgSHA256, PCRs: []int{0}}}); err == nil {
		t.Error("Quote with a damaged AK succeeded")
	}
	assertNoTransientHandles(t, tp)

	// A quote of a bank the TPM lacks fails after the AK was loaded.
	if _, err := tp.Quote(ak, nil, attest.Selection{{Hash: attest.AlgSM3, PCRs: []int{0}}}); err == nil {
		t.Error("Quote of an SM3 bank succeeded on a TPM without one")
	}
	assertNoTransientHandles(t, tp)

	sealed, err := tp.Seal([]byte("x"), attest.Selection{{Hash: attest.AlgSHA256, PCRs: []int{16}}})
	if err != nil {
		t.Fatal(err)
	}
	sealed.Private[len(sealed.Private)-1] ^= 0xff
	if _, err := tp.Unseal(sealed); err == nil {
		t.Error("Unseal of a damaged blob succeeded")
	}
	assertNoTransientHandles(t, tp)
}

func TestSimulatorSealAuthorized(t *testing.T) {
	tp := openTestSimulator(t)
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	authPub, err := AuthorizingKeyPublic(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	policyRef := []byte("vouch-totp")
	secret := []byte("totp seed")
	sealed, err := tp.SealAuthorized(secret, authPub, policyRef)
	if err != nil {
		t.Fatalf("SealAuthorized: %v", err)
	}
	blob, err := sealed.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if sealed, err = UnmarshalSealed(blob); err != nil {
		t.Fatalf("UnmarshalSealed: %v", err)
	}

	sel := attest.Selection{{Hash: attest.AlgSHA256, PCRs: []int{7, 16}}}
	current, err := tp.ReadPCRs(sel)
	if err != nil {
		t.Fatal(err)
	}
	approval, err := ApprovePCRPolicy(signer, sel, current, policyRef)
	if err != nil {
		t.Fatalf("ApprovePCRPolicy: %v", err)
	}
	got, err := tp.UnsealAuthorized(sealed, approval)
	if err != nil {
		t.Fatalf("UnsealAuthorized: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("unsealed %q, want %q", got, secret)
	}
	assertNoTransientHandles(t, tp)

	// An OS update changes PCR 16: the old approval no longer opens the
	// blob, a new approval of the new values does.
	update := make([]byte, 32)
	update[0] = 0x42
	if err := tp.ExtendPCR(16, map[attest.Algorithm][]byte{attest.AlgSHA256: update}); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.UnsealAuthorized(sealed, approval); !errors.Is(err, ErrPolicyMismatch) {
		t.Fatalf("UnsealAuthorized with a stale approval: got %v, want ErrPolicyMismatch", err)
	}
	assertNoTransientHandles(t, tp)
	updated, err := tp.ReadPCRs(sel)
	if err != nil {
		t.Fatal(err)
	}
	approval2, err := ApprovePCRPolicy(signer, sel, updated, policyRef)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.UnsealAuthorized(sealed, approval2); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("UnsealAuthorized with the new approval: %q, %v", got, err)
	}

	// An approval signed by another key is refused.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := ApprovePCRPolicy(other, sel, updated, policyRef)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.UnsealAuthorized(sealed, forged); !errors.Is(err, ErrPolicyMismatch) {
		t.Fatalf("UnsealAuthorized with another key's approval: got %v, want ErrPolicyMismatch", err)
	}
	assertNoTransientHandles(t, tp)
}
