package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/attest"
)

const testCounter tpm2.TPMHandle = 0x01000123

func readSHA256(t *testing.T, tp *TPM, pcrs ...int) map[int][]byte {
	t.Helper()
	vals, err := tp.ReadPCRs(attest.Selection{{Hash: attest.AlgSHA256, PCRs: pcrs}})
	if err != nil {
		t.Fatal(err)
	}
	return vals[attest.AlgSHA256]
}

func extendSHA256(t *testing.T, tp *TPM, pcr int, data string) {
	t.Helper()
	sum := sha256.Sum256([]byte(data))
	if err := tp.ExtendPCR(pcr, map[attest.Algorithm][]byte{attest.AlgSHA256: sum[:]}); err != nil {
		t.Fatal(err)
	}
}

// expectPolicyError checks that UnsealPolicy failed with ErrPolicyMismatch
// and, unless step is "Unseal", a *PolicyError naming step.
func expectPolicyError(t *testing.T, secret []byte, err error, step string) {
	t.Helper()
	if !errors.Is(err, ErrPolicyMismatch) {
		t.Fatalf("UnsealPolicy = %q, %v; want ErrPolicyMismatch from %s", secret, err, step)
	}
	var pe *PolicyError
	switch {
	case step == "Unseal" && errors.As(err, &pe):
		t.Errorf("UnsealPolicy failed in step %s, want a failure of TPM2_Unseal itself (%v)", pe.Step, err)
	case step != "Unseal" && !errors.As(err, &pe):
		t.Errorf("UnsealPolicy error %v names no policy step, want %s", err, step)
	case step != "Unseal" && pe.Step != step:
		t.Errorf("PolicyError step %s, want %s (%v)", pe.Step, step, err)
	}
}

// testPolicyPCR seals to PolicyPCR over current values and extends a PCR.
func testPolicyPCR(t *testing.T, tp *TPM) {
	step := PolicyPCR{Bank: attest.AlgSHA256, Values: readSHA256(t, tp, 0, 7, 12)}
	policy, err := PolicyDigest(step)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := tp.SealPolicy([]byte("secret"), policy)
	if err != nil {
		t.Fatal(err)
	}
	assertNoTransientHandles(t, tp)
	got, err := tp.UnsealPolicy(obj, step)
	if err != nil || string(got) != "secret" {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	assertNoTransientHandles(t, tp)

	// The object has no authValue path: an empty policy session fails.
	got, err = tp.UnsealPolicy(obj)
	expectPolicyError(t, got, err, "Unseal")

	extendSHA256(t, tp, 12, "tampered")
	got, err = tp.UnsealPolicy(obj, step)
	expectPolicyError(t, got, err, "PolicyPCR")
	assertNoTransientHandles(t, tp)
}

// testPolicyAuthorized seals to PolicyAuthorize and unseals under a signed
// PCR policy with a revocation counter, then revokes it.
func testPolicyAuthorized(t *testing.T, tp *TPM) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := key.PublicKey.Bytes()
	keyPub := &tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]}}),
	}
	authPolicy, err := PolicyDigest(PolicyAuthorize{Key: keyPub})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := tp.SealPolicy([]byte("authorized"), authPolicy)
	if err != nil {
		t.Fatal(err)
	}

	gen, err := tp.EnsureCounter(testCounter)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := tp.EnsureCounter(testCounter); err != nil || again != gen {
		t.Fatalf("EnsureCounter again = %d, %v; want %d", again, err, gen)
	}
	if read, err := tp.ReadCounter(testCounter); err != nil || read != gen {
		t.Fatalf("ReadCounter = %d, %v; want %d", read, err, gen)
	}

	pcrStep := PolicyPCR{Bank: attest.AlgSHA256, Values: readSHA256(t, tp, 0, 7)}
	counterStep := PolicyCounterAtMost{Index: testCounter, Max: gen}
	approved, err := PolicyDigest(pcrStep, counterStep)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(policy []byte) tpm2.TPMTSignature {
		digest := sha256.Sum256(policy)
		r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		return tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))}, SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))},
		})}
	}
	authStep := PolicyAuthorize{Key: keyPub, Approved: approved, Signature: sign(approved)}
	got, err := tp.UnsealPolicy(obj, pcrStep, counterStep, authStep)
	if err != nil || string(got) != "authorized" {
		t.Fatalf("Unseal under the approval = %q, %v", got, err)
	}
	assertNoTransientHandles(t, tp)

	// A signature over another policy is refused by VerifySignature.
	bad := authStep
	bad.Signature = sign(append([]byte{1}, approved[1:]...))
	got, err = tp.UnsealPolicy(obj, pcrStep, counterStep, bad)
	expectPolicyError(t, got, err, "PolicyAuthorize")
	assertNoTransientHandles(t, tp)

	// Incrementing the counter revokes the approval.
	next, err := tp.IncrementCounter(testCounter)
	if err != nil || next != gen+1 {
		t.Fatalf("IncrementCounter = %d, %v; want %d", next, err, gen+1)
	}
	got, err = tp.UnsealPolicy(obj, pcrStep, counterStep, authStep)
	expectPolicyError(t, got, err, "PolicyNV")
	assertNoTransientHandles(t, tp)
}

func TestCounterRange(t *testing.T) {
	for _, idx := range []tpm2.TPMHandle{0x00ffffff, 0x01400000, 0x81000001} {
		if _, err := CounterPublic(idx); err == nil {
			t.Errorf("CounterPublic(0x%08x) accepted an index outside the owner range", uint32(idx))
		}
	}
}

func TestPolicySimulator(t *testing.T) {
	tp := openTestSimulator(t)
	t.Run("pcr", func(t *testing.T) { testPolicyPCR(t, tp) })
	t.Run("authorized", func(t *testing.T) { testPolicyAuthorized(t, tp) })
	t.Run("counter not rolled back", func(t *testing.T) { testCounterNotRolledBack(t, tp) })
	t.Run("too large", func(t *testing.T) {
		policy := bytes.Repeat([]byte{1}, 32)
		if _, err := tp.SealPolicy(make([]byte, MaxSealSize+1), policy); err == nil {
			t.Errorf("Seal accepted %d bytes", MaxSealSize+1)
		}
	})
}

func TestPolicySwtpm(t *testing.T) {
	tp := startSwtpm(t).open()
	defer closeChecked(t, tp)
	t.Run("pcr", func(t *testing.T) { testPolicyPCR(t, tp) })
	t.Run("authorized", func(t *testing.T) { testPolicyAuthorized(t, tp) })
	t.Run("counter not rolled back", func(t *testing.T) { testCounterNotRolledBack(t, tp) })
}

// testCounterNotRolledBack checks that deleting and re-defining a counter
// index does not lower its value: a new counter starts at the highest value
// any counter of the TPM held.
func testCounterNotRolledBack(t *testing.T, tp *TPM) {
	const index tpm2.TPMHandle = 0x01000777
	first, err := tp.EnsureCounter(index)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := tp.IncrementCounter(index); err != nil {
			t.Fatal(err)
		}
	}
	nvName, err := CounterName(index)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: nvName},
	}.Execute(tp.Transport())
	if err != nil {
		t.Fatal(err)
	}
	again, err := tp.EnsureCounter(index)
	if err != nil {
		t.Fatal(err)
	}
	if again <= first+3 {
		t.Errorf("re-defined counter starts at %d, not above the old value %d", again, first+3)
	}
}
