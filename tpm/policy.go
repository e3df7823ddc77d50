package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/attest"
)

// MaxSealSize is the largest secret a sealed data object holds.
const MaxSealSize = maxSealSize

// policyHash is the hash algorithm of the policy sessions and digests of
// this file, independent of the PCR bank a policy names.
const policyHash = tpm2.TPMAlgSHA256

// SealPolicy creates a sealed data object holding secret whose only
// authorization is authPolicy, computed with PolicyDigest. Unseal it with
// UnsealPolicy and the same steps. It needs an empty owner authorization.
func (t *TPM) SealPolicy(secret, authPolicy []byte) (*Sealed, error) {
	if len(authPolicy) != sha256.Size {
		return nil, fmt.Errorf("seal: the policy digest is %d bytes, want %d (SHA-256)", len(authPolicy), sha256.Size)
	}
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	return t.createSealed(secret, authPolicy)
}

// UnsealPolicy returns the secret of a SealPolicy object after satisfying
// its policy with steps, run in order in a fresh policy session. When the
// TPM rejects a step, the error wraps ErrPolicyMismatch and a *PolicyError
// naming the step. When it rejects TPM2_Unseal itself, the error wraps
// ErrPolicyMismatch only.
func (t *TPM) UnsealPolicy(s *Sealed, steps ...PolicyStep) ([]byte, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	return t.unseal(s, func(sess tpm2.Session) error {
		for _, step := range steps {
			if err := step.apply(t, sess.Handle()); err != nil {
				return &PolicyError{Step: step.name(), Err: err}
			}
		}
		return nil
	})
}

// PolicyError reports which policy step failed in UnsealPolicy: the PCRs,
// the revocation counter or an approval signature do not satisfy the
// sealed object's policy, or the step could not run.
type PolicyError struct {
	Step string // "PolicyPCR", "PolicyNV" or "PolicyAuthorize"
	Err  error
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("%s: %v", e.Step, e.Err)
}

func (e *PolicyError) Unwrap() error { return e.Err }

// PolicyStep is one assertion of a policy session. The same steps compute
// a policy digest offline (PolicyDigest) and satisfy it in the TPM
// (Unseal), so the two cannot drift apart.
type PolicyStep interface {
	name() string
	update(*tpm2.PolicyCalculator) error
	apply(t *TPM, session tpm2.TPMHandle) error
}

// PolicyDigest computes the SHA-256 policy digest of steps run in order
// from a fresh session.
func PolicyDigest(steps ...PolicyStep) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(policyHash)
	if err != nil {
		return nil, err
	}
	for _, s := range steps {
		if err := s.update(calc); err != nil {
			return nil, fmt.Errorf("computing the %s digest: %w", s.name(), err)
		}
	}
	return calc.Hash().Digest, nil
}

// PolicyPCR asserts that the PCRs of one bank hold Values (TPM2_PolicyPCR).
type PolicyPCR struct {
	Bank   attest.Algorithm
	Values map[int][]byte // by PCR index; each of the bank's digest size
}

func (p PolicyPCR) name() string { return "PolicyPCR" }

func (p PolicyPCR) command() (tpm2.PolicyPCR, error) {
	if len(p.Values) == 0 {
		return tpm2.PolicyPCR{}, errors.New("no PCR values given")
	}
	pcrs := make([]int, 0, len(p.Values))
	for i, v := range p.Values {
		if i < 0 || i >= attest.MaxPCRs {
			return tpm2.PolicyPCR{}, fmt.Errorf("PCR %d is out of range 0 to %d", i, attest.MaxPCRs-1)
		}
		if p.Bank.Size() == 0 || len(v) != p.Bank.Size() {
			return tpm2.PolicyPCR{}, fmt.Errorf("PCR %d of bank %s has %d bytes, want %d", i, p.Bank, len(v), p.Bank.Size())
		}
		pcrs = append(pcrs, i)
	}
	slices.Sort(pcrs)
	// The TPM hashes the selected PCR values in increasing index order.
	h := sha256.New()
	for _, i := range pcrs {
		h.Write(p.Values[i])
	}
	return tpm2.PolicyPCR{
		PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
		Pcrs:      toTPML(attest.Selection{{Hash: p.Bank, PCRs: pcrs}}),
	}, nil
}

func (p PolicyPCR) update(calc *tpm2.PolicyCalculator) error {
	cmd, err := p.command()
	if err != nil {
		return err
	}
	return cmd.Update(calc)
}

