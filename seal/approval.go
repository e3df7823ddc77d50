package seal

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/tpm"
)

// Approval is a PCR policy signed by a policy key. A sealed object created
// with PolicyAuthorized and that key unseals while the PCRs hold the
// approval's values and, when Counter is set, while the revocation counter
// is at most Generation.
type Approval struct {
	PCRs       PCRs
	Counter    tpm2.TPMHandle // 0: the approval cannot be revoked
	Generation uint64         // must be 0 when Counter is 0
	KeyName    tpm2.TPM2BName // name of the policy key that signed
	Signature  tpm2.TPMTSignature
}

// Policy returns the approved policy digest, the value the signature covers
// after hashing with an empty policyRef.
func (a *Approval) Policy() ([]byte, error) {
	return ApprovedPolicy(a.PCRs, a.Counter, a.Generation)
}

// signedDigest returns aHash of TPM2_PolicyAuthorize: SHA-256 over the
// approved policy and the (empty) policyRef.
func signedDigest(policy []byte) []byte {
	sum := sha256.Sum256(policy)
	return sum[:]
}

// Approve signs the PCR policy p with key. When counter is not zero the
// approval stays valid while the revocation counter at that NV index is at
// most generation.
func Approve(rand io.Reader, key *ecdsa.PrivateKey, p PCRs, counter tpm2.TPMHandle, generation uint64) (*Approval, error) {
	if counter == 0 && generation != 0 {
		return nil, fmt.Errorf("generation %d given without a revocation counter", generation)
	}
	pub, err := PolicyKeyPublic(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, err
	}
	a := &Approval{PCRs: p, Counter: counter, Generation: generation, KeyName: *name}
	policy, err := a.Policy()
	if err != nil {
		return nil, err
	}
	r, s, err := ecdsa.Sign(rand, key, signedDigest(policy))
	if err != nil {
		return nil, fmt.Errorf("sign approved policy: %w", err)
	}
	a.Signature = tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       policyHash,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))},
		}),
	}
	return a, nil
}

// VerifyFor checks in software what the TPM checks again at unseal time,
// so that a wrong approval gets a clear error before any TPM command:
//
//  1. b is an authorized blob;
//  2. the approval's bank and revocation counter are the blob's;
//  3. the approval names the blob's policy key;
//  4. the signature is an ECDSA SHA-256 signature by that key over the
//     approved policy.
//
// It does not compare the approved PCR values with the current ones or read
// the counter: the TPM does that during unseal.
func (a *Approval) VerifyFor(b *Blob) error {
	if b.Kind != PolicyAuthorized {
		return fmt.Errorf("sealed blob has policy kind %s: approvals apply only to authorized blobs", b.Kind)
	}
	if a.PCRs.Bank != b.PCRs.Bank {
		return fmt.Errorf("approval is for bank %s but the blob was sealed in bank %s", a.PCRs.Bank, b.PCRs.Bank)
	}
	if a.Counter != b.Counter {
		return fmt.Errorf("approval uses revocation counter 0x%08x but the blob uses 0x%08x", uint32(a.Counter), uint32(b.Counter))
	}
	name, err := tpm2.ObjectName(b.PolicyKey)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(name.Buffer, a.KeyName.Buffer) != 1 {
		return fmt.Errorf("approval is signed by policy key %x, not by the blob's policy key %x", a.KeyName.Buffer, name.Buffer)
	}
	key, err := policyKeyECDSA(b.PolicyKey)
	if err != nil {
		return err
	}
	sig, err := a.Signature.Signature.ECDSA()
	if err != nil || a.Signature.SigAlg != tpm2.TPMAlgECDSA || sig.Hash != policyHash {
		return fmt.Errorf("approval signature is not ECDSA with SHA-256")
	}
	policy, err := a.Policy()
	if err != nil {
		return err
	}
	r := new(big.Int).SetBytes(sig.SignatureR.Buffer)
	s := new(big.Int).SetBytes(sig.SignatureS.Buffer)
	if !ecdsa.Verify(key, signedDigest(policy), r, s) {
		return &VerificationError{Reason: "approval signature does not verify with the blob's policy key: the approval was altered or signed for other values"}
	}
	return nil
}

// Marshal encodes the approval in the version 1 format of docs/sealing.md.
func (a *Approval) Marshal() ([]byte, error) {
	if err := a.PCRs.Validate(); err != nil {
		return nil, err
	}
	if a.Counter == 0 && a.Generation != 0 {
		return nil, fmt.Errorf("generation %d given without a revocation counter", a.Generation)
	}
	out := append([]byte(nil), approvalMagic...)
	out = binary.BigEndian.AppendUint16(out, FormatVersion)
	out = appendPCRs(out, a.PCRs)
	out = binary.BigEndian.AppendUint32(out, uint32(a.Counter))
	out = binary.BigEndian.AppendUint64(out, a.Generation)
	out = append(out, tpm2.Marshal(a.KeyName)...)
	out = append(out, tpm2.Marshal(a.Signature)...)
	return out, nil
}

// ParseApproval decodes an approval file. It checks the structure only;
// VerifyFor checks the signature against a blob's policy key.
func ParseApproval(data []byte) (*Approval, error) {
	r := newReader("approval", data)
	r.header(approvalMagic)
	a := &Approval{}
	a.PCRs = r.pcrs()

	counterAt := r.Off
	a.Counter = tpm2.TPMHandle(r.U32("counter index"))
	if !r.Failed() && a.Counter != 0 {
		if _, err := tpm.CounterPublic(a.Counter); err != nil {
			r.Off = counterAt
			r.Failf("counter index", "%v", err)
		}
	}
	genAt := r.Off
	a.Generation = r.U64("generation")
	if !r.Failed() && a.Counter == 0 && a.Generation != 0 {
		r.Off = genAt
		r.Failf("generation", "is %d without a revocation counter: expected 0", a.Generation)
	}

	start := r.Off
	raw := r.sized("policy key name")
	if name := unmarshalTPM[tpm2.TPM2BName](r, "policy key name", raw, start); name != nil {
		a.KeyName = *name
	}
	start = r.Off
	if !r.Failed() {
		raw = r.Data[r.Off:]
		if sig := unmarshalTPM[tpm2.TPMTSignature](r, "signature", raw, start); sig != nil {
			a.Signature = *sig
			r.Off = len(r.Data)
		}
	}
	if !r.Failed() && a.Signature.SigAlg != tpm2.TPMAlgECDSA {
		r.Off = start
		r.Failf("signature", "algorithm 0x%04x is not ECDSA", uint16(a.Signature.SigAlg))
	}
	r.end()
	if r.Failed() {
		return nil, r.formatError()
	}
	return a, nil
}

// VerificationError reports that something was read correctly and does not
// verify: a signature that fails, or a TPM that refuses to unseal because
// the PCRs or the revocation counter do not satisfy the policy.
type VerificationError struct {
	Reason string
	// Changed lists the PCRs whose current values differ from the values
	// sealed against or approved, when known.
	Changed []int
	Err     error
}

func (e *VerificationError) Error() string {
	msg := e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *VerificationError) Unwrap() error { return e.Err }
