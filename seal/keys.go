package seal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
)

// GeneratePolicyKey creates an ECDSA P-256 policy key and returns it as a
// PKCS #8 "PRIVATE KEY" PEM block and the public key as a PKIX
// "PUBLIC KEY" PEM block.
func GeneratePolicyKey(rand io.Reader) (privatePEM, publicPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate policy key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// ParsePolicyPrivateKey reads an ECDSA P-256 private key from a PKCS #8
// "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY" PEM block. Errors never contain
// key bytes.
func ParsePolicyPrivateKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("policy key file has no PEM block: expected a PRIVATE KEY from vouch seal keygen")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("policy key file has a %q PEM block: expected PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("policy key file: invalid private key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("policy key is a %T: only ECDSA P-256 is supported", key)
	}
	return ec, nil
}

// ParsePolicyPublicKey reads an ECDSA P-256 public key from a PKIX
// "PUBLIC KEY" PEM block, or takes the public half of a private key file.
func ParsePolicyPublicKey(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("policy key file has no PEM block: expected a PUBLIC KEY from vouch seal keygen")
	}
	if block.Type != "PUBLIC KEY" {
		priv, err := ParsePolicyPrivateKey(data)
		if err != nil {
			return nil, err
		}
		return &priv.PublicKey, nil
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("policy key file: invalid public key: %w", err)
	}
	ec, ok := key.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("policy key is a %T: only ECDSA P-256 is supported", key)
	}
	return ec, nil
}
