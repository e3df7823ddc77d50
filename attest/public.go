package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// AKPublic is an attestation key's public area that passed the checks of
// [ParseAKPublic].
type AKPublic struct {
	// Public is the decoded TPMT_PUBLIC.
	Public tpm2.TPMTPublic
	// Raw is the TPMT_PUBLIC exactly as received.
	Raw []byte
	// Key is the *rsa.PublicKey or *ecdsa.PublicKey.
	Key crypto.PublicKey
	// Name is the key's TPM name: the nameAlg identifier followed by the
	// nameAlg digest of Raw.
	Name []byte
	// SigAlg and Hash are the key's signing scheme; SigAlg is 0 when the
	// key has no fixed scheme (TPM_ALG_NULL) and takes the one a quote
	// command supplies.
	SigAlg uint16
	Hash   Algorithm
}

// maxPublicSize bounds a TPMT_PUBLIC: the TPM2B_PUBLIC that carries one
// holds at most a few hundred bytes for an RSA 4096 key.
const maxPublicSize = 2048

// parsePublic decodes a TPMT_PUBLIC and requires its canonical encoding: a
// name is a hash of the bytes, so two encodings of one key would have two
// names.
func parsePublic(b []byte) (*tpm2.TPMTPublic, error) {
	if len(b) > maxPublicSize {
		return nil, fmt.Errorf("TPMT_PUBLIC of %d bytes exceeds the maximum of %d", len(b), maxPublicSize)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("parsing TPMT_PUBLIC: %w", err)
	}
	if again := tpm2.Marshal(pub); !bytes.Equal(again, b) {
		if len(again) < len(b) && bytes.Equal(again, b[:len(again)]) {
			return nil, fmt.Errorf("parsing TPMT_PUBLIC: %d trailing bytes", len(b)-len(again))
		}
		return nil, errors.New("parsing TPMT_PUBLIC: not canonically encoded")
	}
	return pub, nil
}

// ParseAKPublic parses an attestation key's TPMT_PUBLIC and checks that the
// key can only have been used to sign TPM-generated data. It checks, in
// order:
//
//  1. the bytes are a canonically encoded TPMT_PUBLIC with nothing after it;
//  2. the key is RSA (at least 2048 bits) or ECC (NIST P-256, P-384 or
//     P-521);
//  3. objectAttributes has restricted, sign, fixedTPM, fixedParent and
//     sensitiveDataOrigin set and decrypt clear;
//  4. the nameAlg is SHA-256, SHA-384 or SHA-512, or SHA-1 with
//     allowSHA1Name;
//  5. the signing scheme is NULL or one that fits the key type (RSASSA or
//     RSAPSS for RSA, ECDSA for ECC).
//
// It does not check that the key lives in the same TPM as an endorsement
// key: credential activation ([NewActivation]) does that. Failures are
// *VerificationError with ReasonMalformedPublic, ReasonAKKey or
// ReasonAKAttributes.
func ParseAKPublic(b []byte) (*AKPublic, error) {
	return parseAKPublic(b, false)
}

// ParseAKPublicAllowSHA1Name is ParseAKPublic that also accepts a SHA-1
// nameAlg, as keys created by some older attestation clients have.
func ParseAKPublicAllowSHA1Name(b []byte) (*AKPublic, error) {
	return parseAKPublic(b, true)
}

