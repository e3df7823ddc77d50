package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/attest"
)

// A PolicyAuthorize seal binds a secret to a signing key instead of fixed
// PCR values: whoever holds the key approves PCR values by signing their
// PolicyPCR digest, so an OS update that changes the PCRs does not strand
// the secret. The flow:
//
//	pub, _ := AuthorizingKeyPublic(signer.Public())         // once
//	sealed, _ := t.SealAuthorized(secret, pub, policyRef)   // once, on the machine
//	approval, _ := ApprovePCRPolicy(signer, sel, values, policyRef) // per set of PCR values
//	secret, _ := t.UnsealAuthorized(sealed, approval)

// PolicyApproval is a PCR policy signed by the authorizing key.
type PolicyApproval struct {
	// Selection names the PCRs the approved values are for.
	Selection attest.Selection
	// PolicyDigest is the approved TPM2_PolicyPCR digest.
	PolicyDigest []byte
	// Signature is a TPMT_SIGNATURE over SHA-256(PolicyDigest || policyRef).
	Signature []byte
}

// AuthorizingKeyPublic returns the TPMT_PUBLIC of an ECDSA P-256 public key
// as an unrestricted signing key (ECDSA with SHA-256), the form the TPM
// loads to check policy approvals.
func AuthorizingKeyPublic(pub crypto.PublicKey) ([]byte, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("authorizing key is %T: use an ECDSA P-256 key", pub)
	}
	point, err := k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encoding the authorizing key: %w", err)
	}
	return tpm2.Marshal(tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: point[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: point[33:]},
		}),
	}), nil
}

// AuthorizePolicyDigest computes the SHA-256 policy digest of
// TPM2_PolicyAuthorize(key, policyRef) from an empty policy (TPM 2.0 Part
// 3, section 23.16): the authPolicy of an object that any PCR policy the
// key signs can open.
func AuthorizePolicyDigest(authorizingKey []byte, policyRef []byte) ([]byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](authorizingKey)
	if err != nil {
		return nil, fmt.Errorf("authorizing key: %w", err)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("authorizing key name: %w", err)
	}
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMCCPolicyAuthorize)))
	h.Write(name.Buffer)
	first := h.Sum(nil)
	h.Reset()
	h.Write(first)
	h.Write(policyRef)
	return h.Sum(nil), nil
}

// ApprovePCRPolicy signs the PolicyPCR digest of the given values with the
// authorizing key. It needs no TPM: a release pipeline can run it with the
// values predicted for a new OS version.
func ApprovePCRPolicy(signer crypto.Signer, sel attest.Selection, values attest.PCRValues, policyRef []byte) (*PolicyApproval, error) {
	sel, err := sel.Normalize()
	if err != nil {
		return nil, err
	}
	digest, err := PCRPolicyDigest(sel, values)
	if err != nil {
		return nil, err
	}
	aHash := sha256.New()
	aHash.Write(digest)
	aHash.Write(policyRef)
	der, err := signer.Sign(rand.Reader, aHash.Sum(nil), crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing the PCR policy: %w", err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("signing the PCR policy: the signer did not return an ECDSA signature: %w", err)
	}
	return &PolicyApproval{
		Selection:    sel,
		PolicyDigest: digest,
		Signature: tpm2.Marshal(tpm2.TPMTSignature{
			SigAlg: tpm2.TPMAlgECDSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
				Hash:       tpm2.TPMAlgSHA256,
				SignatureR: tpm2.TPM2BECCParameter{Buffer: sig.R.FillBytes(make([]byte, 32))},
				SignatureS: tpm2.TPM2BECCParameter{Buffer: sig.S.FillBytes(make([]byte, 32))},
			}),
		}),
	}, nil
}

// SealAuthorized seals secret so that it unseals when the PCRs hold values
// that the authorizing key approved (see ApprovePCRPolicy).
func (t *TPM) SealAuthorized(secret, authorizingKey, policyRef []byte) (*Sealed, error) {
	policy, err := AuthorizePolicyDigest(authorizingKey, policyRef)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	s, err := t.createSealed(secret, policy)
	if err != nil {
		return nil, err
	}
	s.AuthorizingKey = authorizingKey
	s.PolicyRef = policyRef
	return s, nil
}

// UnsealAuthorized unseals a blob of SealAuthorized when the current PCR
// values are the ones the approval signs. It returns an error wrapping
// ErrPolicyMismatch when the PCRs differ or the signature does not verify.
func (t *TPM) UnsealAuthorized(s *Sealed, approval *PolicyApproval) ([]byte, error) {
	if s == nil || len(s.AuthorizingKey) == 0 {
		return nil, errors.New("unseal: the blob is not sealed to an authorizing key: use Unseal")
	}
	if approval == nil {
		return nil, errors.New("unseal: no policy approval")
	}
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](approval.Signature)
	if err != nil {
		return nil, fmt.Errorf("unseal: decoding the approval signature: %w", err)
	}
	return t.unseal(s, func(sess tpm2.Session) (err error) {
		if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: toTPML(approval.Selection)}).Execute(t.t); err != nil {
			return err
		}
		key, err := tpm2.LoadExternal{
			InPublic:  tpm2.BytesAs2B[tpm2.TPMTPublic](s.AuthorizingKey),
			Hierarchy: tpm2.TPMRHOwner,
		}.Execute(t.t)
		if err != nil {
			return fmt.Errorf("loading the authorizing key: %w", err)
		}
		defer t.flush(key.ObjectHandle, &err)
		aHash := sha256.New()
		aHash.Write(approval.PolicyDigest)
		aHash.Write(s.PolicyRef)
		ticket, err := tpm2.VerifySignature{
			KeyHandle: tpm2.NamedHandle{Handle: key.ObjectHandle, Name: key.Name},
			Digest:    tpm2.TPM2BDigest{Buffer: aHash.Sum(nil)},
			Signature: *sig,
		}.Execute(t.t)
		if err != nil {
			return fmt.Errorf("checking the approval signature: %w", err)
		}
		_, err = tpm2.PolicyAuthorize{
			PolicySession:  sess.Handle(),
			ApprovedPolicy: tpm2.TPM2BDigest{Buffer: approval.PolicyDigest},
			PolicyRef:      tpm2.TPM2BDigest{Buffer: s.PolicyRef},
			KeySign:        key.Name,
			CheckTicket:    ticket.Validation,
		}.Execute(t.t)
		return err
	})
}
