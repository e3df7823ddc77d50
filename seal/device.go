package seal

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/tpm"
)

// MaxSecretSize is the largest secret Seal accepts.
const MaxSecretSize = tpm.MaxSealSize

// Request describes what to seal a secret to.
type Request struct {
	// PCRs are the values to seal against: the current values, or values
	// expected after the next boot. For an authorized seal they are only
	// recorded, to explain a later failed unseal.
	PCRs PCRs
	// PolicyKey, when set, seals with TPM2_PolicyAuthorize so the secret
	// unseals under any PCR policy this key approves.
	PolicyKey *ecdsa.PublicKey
	// Counter is the NV index of the revocation counter approvals are
	// checked against (authorized seals only; 0 for none). Create it first
	// with tpm.TPM.EnsureCounter.
	Counter tpm2.TPMHandle
}

// Seal seals secret in t as req describes and returns the blob to store.
func Seal(t *tpm.TPM, secret []byte, req Request) (*Blob, error) {
	b := &Blob{Kind: PolicyPCRValues, Parent: ParentECCSRK, PCRs: req.PCRs}
	if req.PolicyKey != nil {
		pub, err := PolicyKeyPublic(req.PolicyKey)
		if err != nil {
			return nil, err
		}
		b.Kind, b.PolicyKey, b.Counter = PolicyAuthorized, pub, req.Counter
	} else if req.Counter != 0 {
		return nil, fmt.Errorf("a revocation counter needs a policy key: approvals are what it revokes")
	}
	if err := req.PCRs.Validate(); err != nil {
		return nil, err
	}
	policy, err := b.AuthPolicy()
	if err != nil {
		return nil, err
	}
	obj, err := t.SealPolicy(secret, policy)
	if err != nil {
		return nil, err
	}
	b.Public = tpm2.BytesAs2B[tpm2.TPMTPublic](obj.Public)
	b.Private = tpm2.TPM2BPrivate{Buffer: obj.Private}
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("sealed object the TPM returned: %w", err)
	}
	return b, nil
}

// Unseal returns the secret of b:
//
//   - a PolicyPCRValues blob unseals while the PCRs hold b.PCRs;
//   - a PolicyAuthorized blob unseals under the first approval that
//     verifies with the blob's policy key (Approval.VerifyFor), whose PCR
//     values equal the current ones and, with a revocation counter, whose
//     generation is at least the counter's value.
//
// The software checks only choose the approval and explain failures: the
// TPM enforces each of them again. A refusal is a *VerificationError
// naming the PCRs that differ from the values sealed against. A blob that
// this TPM cannot load (another TPM sealed it) fails with an error
// wrapping ErrBlobRejected, even when the PCRs differ too. Other failures
// are operational errors.
func Unseal(t *tpm.TPM, b *Blob, approvals []*Approval) ([]byte, error) {
	current, err := ReadPCRs(t, b.PCRs.Bank, b.PCRs.Selection())
	if err != nil {
		return nil, err
	}
	changed := b.PCRs.Changed(current)
	obj := &tpm.Sealed{Public: b.Public.Bytes(), Private: b.Private.Buffer}

	switch b.Kind {
	case PolicyPCRValues:
		if len(changed) > 0 {
			if err := checkLoads(t, obj); err != nil {
				return nil, err
			}
			return nil, &VerificationError{Reason: fmt.Sprintf("pcrs %s of bank %s changed since sealing: this boot differs from the one sealed to", formatList(changed), b.PCRs.Bank), Changed: changed}
		}
		return unsealSteps(t, obj, changed, pcrStep(b.PCRs))
	case PolicyAuthorized:
		chosen, err := chooseApproval(t, b, approvals, changed)
		var ve *VerificationError
		if errors.As(err, &ve) {
			if err := checkLoads(t, obj); err != nil {
				return nil, err
			}
		}
		if err != nil {
			return nil, err
		}
		approved, err := chosen.Policy()
		if err != nil {
			return nil, err
		}
		steps := approvedSteps(chosen.PCRs, chosen.Counter, chosen.Generation)
		steps = append(steps, tpm.PolicyAuthorize{Key: b.PolicyKey, Approved: approved, Signature: chosen.Signature})
		return unsealSteps(t, obj, changed, steps...)
	}
	return nil, fmt.Errorf("unknown policy kind %d", b.Kind)
}

