package seal

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/tpm"
)

// extend extends PCR index of the sha256 bank with the digest of data.
func extend(t *testing.T, tp *tpm.TPM, index int, data string) {
	t.Helper()
	sum := sha256.Sum256([]byte(data))
	if err := tp.ExtendPCR(index, map[attest.Algorithm][]byte{attest.AlgSHA256: sum[:]}); err != nil {
		t.Fatal(err)
	}
}

// expectRejected checks that err is a *VerificationError naming exactly the
// given PCRs as changed.
func expectRejected(t *testing.T, secret []byte, err error, changed ...int) {
	t.Helper()
	if err == nil {
		t.Fatalf("unseal succeeded, want a refusal naming pcrs %v", changed)
	}
	if secret != nil {
		t.Errorf("unseal returned a secret with error %v", err)
	}
	var ve *VerificationError
	if !errors.As(err, &ve) {
		t.Fatalf("unseal error %v is not a *VerificationError", err)
	}
	if !slices.Equal(ve.Changed, changed) {
		t.Errorf("refusal names changed pcrs %v, want %v (%v)", ve.Changed, changed, err)
	}
}

func currentPCRs(t *testing.T, tp *tpm.TPM) PCRs {
	t.Helper()
	p, err := ReadPCRs(tp, SHA256, SelectionOf(0, 2, 4, 7))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// roundTrip re-encodes a blob as it would be stored and read back.
func roundTrip(t *testing.T, b *Blob) *Blob {
	t.Helper()
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// testSealPCR seals to current PCR values, unseals, then extends PCR 7
// and expects a refusal that names it.
func testSealPCR(t *testing.T, tp *tpm.TPM) {
	secret := []byte("pcr-sealed secret")
	b, err := Seal(tp, secret, Request{PCRs: currentPCRs(t, tp)})
	if err != nil {
		t.Fatal(err)
	}
	b = roundTrip(t, b)
	got, err := Unseal(tp, b, nil)
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("Unseal returned %q, want %q", got, secret)
	}

	// An altered private area: the TPM refuses to load it, which no retry
	// can change.
	altered := *b
	altered.Private.Buffer = bytes.Clone(b.Private.Buffer)
	altered.Private.Buffer[len(altered.Private.Buffer)/2] ^= 0x5a
	got, err = Unseal(tp, &altered, nil)
	if got != nil || !errors.Is(err, ErrBlobRejected) {
		t.Errorf("Unseal of an altered blob = %q, %v; want ErrBlobRejected", got, err)
	}

	extend(t, tp, 7, "a new secure boot database")
	got, err = Unseal(tp, b, nil)
	expectRejected(t, got, err, 7)
}

// testSealExpected seals to values that differ from the current ones in
// PCR 2 and checks that the TPM itself rejects the unseal, not only the
// software pre-check.
func testSealExpected(t *testing.T, tp *tpm.TPM) {
	want := currentPCRs(t, tp)
	want.Values[2] = bytes.Repeat([]byte{0xee}, 32)
	b, err := Seal(tp, []byte("for the next boot"), Request{PCRs: want})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unseal(tp, b, nil)
	expectRejected(t, got, err, 2)

	// Bypass the software pre-check: the TPM must refuse as well.
	got, err = unsealSteps(tp, &tpm.Sealed{Public: b.Public.Bytes(), Private: b.Private.Buffer}, []int{2}, pcrStep(b.PCRs))
	expectRejected(t, got, err, 2)
	if !errors.Is(err, tpm2.TPMRCValue) {
		t.Errorf("TPM refusal is %v, want TPM_RC_VALUE from PolicyPCR", err)
	}
}

// testAuthorized covers signed policies: approve, extend, re-approve,
// revoke.
func testAuthorized(t *testing.T, tp *tpm.TPM) {
	key := testKey(t, 11)
	generation, err := tp.EnsureCounter(DefaultCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tp.EnsureCounter(DefaultCounterIndex)
	if err != nil || again != generation {
		t.Fatalf("EnsureCounter on an existing counter = %d, %v; want %d", again, err, generation)
	}

	secret := []byte("authorized secret")
	b, err := Seal(tp, secret, Request{PCRs: currentPCRs(t, tp), PolicyKey: &key.PublicKey, Counter: DefaultCounterIndex})
	if err != nil {
		t.Fatal(err)
	}
	b = roundTrip(t, b)
	rng := rand.NewChaCha8([32]byte{4})

	// Without an approval nothing unseals.
	got, err := Unseal(tp, b, nil)
	expectRejected(t, got, err)

	first, err := Approve(rng, key, currentPCRs(t, tp), DefaultCounterIndex, generation)
	if err != nil {
		t.Fatal(err)
	}
	got, err = Unseal(tp, b, []*Approval{first})
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal under the first approval = %q, %v", got, err)
	}

	// A kernel update changes PCR 4: the first approval no longer matches.
	extend(t, tp, 4, "new kernel")
	got, err = Unseal(tp, b, []*Approval{first})
	expectRejected(t, got, err, 4)
	if !strings.Contains(err.Error(), "approval 1: pcrs 4 differ") {
		t.Errorf("refusal does not explain the approval mismatch: %v", err)
	}

	// The owner approves the new values; both approvals are offered.
	second, err := Approve(rng, key, currentPCRs(t, tp), DefaultCounterIndex, generation)
	if err != nil {
		t.Fatal(err)
	}
	got, err = Unseal(tp, b, []*Approval{first, second})
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal under the second approval = %q, %v", got, err)
	}

	// Revoke every approval of this generation: the second stops working.
	next, err := tp.IncrementCounter(DefaultCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	if next != generation+1 {
		t.Errorf("IncrementCounter = %d, want %d", next, generation+1)
	}
	got, err = Unseal(tp, b, []*Approval{second})
	expectRejected(t, got, err, 4)
	if !strings.Contains(err.Error(), "is revoked") {
		t.Errorf("refusal does not say the approval is revoked: %v", err)
	}

	// The TPM enforces the revocation too, not only the software check.
	approved, _ := second.Policy()
	steps := append(approvedSteps(second.PCRs, second.Counter, second.Generation),
		tpm.PolicyAuthorize{Key: b.PolicyKey, Approved: approved, Signature: second.Signature})
	got, err = unsealSteps(tp, &tpm.Sealed{Public: b.Public.Bytes(), Private: b.Private.Buffer}, nil, steps...)
	expectRejected(t, got, err)
	var pe *tpm.PolicyError
	if !errors.As(err, &pe) || pe.Step != "PolicyNV" {
		t.Errorf("revoked approval refused with %v, want a refusal of PolicyNV", err)
	}

	// A fresh approval at the new generation unseals again.
	third, err := Approve(rng, key, currentPCRs(t, tp), DefaultCounterIndex, next)
	if err != nil {
		t.Fatal(err)
	}
	got, err = Unseal(tp, b, []*Approval{second, third})
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal under the re-issued approval = %q, %v", got, err)
	}

	// An approval from another key is rejected before any TPM command.
	forged, _ := Approve(rng, testKey(t, 12), currentPCRs(t, tp), DefaultCounterIndex, next)
	got, err = Unseal(tp, b, []*Approval{forged})
	expectRejected(t, got, err, 4)
	if !strings.Contains(err.Error(), "not by the blob's policy key") {
		t.Errorf("refusal does not name the wrong key: %v", err)
	}
}

// testTPM runs every TPM scenario against one TPM. PCR 7 and 4 are
// extended along the way, so the scenarios run in this order.
func testTPM(t *testing.T, tp *tpm.TPM) {
	t.Run("pcr", func(t *testing.T) { testSealPCR(t, tp) })
	t.Run("expected", func(t *testing.T) { testSealExpected(t, tp) })
	t.Run("authorized", func(t *testing.T) { testAuthorized(t, tp) })
	t.Run("secret too large", func(t *testing.T) {
		if _, err := Seal(tp, make([]byte, MaxSecretSize+1), Request{PCRs: currentPCRs(t, tp)}); err == nil {
			t.Errorf("Seal accepted %d bytes", MaxSecretSize+1)
		}
	})
	t.Run("handles flushed", func(t *testing.T) {
		handles, err := tp.TransientHandles()
		if err != nil {
			t.Fatal(err)
		}
		if len(handles) != 0 {
			t.Errorf("transient handles left loaded: %#x", handles)
		}
	})
}
