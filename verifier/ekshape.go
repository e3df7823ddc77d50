package verifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// CheckEKKey returns an error when key cannot be a TPM endorsement key.
// The TCG EK Credential Profile 2.5 defines RSA 2048, 3072 and 4096 EKs
// and ECC EKs on NIST P-256, P-384 and P-521 (its SM2 template aside).
func CheckEKKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048, 3072, 4096:
			return nil
		}
		return fmt.Errorf("an RSA %d key cannot be a TPM EK, whose RSA keys have 2048, 3072 or 4096 bits", k.N.BitLen())
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("an ECC key on %s cannot be a TPM EK, whose ECC keys are on NIST P-256, P-384 or P-521", k.Curve.Params().Name)
	}
	return fmt.Errorf("a %T cannot be a TPM EK, which is an RSA or ECC key", key)
}

// CheckEKCertificate returns an error when cert cannot be a TPM EK
// certificate: a CA certificate, or one whose key cannot be an EK.
func CheckEKCertificate(cert *x509.Certificate) error {
	if cert.BasicConstraintsValid && cert.IsCA {
		return fmt.Errorf("certificate %q is a CA certificate, not an EK certificate", cert.Subject)
	}
	return CheckEKKey(cert.PublicKey)
}
