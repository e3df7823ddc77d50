package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// Key algorithms a publisher may sign with.
const (
	AlgEd25519   = "ed25519"
	AlgECDSAP256 = "ecdsa-p256"
)

// PrivateKey is a publisher's signing key. It refuses to be encoded as JSON
// or text, and its String method shows only the key id, so that it does not
// end up in a log or a response by accident.
type PrivateKey struct {
	signer crypto.Signer
	id     string
}

// GenerateKey returns a new signing key of the given algorithm, AlgEd25519
// or AlgECDSAP256, drawing randomness from rand.
func GenerateKey(alg string, rand io.Reader) (*PrivateKey, error) {
	var signer crypto.Signer
	switch alg {
	case AlgEd25519:
		_, priv, err := ed25519.GenerateKey(rand)
		if err != nil {
			return nil, fmt.Errorf("generate ed25519 key: %w", err)
		}
		signer = priv
	case AlgECDSAP256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand)
		if err != nil {
			return nil, fmt.Errorf("generate ecdsa p-256 key: %w", err)
		}
		signer = priv
	default:
		return nil, fmt.Errorf("key algorithm %q is not supported: use %s or %s", alg, AlgEd25519, AlgECDSAP256)
	}
	return newPrivateKey(signer)
}

func newPrivateKey(signer crypto.Signer) (*PrivateKey, error) {
	id, err := KeyID(signer.Public())
	if err != nil {
		return nil, err
	}
	return &PrivateKey{signer: signer, id: id}, nil
}

// Public returns the key's public half.
func (k *PrivateKey) Public() crypto.PublicKey { return k.signer.Public() }

// KeyID returns the id of the key's public half.
func (k *PrivateKey) KeyID() string { return k.id }

// String names the key by its id only.
func (k *PrivateKey) String() string { return "bundle.PrivateKey(" + k.id + ")" }

// MarshalJSON refuses to encode a private key.
func (k *PrivateKey) MarshalJSON() ([]byte, error) {
	return nil, errors.New("bundle: refusing to encode a private key as JSON")
}

// MarshalText refuses to encode a private key.
func (k *PrivateKey) MarshalText() ([]byte, error) {
	return nil, errors.New("bundle: refusing to encode a private key as text")
}

// MarshalPrivateKeyPEM encodes the key as a PKCS #8 "PRIVATE KEY" PEM block.
// Store the result with mode 0600.
func MarshalPrivateKeyPEM(k *PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS #8 "PRIVATE KEY" PEM block holding an
// Ed25519 or ECDSA P-256 key. Errors never include the key material.
func ParsePrivateKeyPEM(data []byte) (*PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("private key: expected a PEM block of type PRIVATE KEY (PKCS #8), as written by vouch bundle keygen")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("private key: PKCS #8 structure is invalid")
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return newPrivateKey(k)
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("private key: ECDSA curve %s is not supported: use P-256", k.Curve.Params().Name)
		}
		return newPrivateKey(k)
	default:
		return nil, fmt.Errorf("private key: %T keys are not supported: use %s or %s", key, AlgEd25519, AlgECDSAP256)
	}
}

// MarshalPublicKeyPEM encodes an Ed25519 or ECDSA P-256 public key as a
// PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PKIX "PUBLIC KEY" PEM block holding an Ed25519
// or ECDSA P-256 key.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("public key: expected a PEM block of type PUBLIC KEY, as written by vouch bundle keygen")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("public key: ed25519 key is %d bytes, expected %d", len(k), ed25519.PublicKeySize)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("public key: ECDSA curve %s is not supported: use P-256", k.Curve.Params().Name)
		}
		// Reject points off the curve before they reach a verifier.
		if _, err := k.ECDH(); err != nil {
			return fmt.Errorf("public key: invalid P-256 point: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("public key: %T keys are not supported: use %s or %s", pub, AlgEd25519, AlgECDSAP256)
	}
}

// KeyID returns a public key's id: the hexadecimal SHA-256 of its PKIX DER
// encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	if err := checkPublicKey(pub); err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// Sign adds a signature by key to the envelope, drawing randomness from rand
// for ECDSA. Ed25519 signatures are deterministic.
func (e *Envelope) Sign(key *PrivateKey, rand io.Reader) error {
	if len(e.Signatures) >= MaxSignatures {
		return fmt.Errorf("envelope already has %d signatures, the limit", MaxSignatures)
	}
	msg := PAE(e.PayloadType, e.Payload)
	var sig []byte
	var err error
	switch s := key.signer.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(s, msg)
	case *ecdsa.PrivateKey:
		digest := sha256.Sum256(msg)
		sig, err = ecdsa.SignASN1(rand, s, digest[:])
	default:
		err = fmt.Errorf("%T keys are not supported", s)
	}
	if err != nil {
		return fmt.Errorf("sign envelope with key %s: %w", key.id, err)
	}
	e.Signatures = append(e.Signatures, Signature{KeyID: key.id, Sig: sig})
	return nil
}

// SignedBy reports whether one of the envelope's signatures is pub's
// signature over its payload type and payload. It checks nothing else:
// the caller checks the payload type and parses the payload.
func (e *Envelope) SignedBy(pub crypto.PublicKey) bool {
	msg := PAE(e.PayloadType, e.Payload)
	for _, s := range e.Signatures {
		if verifySignature(pub, msg, s.Sig) {
			return true
		}
	}
	return false
}

// verifySignature reports whether sig is pub's signature over msg.
func verifySignature(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		digest := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, digest[:], sig)
	}
	return false
}