func (p PolicyPCR) apply(t *TPM, session tpm2.TPMHandle) error {
	cmd, err := p.command()
	if err != nil {
		return err
	}
	cmd.PolicySession = session
	_, err = cmd.Execute(t.t)
	return err
}

// PolicyCounterAtMost asserts that the revocation counter at NV index
// Index is at most Max (TPM2_PolicyNV with TPM_EO_UNSIGNED_LE). The counter
// must have CounterPublic's attributes.
type PolicyCounterAtMost struct {
	Index tpm2.TPMHandle
	Max   uint64
}

func (p PolicyCounterAtMost) name() string { return "PolicyNV" }

func (p PolicyCounterAtMost) command() (tpm2.PolicyNV, error) {
	nvName, err := CounterName(p.Index)
	if err != nil {
		return tpm2.PolicyNV{}, err
	}
	return tpm2.PolicyNV{
		// The counter's empty authValue authorizes the read (AUTHREAD).
		AuthHandle: tpm2.AuthHandle{Handle: p.Index, Name: nvName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: p.Index, Name: nvName},
		OperandB:   tpm2.TPM2BOperand{Buffer: binary.BigEndian.AppendUint64(nil, p.Max)},
		Offset:     0,
		Operation:  tpm2.TPMEOUnsignedLE,
	}, nil
}

func (p PolicyCounterAtMost) update(calc *tpm2.PolicyCalculator) error {
	cmd, err := p.command()
	if err != nil {
		return err
	}
	return cmd.Update(calc)
}

func (p PolicyCounterAtMost) apply(t *TPM, session tpm2.TPMHandle) error {
	cmd, err := p.command()
	if err != nil {
		return err
	}
	cmd.PolicySession = session
	_, err = cmd.Execute(t.t)
	return err
}

// PolicyAuthorize replaces the session's policy digest, which must equal
// Approved, by the digest of TPM2_PolicyAuthorize with Key's name and an
// empty policyRef, after the TPM has checked Signature: Key's signature
// over SHA-256(Approved). For PolicyDigest only Key is used.
type PolicyAuthorize struct {
	Key       *tpm2.TPMTPublic
	Approved  []byte
	Signature tpm2.TPMTSignature
}

func (p PolicyAuthorize) name() string { return "PolicyAuthorize" }

func (p PolicyAuthorize) update(calc *tpm2.PolicyCalculator) error {
	if p.Key == nil {
		return errors.New("no policy key given")
	}
	keyName, err := tpm2.ObjectName(p.Key)
	if err != nil {
		return err
	}
	return tpm2.PolicyAuthorize{KeySign: *keyName}.Update(calc)
}

// apply loads the key in the owner hierarchy: TPM2_VerifySignature with a
// key in the null hierarchy returns a null ticket, which PolicyAuthorize
// rejects.
func (p PolicyAuthorize) apply(t *TPM, session tpm2.TPMHandle) (err error) {
	if p.Key == nil {
		return errors.New("no policy key given")
	}
	loaded, err := tpm2.LoadExternal{InPublic: tpm2.New2B(*p.Key), Hierarchy: tpm2.TPMRHOwner}.Execute(t.t)
	if err != nil {
		return fmt.Errorf("loading the policy key: %w", err)
	}
	defer t.flush(loaded.ObjectHandle, &err)

	digest := sha256.Sum256(p.Approved) // aHash with an empty policyRef
	verified, err := tpm2.VerifySignature{
		KeyHandle: loaded.ObjectHandle,
		Digest:    tpm2.TPM2BDigest{Buffer: digest[:]},
		Signature: p.Signature,
	}.Execute(t.t)
	if err != nil {
		return fmt.Errorf("verifying the approval signature: %w", err)
	}
	_, err = tpm2.PolicyAuthorize{
		PolicySession:  session,
		ApprovedPolicy: tpm2.TPM2BDigest{Buffer: p.Approved},
		KeySign:        loaded.Name,
		CheckTicket:    verified.Validation,
	}.Execute(t.t)
	return err
}

// Revocation counters are owner-range NV indexes (TCG Registry of Reserved
// TPM 2.0 Handles: 0x01000000 to 0x013FFFFF).
const (
	CounterIndexFirst tpm2.TPMHandle = 0x01000000
	CounterIndexLast  tpm2.TPMHandle = 0x013FFFFF
)