func parseAKPublic(b []byte, allowSHA1Name bool) (*AKPublic, error) {
	pub, err := parsePublic(b)
	if err != nil {
		return nil, verifyErrWrap(ReasonMalformedPublic, err, "attestation key public area is malformed")
	}
	ak := &AKPublic{Public: *pub, Raw: bytes.Clone(b)}

	// 2. Key type and size.
	switch pub.Type {
	case tpm2.TPMAlgRSA, tpm2.TPMAlgECC:
	default:
		return nil, verifyErr(ReasonAKKey, "attestation key type 0x%04x is not RSA or ECC", uint16(pub.Type))
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, verifyErrWrap(ReasonAKKey, err, "attestation key public key is invalid")
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, verifyErr(ReasonAKKey, "attestation key is RSA %d bits: at least 2048 are required", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256, 384, 521:
		default:
			return nil, verifyErr(ReasonAKKey, "attestation key curve %s is not NIST P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	default:
		return nil, verifyErr(ReasonAKKey, "attestation key has unsupported public key type %T", key)
	}
	ak.Key = key

	// 3. Attributes that make the key an attestation key.
	attrs := pub.ObjectAttributes
	for _, a := range []struct {
		name string
		ok   bool
	}{
		{"restricted is clear", attrs.Restricted},
		{"sign is clear", attrs.SignEncrypt},
		{"fixedTPM is clear", attrs.FixedTPM},
		{"fixedParent is clear", attrs.FixedParent},
		{"sensitiveDataOrigin is clear", attrs.SensitiveDataOrigin},
		{"decrypt is set", !attrs.Decrypt},
	} {
		if !a.ok {
			return nil, verifyErr(ReasonAKAttributes, "attestation key objectAttributes 0x%08x: %s", objectAttributesValue(pub), a.name)
		}
	}

	// 4. Name algorithm.
	switch pub.NameAlg {
	case tpm2.TPMAlgSHA256, tpm2.TPMAlgSHA384, tpm2.TPMAlgSHA512:
	case tpm2.TPMAlgSHA1:
		if !allowSHA1Name {
			return nil, verifyErr(ReasonAKKey, "attestation key nameAlg is SHA-1: create the key with a SHA-256 nameAlg")
		}
	default:
		return nil, verifyErr(ReasonAKKey, "attestation key nameAlg 0x%04x is not supported", uint16(pub.NameAlg))
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, verifyErrWrap(ReasonAKKey, err, "computing the attestation key name")
	}
	ak.Name = name.Buffer

	// 5. Signing scheme.
	if err := ak.readScheme(); err != nil {
		return nil, err
	}
	return ak, nil
}

func (ak *AKPublic) readScheme() error {
	var schemeAlg tpm2.TPMAlgID
	var details tpm2.TPMUAsymScheme
	switch ak.Public.Type {
	case tpm2.TPMAlgRSA:
		p, err := ak.Public.Parameters.RSADetail()
		if err != nil {
			return verifyErrWrap(ReasonMalformedPublic, err, "attestation key RSA parameters")
		}
		schemeAlg, details = p.Scheme.Scheme, p.Scheme.Details
	case tpm2.TPMAlgECC:
		p, err := ak.Public.Parameters.ECCDetail()
		if err != nil {
			return verifyErrWrap(ReasonMalformedPublic, err, "attestation key ECC parameters")
		}
		schemeAlg, details = p.Scheme.Scheme, p.Scheme.Details
	}
	alg := uint16(schemeAlg)
	var hashAlg tpm2.TPMIAlgHash
	switch {
	case alg == sigAlgNull:
		return nil
	case alg == sigAlgRSASSA && ak.Public.Type == tpm2.TPMAlgRSA:
		d, err := details.RSASSA()
		if err != nil {
			return verifyErrWrap(ReasonMalformedPublic, err, "attestation key RSASSA scheme")
		}
		hashAlg = d.HashAlg
	case alg == sigAlgRSAPSS && ak.Public.Type == tpm2.TPMAlgRSA:
		d, err := details.RSAPSS()
		if err != nil {
			return verifyErrWrap(ReasonMalformedPublic, err, "attestation key RSAPSS scheme")
		}
		hashAlg = d.HashAlg
	case alg == sigAlgECDSA && ak.Public.Type == tpm2.TPMAlgECC:
		d, err := details.ECDSA()
		if err != nil {
			return verifyErrWrap(ReasonMalformedPublic, err, "attestation key ECDSA scheme")
		}
		hashAlg = d.HashAlg
	default:
		return verifyErr(ReasonAKKey, "attestation key scheme %s does not fit a %s key", sigAlgName(alg), keyTypeName(ak.Public.Type))
	}
	if HashFunc(Algorithm(hashAlg)) == 0 {
		return verifyErr(ReasonAKKey, "attestation key scheme hash 0x%04x is not supported", uint16(hashAlg))
	}
	ak.SigAlg = alg
	ak.Hash = Algorithm(hashAlg)
	return nil
}

func keyTypeName(t tpm2.TPMAlgID) string {
	switch t {
	case tpm2.TPMAlgRSA:
		return "RSA"
	case tpm2.TPMAlgECC:
		return "ECC"
	}
	return fmt.Sprintf("0x%04x", uint16(t))
}

func objectAttributesValue(pub *tpm2.TPMTPublic) uint32 {
	b := tpm2.Marshal(pub.ObjectAttributes)
	if len(b) != 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
