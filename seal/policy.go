package seal

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// policyHash is the hash algorithm of every policy session, object name
// and approval signature in Vouch's sealed blobs. It is independent of the
// PCR bank sealed to.
const policyHash = tpm2.TPMAlgSHA256

// PCRPolicy returns the policy digest of TPM2_PolicyPCR over p: the sealed
// object unseals only while the PCRs hold exactly these values.
func PCRPolicy(p PCRs) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(policyHash)
	if err != nil {
		return nil, err
	}
	if err := tpm2.PolicyPCR(pcrPolicyCommand(p)).Update(calc); err != nil {
		return nil, fmt.Errorf("compute PolicyPCR digest: %w", err)
	}
	return calc.Hash().Digest, nil
}

// pcrPolicyCommand returns TPM2_PolicyPCR with the digest of p's values,
// concatenated in increasing PCR order as the TPM does.
func pcrPolicyCommand(p PCRs) pcrPolicy {
	h := crypto.SHA256.New()
	for _, i := range p.Selection().Indices() {
		h.Write(p.Values[i])
	}
	return pcrPolicy{
		PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
		Pcrs:      p.Selection().TPML(p.Bank),
	}
}

// ApprovedPolicy returns the policy digest that an approval signs:
// TPM2_PolicyPCR over p, then, when counter is not zero, TPM2_PolicyNV
// requiring the revocation counter at NV index counter to be at most
// generation.
func ApprovedPolicy(p PCRs, counter tpm2.TPMHandle, generation uint64) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(policyHash)
	if err != nil {
		return nil, err
	}
	if err := tpm2.PolicyPCR(pcrPolicyCommand(p)).Update(calc); err != nil {
		return nil, fmt.Errorf("compute PolicyPCR digest: %w", err)
	}
	if counter != 0 {
		cmd, err := counterPolicyCommand(counter, generation)
		if err != nil {
			return nil, err
		}
		if err := cmd.Update(calc); err != nil {
			return nil, fmt.Errorf("compute PolicyNV digest: %w", err)
		}
	}
	return calc.Hash().Digest, nil
}

// counterPolicyCommand returns TPM2_PolicyNV comparing the 8-byte counter
// at index with generation: the check passes while counter <= generation.
func counterPolicyCommand(index tpm2.TPMHandle, generation uint64) (tpm2.PolicyNV, error) {
	name, err := CounterName(index)
	if err != nil {
		return tpm2.PolicyNV{}, err
	}
	operand := binary.BigEndian.AppendUint64(nil, generation)
	nv := tpm2.NamedHandle{Handle: index, Name: name}
	return tpm2.PolicyNV{
		AuthHandle: nv,
		NVIndex:    nv,
		OperandB:   tpm2.TPM2BOperand{Buffer: operand},
		Offset:     0,
		Operation:  tpm2.TPMEOUnsignedLE,
	}, nil
}

// AuthorizePolicy returns the policy digest of a sealed object that
// unseals under any policy approved by the key policyKey:
// TPM2_PolicyAuthorize with that key's name and an empty policyRef.
func AuthorizePolicy(policyKey *tpm2.TPMTPublic) ([]byte, error) {
	name, err := tpm2.ObjectName(policyKey)
	if err != nil {
		return nil, fmt.Errorf("compute policy key name: %w", err)
	}
	calc, err := tpm2.NewPolicyCalculator(policyHash)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyAuthorize{KeySign: *name}).Update(calc); err != nil {
		return nil, fmt.Errorf("compute PolicyAuthorize digest: %w", err)
	}
	return calc.Hash().Digest, nil
}

// CounterRange is the NV index range Vouch accepts for revocation
// counters: the owner range of TPM handle type TPM_HT_NV_INDEX (TCG
// Registry of Reserved TPM 2.0 Handles, 0x01000000 to 0x013FFFFF, less
// the ranges reserved for TPM and platform manufacturers).
const (
	CounterRangeFirst tpm2.TPMHandle = 0x01000000
	CounterRangeLast  tpm2.TPMHandle = 0x013FFFFF
)

// DefaultCounterIndex is the NV index of the revocation counter unless
// configured otherwise.
const DefaultCounterIndex tpm2.TPMHandle = 0x01305643 // "VC" in the owner range

// CounterPublic returns the public area of a revocation counter at index:
// an 8-byte TPM_NT_COUNTER that the owner increments (owner authorization)
// and anyone may read with its empty authValue, which TPM2_PolicyNV needs
// at unseal time. Written is set, as it is after the first increment, so
// that the name matches the index in use.
func CounterPublic(index tpm2.TPMHandle) (tpm2.TPMSNVPublic, error) {
	if index < CounterRangeFirst || index > CounterRangeLast {
		return tpm2.TPMSNVPublic{}, fmt.Errorf("nv index 0x%08x is outside the owner range 0x%08x to 0x%08x", uint32(index), uint32(CounterRangeFirst), uint32(CounterRangeLast))
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
	name, err := tpm2.NVName(&pub)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("compute name of nv index 0x%08x: %w", uint32(index), err)
	}
	return *name, nil
}

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
