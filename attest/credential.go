package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
)

// EKPublic is an endorsement key's public area, used to encrypt credential
// activation challenges to the TPM that holds the key.
type EKPublic struct {
	Public tpm2.TPMTPublic
	Key    crypto.PublicKey
}

// ParseEKPublic parses an endorsement key's TPMT_PUBLIC. It checks that the
// key is a restricted decryption key of type RSA or ECC; it does not check
// that a vendor certified it (see [VerifyEKCertificate]).
func ParseEKPublic(b []byte) (*EKPublic, error) {
	pub, err := parsePublic(b)
	if err != nil {
		return nil, verifyErrWrap(ReasonMalformedPublic, err, "endorsement key public area is malformed")
	}
	attrs := pub.ObjectAttributes
	if !attrs.Restricted || !attrs.Decrypt || attrs.SignEncrypt {
		return nil, verifyErr(ReasonMalformedPublic, "endorsement key objectAttributes 0x%08x: want restricted and decrypt set, sign clear", objectAttributesValue(pub))
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, verifyErrWrap(ReasonMalformedPublic, err, "endorsement key public key is invalid")
	}
	return &EKPublic{Public: *pub, Key: key}, nil
}

// EKPublicFromKey builds the public area that the TCG default EK template
// (RSA 2048 or ECC NIST P-256, low range) gives for the key, as needed when
// a verifier has the EK only from its certificate.
func EKPublicFromKey(key crypto.PublicKey) (*EKPublic, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != 2048 {
			return nil, fmt.Errorf("EK is RSA %d bits: only the RSA 2048 default template is known, send the EK's TPMT_PUBLIC instead", k.N.BitLen())
		}
		pub := tpm2.RSAEKTemplate
		params, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, err
		}
		if k.E != 65537 {
			params.Exponent = uint32(k.E)
		}
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, 256))})
		return &EKPublic{Public: pub, Key: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("EK curve %s: only the NIST P-256 default template is known, send the EK's TPMT_PUBLIC instead", k.Curve.Params().Name)
		}
		point, err := k.Bytes()
		if err != nil || len(point) != 65 {
			return nil, fmt.Errorf("encoding the EK public key: %v", err)
		}
		pub := tpm2.ECCEKTemplate
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: point[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: point[33:]},
		})
		return &EKPublic{Public: pub, Key: k}, nil
	}
	return nil, fmt.Errorf("EK public key type %T is not RSA or ECDSA", key)
}

// Marshal returns the EK's TPMT_PUBLIC encoding.
func (ek *EKPublic) Marshal() []byte { return tpm2.Marshal(ek.Public) }

// Credential is a credential activation challenge (TPM2_MakeCredential
// computed in software): only the TPM holding the EK, and only for a key
// with the given name loaded in it, can recover the secret with
// TPM2_ActivateCredential.
type Credential struct {
	// CredentialBlob is the TPM2B_ID_OBJECT contents.
	CredentialBlob []byte
	// EncryptedSecret is the TPM2B_ENCRYPTED_SECRET contents.
	EncryptedSecret []byte
}

// MakeCredential encrypts secret (at most 64 bytes) to the EK, bound to the
// name of the key that must be loaded to activate it.
func MakeCredential(rand io.Reader, ek *EKPublic, name []byte, secret []byte) (*Credential, error) {
	if ek == nil {
		return nil, errors.New("make credential: no endorsement key")
	}
	if len(secret) == 0 || len(secret) > maxDigestSize {
		return nil, fmt.Errorf("make credential: secret of %d bytes: use 1 to %d bytes", len(secret), maxDigestSize)
	}
	if len(name) < 2 {
		return nil, errors.New("make credential: the key name is empty")
	}
	key, err := tpm2.ImportEncapsulationKey(&ek.Public)
	if err != nil {
		return nil, fmt.Errorf("make credential: endorsement key: %w", err)
	}
	blob, encSecret, err := tpm2.CreateCredential(rand, key, name, secret)
	if err != nil {
		return nil, fmt.Errorf("make credential: %w", err)
	}
	return &Credential{CredentialBlob: blob, EncryptedSecret: encSecret}, nil
}

// Activation is a pending credential activation: the verifier keeps it
// (the secret never leaves the verifier) and sends Credential to the agent.
type Activation struct {
	Credential
	secret []byte
}

// activationSecretSize is the size of the random secret: 32 bytes, the
// digest size of the SHA-256 nameAlg of the default EK templates.
const activationSecretSize = 32

// NewActivation creates a credential activation challenge for the
// attestation key ak in the TPM of ek, with a fresh secret from rand.
func NewActivation(rand io.Reader, ek *EKPublic, ak *AKPublic) (*Activation, error) {
	if ak == nil {
		return nil, errors.New("new activation: no attestation key")
	}
	secret := make([]byte, activationSecretSize)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return nil, fmt.Errorf("new activation: reading random secret: %w", err)
	}
	c, err := MakeCredential(rand, ek, ak.Name, secret)
	if err != nil {
		return nil, err
	}
	return &Activation{Credential: *c, secret: secret}, nil
}

// Secret returns the challenge's secret, for a verifier that stores the
// pending activation between requests. Treat it like a password: never log
// it or send it to the agent.
func (a *Activation) Secret() []byte { return a.secret }

// Check compares the secret the agent recovered with the challenge's
// secret in constant time. A mismatch is a *VerificationError with
// ReasonCredentialMismatch.
func (a *Activation) Check(activated []byte) error {
	return CheckActivatedSecret(a.secret, activated)
}

// CheckActivatedSecret compares a recovered credential with the expected
// secret in constant time.
func CheckActivatedSecret(expected, activated []byte) error {
	if len(expected) == 0 {
		return errors.New("check activated secret: the expected secret is empty")
	}
	if subtle.ConstantTimeCompare(activated, expected) != 1 {
		return verifyErr(ReasonCredentialMismatch, "activated credential does not match the challenge: the attestation key is not in the TPM of this endorsement key")
	}
	return nil
}