// CounterPublic returns the public area of a revocation counter at index:
// an 8-byte TPM_NT_COUNTER that only the owner increments (OWNERWRITE) and
// that anyone may read with its empty authValue (AUTHREAD), which
// TPM2_PolicyNV needs at unseal time. Written is set, as it is after the
// first increment, so the name matches the index in use.
func CounterPublic(index tpm2.TPMHandle) (tpm2.TPMSNVPublic, error) {
	if index < CounterIndexFirst || index > CounterIndexLast {
		return tpm2.TPMSNVPublic{}, fmt.Errorf("NV index 0x%08x is outside the owner range 0x%08x to 0x%08x", uint32(index), uint32(CounterIndexFirst), uint32(CounterIndexLast))
	}
	return tpm2.TPMSNVPublic{
		NVIndex: index,
		NameAlg: policyHash,
		Attributes: tpm2.TPMANV{
			OwnerWrite: true,
			AuthRead:   true,
			NT:         tpm2.TPMNTCounter,
			NoDA:       true,
			Written:    true,
		},
		DataSize: 8,
	}, nil
}

// CounterName returns the TPM name of the revocation counter at index.
func CounterName(index tpm2.TPMHandle) (tpm2.TPM2BName, error) {
	pub, err := CounterPublic(index)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	nvName, err := tpm2.NVName(&pub)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("computing the name of NV 0x%08x: %w", uint32(index), err)
	}
	return *nvName, nil
}

// EnsureCounter defines the revocation counter at index unless it exists,
// increments it once so that it can be read, and returns its value. A TPM
// starts a new counter at the highest value any counter on it ever held,
// so deleting and re-creating the index does not roll it back. An index
// with other attributes is an error and is left alone. Defining and
// incrementing need an empty owner authorization.
func (t *TPM) EnsureCounter(index tpm2.TPMHandle) (uint64, error) {
	want, err := CounterPublic(index)
	if err != nil {
		return 0, err
	}
	if err := t.lock(); err != nil {
		return 0, err
	}
	defer t.unlock()

	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t.t)
	switch {
	case err == nil:
		got, err := rsp.NVPublic.Contents()
		if err != nil {
			return 0, fmt.Errorf("decoding the public area of NV 0x%08x: %w", uint32(index), err)
		}
		if !bytes.Equal(tpm2.Marshal(got), tpm2.Marshal(&want)) {
			return 0, fmt.Errorf("NV 0x%08x exists with other attributes: it is not a vouch revocation counter, choose another index", uint32(index))
		}
		return t.readCounter(index)
	case errors.Is(err, tpm2.TPMRCHandle):
	default:
		return 0, fmt.Errorf("reading the public area of NV 0x%08x: %w", uint32(index), err)
	}

	define := want
	define.Attributes.Written = false
	if _, err := (tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(define),
	}).Execute(t.t); err != nil {
		return 0, fmt.Errorf("defining the revocation counter NV 0x%08x: %w", uint32(index), err)
	}
	return t.incrementCounter(index)
}

// ReadCounter returns the value of the revocation counter at index.
func (t *TPM) ReadCounter(index tpm2.TPMHandle) (uint64, error) {
	if err := t.lock(); err != nil {
		return 0, err
	}
	defer t.unlock()
	return t.readCounter(index)
}

func (t *TPM) readCounter(index tpm2.TPMHandle) (uint64, error) {
	nvName, err := CounterName(index)
	if err != nil {
		return 0, err
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: nvName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: nvName},
		Size:       8,
	}.Execute(t.t)
	if err != nil {
		return 0, fmt.Errorf("reading the revocation counter NV 0x%08x: %w", uint32(index), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("reading the revocation counter NV 0x%08x: got %d bytes, want 8", uint32(index), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// IncrementCounter adds one to the revocation counter at index and returns
// the new value. It needs an empty owner authorization.
func (t *TPM) IncrementCounter(index tpm2.TPMHandle) (uint64, error) {
	if _, err := CounterPublic(index); err != nil {
		return 0, err
	}
	if err := t.lock(); err != nil {
		return 0, err
	}
	defer t.unlock()
	return t.incrementCounter(index)
}

func (t *TPM) incrementCounter(index tpm2.TPMHandle) (uint64, error) {
	// Read the name: it differs before the first increment (Written clear).
	pub, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t.t)
	if err != nil {
		return 0, fmt.Errorf("reading the public area of NV 0x%08x: %w", uint32(index), err)
	}
	if _, err := (tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: pub.NVName},
	}).Execute(t.t); err != nil {
		return 0, fmt.Errorf("incrementing the revocation counter NV 0x%08x: %w", uint32(index), err)
	}
	return t.readCounter(index)
}