// chooseApproval returns the first approval that should satisfy the TPM,
// or a *VerificationError listing why each one does not.
func chooseApproval(t *tpm.TPM, b *Blob, approvals []*Approval, changed []int) (*Approval, error) {
	if len(approvals) == 0 {
		return nil, &VerificationError{Reason: "no approvals given: an authorized blob unseals only under a PCR policy signed with its policy key (vouch seal authorize)", Changed: changed}
	}
	var reasons []string
	for i, a := range approvals {
		if err := a.VerifyFor(b); err != nil {
			reasons = append(reasons, fmt.Sprintf("approval %d: %v", i+1, err))
			continue
		}
		now, err := ReadPCRs(t, a.PCRs.Bank, a.PCRs.Selection())
		if err != nil {
			return nil, err
		}
		if diff := a.PCRs.Changed(now); len(diff) > 0 {
			reasons = append(reasons, fmt.Sprintf("approval %d: pcrs %s differ", i+1, formatList(diff)))
			continue
		}
		if a.Counter != 0 {
			value, err := t.ReadCounter(a.Counter)
			if err != nil {
				return nil, err
			}
			if value > a.Generation {
				reasons = append(reasons, fmt.Sprintf("approval %d: generation %d is revoked, the counter is at %d", i+1, a.Generation, value))
				continue
			}
		}
		return a, nil
	}
	msg := "no approval matches this boot"
	if len(changed) > 0 {
		msg += fmt.Sprintf(" (pcrs %s of bank %s changed since sealing)", formatList(changed), b.PCRs.Bank)
	}
	return nil, &VerificationError{Reason: msg + ": " + strings.Join(reasons, "; "), Changed: changed}
}

// ErrBlobRejected marks an unseal that failed because the TPM refused to
// load the sealed object: the blob was altered, or another TPM sealed it,
// or this TPM was cleared since. Retrying cannot help.
var ErrBlobRejected = errors.New("the TPM rejected the sealed blob: it was altered, or sealed by another TPM or before this TPM was cleared")

// blobRejectionCodes are the TPM response codes that mean the TPM read the
// blob and found it unusable. TPM_RC_INTEGRITY is what swtpm and the
// reference simulator return for an altered private area (see the seal
// tests). The others are the format codes of a malformed area.
var blobRejectionCodes = []tpm2.TPMRC{
	tpm2.TPMRCIntegrity, tpm2.TPMRCBinding, tpm2.TPMRCSize, tpm2.TPMRCValue,
	tpm2.TPMRCAttributes, tpm2.TPMRCHash, tpm2.TPMRCType, tpm2.TPMRCSymmetric,
	tpm2.TPMRCKey, tpm2.TPMRCKeySize, tpm2.TPMRCAsymmetric, tpm2.TPMRCScheme,
	tpm2.TPMRCInsufficient,
}

// isBlobRejection reports whether err carries one of blobRejectionCodes.
func isBlobRejection(err error) bool {
	for _, rc := range blobRejectionCodes {
		if errors.Is(err, rc) {
			return true
		}
	}
	return false
}

// checkLoads returns an error wrapping ErrBlobRejected when the TPM cannot
// load obj. Unseal calls it before it reports changed PCRs, because PCRs
// also differ on another TPM, where no boot would unseal the blob.
func checkLoads(t *tpm.TPM, obj *tpm.Sealed) error {
	err := t.CheckSealed(obj)
	switch {
	case err == nil:
		return nil
	case isBlobRejection(err):
		return fmt.Errorf("%w: %w", ErrBlobRejected, err)
	}
	return fmt.Errorf("checking that the TPM loads the sealed blob: %w", err)
}

// unsealSteps unseals obj, turns a TPM policy refusal into a
// *VerificationError and a refused blob into an error wrapping
// ErrBlobRejected.
func unsealSteps(t *tpm.TPM, obj *tpm.Sealed, changed []int, steps ...tpm.PolicyStep) ([]byte, error) {
	secret, err := t.UnsealPolicy(obj, steps...)
	if errors.Is(err, tpm.ErrPolicyMismatch) {
		reason := "the TPM refused to unseal"
		if len(changed) > 0 {
			reason += fmt.Sprintf(": pcrs %s changed since sealing", formatList(changed))
		}
		return nil, &VerificationError{Reason: reason, Changed: changed, Err: err}
	}
	if err != nil && isBlobRejection(err) {
		return nil, fmt.Errorf("%w: %w", ErrBlobRejected, err)
	}
	return secret, err
}

// ReadPCRs reads the selected PCRs of one bank.
func ReadPCRs(t *tpm.TPM, bank Bank, sel Selection) (PCRs, error) {
	vals, err := t.ReadPCRs(attest.Selection{{Hash: bank, PCRs: sel.Indices()}})
	if err != nil {
		return PCRs{}, err
	}
	out := PCRs{Bank: bank, Values: vals[bank]}
	if got := out.Selection(); got != sel {
		return PCRs{}, fmt.Errorf("reading %s pcrs %s: the TPM returned pcrs %s", bank, sel, got)
	}
	if err := out.Validate(); err != nil {
		return PCRs{}, fmt.Errorf("pcr values the TPM returned: %w", err)
	}
	return out, nil
}

func formatList(pcrs []int) string {
	return SelectionOf(pcrs...).String()
}
