package attest

import (
	"fmt"

	"github.com/vouch-attest/vouch/internal/tpmbytes"
)

// Signature algorithms of TPMT_SIGNATURE (TPM_ALG_ID, TPM 2.0 Part 2).
const (
	sigAlgHMAC      uint16 = 0x0005
	sigAlgNull      uint16 = 0x0010
	sigAlgRSASSA    uint16 = 0x0014
	sigAlgRSAPSS    uint16 = 0x0016
	sigAlgECDSA     uint16 = 0x0018
	sigAlgECDAA     uint16 = 0x001A
	sigAlgSM2       uint16 = 0x001B
	sigAlgECSchnorr uint16 = 0x001C

	// maxRSASignatureSize is the size of a 4096-bit RSA signature;
	// maxECCParameterSize fits a P-521 scalar.
	maxRSASignatureSize = 512
	maxECCParameterSize = 66
)

func sigAlgName(a uint16) string {
	switch a {
	case sigAlgHMAC:
		return "HMAC"
	case sigAlgNull:
		return "NULL"
	case sigAlgRSASSA:
		return "RSASSA"
	case sigAlgRSAPSS:
		return "RSAPSS"
	case sigAlgECDSA:
		return "ECDSA"
	case sigAlgECDAA:
		return "ECDAA"
	case sigAlgSM2:
		return "SM2"
	case sigAlgECSchnorr:
		return "ECSCHNORR"
	}
	return fmt.Sprintf("0x%04x", a)
}

// Signature is a parsed TPMT_SIGNATURE. SigAlg is the union selector: only
// the member it names is set (RSA for RSASSA and RSAPSS, R and S for ECDSA).
type Signature struct {
	SigAlg uint16
	Hash   Algorithm
	RSA    []byte
	R, S   []byte
}

// ParseSignature parses TPMT_SIGNATURE bytes. It decodes the RSASSA,
// RSAPSS and ECDSA members and rejects every other selector, so a caller
// never reads a union member that is not set.
func ParseSignature(b []byte) (*Signature, error) {
	s := &Signature{}
	if err := parseSignature(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// parseSignature is ParseSignature into a Signature the caller provides.
func parseSignature(b []byte, s *Signature) error {
	r := tpmbytes.NewReader(b)
	s.SigAlg = r.U16("sigAlg")
	if r.Failed() {
		return fmt.Errorf("parsing TPMT_SIGNATURE: %w", r.Err)
	}
	switch s.SigAlg {
	case sigAlgRSASSA, sigAlgRSAPSS:
		s.Hash = Algorithm(r.U16("signature.hash"))
		s.RSA = r.TPM2B("signature.sig", maxRSASignatureSize)
	case sigAlgECDSA:
		s.Hash = Algorithm(r.U16("signature.hash"))
		s.R = r.TPM2B("signature.signatureR", maxECCParameterSize)
		s.S = r.TPM2B("signature.signatureS", maxECCParameterSize)
	default:
		return fmt.Errorf("parsing TPMT_SIGNATURE: signature algorithm %s is not supported: an attestation key signs with RSASSA, RSAPSS or ECDSA", sigAlgName(s.SigAlg))
	}
	checkDone(&r, "TPMT_SIGNATURE")
	if r.Failed() {
		return fmt.Errorf("parsing TPMT_SIGNATURE (%s): %w", sigAlgName(s.SigAlg), r.Err)
	}
	return nil
}
