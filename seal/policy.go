package seal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/tpm"
)

// policyHash is the hash algorithm of policy digests, object names and
// approval signatures, independent of the PCR bank sealed to.
const policyHash = tpm2.TPMAlgSHA256

func pcrStep(p PCRs) tpm.PolicyPCR {
	return tpm.PolicyPCR{Bank: p.Bank, Values: p.Values}
}

// approvedSteps returns the policy steps an approval signs: PolicyPCR over
// p, then, when counter is not zero, PolicyNV requiring the revocation
// counter to be at most generation.
func approvedSteps(p PCRs, counter tpm2.TPMHandle, generation uint64) []tpm.PolicyStep {
	steps := []tpm.PolicyStep{pcrStep(p)}
	if counter != 0 {
		steps = append(steps, tpm.PolicyCounterAtMost{Index: counter, Max: generation})
	}
	return steps
}

// PCRPolicy returns the policy digest of TPM2_PolicyPCR over p: an object
// with it unseals only while the PCRs hold exactly these values.
func PCRPolicy(p PCRs) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return tpm.PolicyDigest(pcrStep(p))
}

// ApprovedPolicy returns the policy digest an approval signs.
func ApprovedPolicy(p PCRs, counter tpm2.TPMHandle, generation uint64) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return tpm.PolicyDigest(approvedSteps(p, counter, generation)...)
}

// AuthorizePolicy returns the policy digest of a sealed object that
// unseals under any policy the key policyKey approves:
// TPM2_PolicyAuthorize with that key's name and an empty policyRef.
func AuthorizePolicy(policyKey *tpm2.TPMTPublic) ([]byte, error) {
	return tpm.PolicyDigest(tpm.PolicyAuthorize{Key: policyKey})
}

// DefaultCounterIndex is the NV index of the revocation counter unless
// configured otherwise, in the owner range ("VC" in its low bytes).
const DefaultCounterIndex tpm2.TPMHandle = 0x01305643

// PolicyKeyPublic returns the TPM public area of an ECDSA P-256 policy key,
// as loaded with TPM2_LoadExternal to check approval signatures.
func PolicyKeyPublic(pub *ecdsa.PublicKey) (*tpm2.TPMTPublic, error) {
	if pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("policy key is on curve %s: only P-256 is supported", pub.Curve.Params().Name)
	}
	raw, err := pub.Bytes() // uncompressed point 0x04 || X || Y
	if err != nil {
		return nil, fmt.Errorf("encode policy key: %w", err)
	}
	return &tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: policyHash,
		ObjectAttributes: tpm2.TPMAObject{
			SignEncrypt:  true,
			UserWithAuth: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: policyHash}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[33:65]},
		}),
	}, nil
}

// policyKeyECDSA converts a policy key's TPM public area back to a Go key,
// checking that it has the exact form PolicyKeyPublic produces.
func policyKeyECDSA(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	if pub.Type != tpm2.TPMAlgECC || pub.NameAlg != policyHash {
		return nil, fmt.Errorf("policy key has type 0x%04x and name algorithm 0x%04x: expected an ECC key named with SHA-256", uint16(pub.Type), uint16(pub.NameAlg))
	}
	params, err := pub.Parameters.ECCDetail()
	if err != nil || params.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("policy key is not on curve P-256")
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("policy key has no ECC point: %w", err)
	}
	if len(point.X.Buffer) != 32 || len(point.Y.Buffer) != 32 {
		return nil, fmt.Errorf("policy key point coordinates are %d and %d bytes: expected 32", len(point.X.Buffer), len(point.Y.Buffer))
	}
	raw := append([]byte{4}, point.X.Buffer...)
	raw = append(raw, point.Y.Buffer...)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("policy key point is not on curve P-256: %w", err)
	}
	want, err := PolicyKeyPublic(key)
	if err != nil {
		return nil, err
	}
	if string(tpm2.Marshal(want)) != string(tpm2.Marshal(pub)) {
		return nil, fmt.Errorf("policy key attributes or scheme differ from what vouch creates: re-create the sealed blob")
	}
	return key, nil
}
