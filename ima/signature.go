package ima

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
)

// Signature types of the first header byte (enum evm_ima_xattr_type).
const (
	SignatureTypeDigsig       = 0x03 // EVM_IMA_XATTR_DIGSIG
	SignatureTypeVerityDigsig = 0x06 // IMA_VERITY_DIGSIG
)

// signatureHeaderSize is the size of struct signature_v2_hdr: type,
// version, hash algorithm, key id (4 bytes) and signature size (2 bytes).
const signatureHeaderSize = 9

// kernelHashAlgorithms maps the kernel's enum hash_algo to Go hashes;
// algorithms Go lacks map to 0.
var kernelHashAlgorithms = map[byte]struct {
	name string
	hash crypto.Hash
}{
	0: {"md4", 0}, 1: {"md5", crypto.MD5}, 2: {"sha1", crypto.SHA1}, 3: {"rmd160", 0},
	4: {"sha256", crypto.SHA256}, 5: {"sha384", crypto.SHA384}, 6: {"sha512", crypto.SHA512},
	7: {"sha224", crypto.SHA224}, 17: {"sm3", 0}, 20: {"sha3-256", crypto.SHA3_256},
	21: {"sha3-384", crypto.SHA3_384}, 22: {"sha3-512", crypto.SHA3_512},
}

// Signature is an IMA file signature (struct signature_v2_hdr followed
// by the signature), as logged in the "sig" field of ima-sig entries.
type Signature struct {
	Type    byte
	Version byte
	// HashAlgorithm is the kernel's enum hash_algo value.
	HashAlgorithm byte
	// KeyID is the last 4 bytes of the signing key's subject key
	// identifier.
	KeyID [4]byte
	Value []byte
}

// HashName returns the kernel's name of the signature's hash algorithm.
func (s *Signature) HashName() string {
	if a, ok := kernelHashAlgorithms[s.HashAlgorithm]; ok {
		return a.name
	}
	return fmt.Sprintf("hash_algo(%d)", s.HashAlgorithm)
}

// ParseSignature decodes an IMA signature with its header. The sizes in
// the header must agree with the field's length.
func ParseSignature(b []byte) (*Signature, error) {
	if len(b) == 0 {
		return nil, errors.New("signature field is empty")
	}
	if len(b) < signatureHeaderSize {
		return nil, fmt.Errorf("signature has %d bytes, shorter than the %d-byte header", len(b), signatureHeaderSize)
	}
	s := &Signature{Type: b[0], Version: b[1], HashAlgorithm: b[2]}
	copy(s.KeyID[:], b[3:7])
	if s.Type != SignatureTypeDigsig && s.Type != SignatureTypeVerityDigsig {
		return nil, fmt.Errorf("signature type 0x%02x is not a digital signature (want 0x03 or 0x06)", s.Type)
	}
	if s.Version != 2 && s.Version != 3 {
		return nil, fmt.Errorf("signature version %d is not supported (want 2 or 3)", s.Version)
	}
	size := int(binary.BigEndian.Uint16(b[7:9]))
	if size != len(b)-signatureHeaderSize {
		return nil, fmt.Errorf("signature header gives a size of %d bytes, but %d bytes follow it", size, len(b)-signatureHeaderSize)
	}
	s.Value = b[signatureHeaderSize:]
	return s, nil
}

// Key is a public key that IMA signatures are checked against.
type Key struct {
	// Name describes the key, such as the certificate subject.
	Name string
	// IDs are the key ids a signature may name: the last 4 bytes of the
	// certificate's subject key identifier and of the SHA-1 of the public
	// key, which is how evmctl derives it.
	IDs    [][4]byte
	Public crypto.PublicKey
}

// Keyring holds the keys configured for ima-sig verification.
type Keyring struct {
	Keys []Key
}

// ParseKeys reads X.509 certificates and public keys in PEM (CERTIFICATE
// or PUBLIC KEY blocks) or a single DER certificate.
func ParseKeys(data []byte) (*Keyring, error) {
	k := &Keyring{}
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			if err := k.addCertificate(block.Bytes); err != nil {
				return nil, err
			}
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("invalid PUBLIC KEY block: %w", err)
			}
			id, err := spkiKeyID(block.Bytes)
			if err != nil {
				return nil, err
			}
			k.Keys = append(k.Keys, Key{Name: "public key", IDs: [][4]byte{id}, Public: pub})
		}
	}
	if len(k.Keys) == 0 {
		if err := k.addCertificate(data); err != nil {
			return nil, fmt.Errorf("no CERTIFICATE or PUBLIC KEY PEM block, and not a DER certificate: %w", err)
		}
	}
	return k, nil
}

func (k *Keyring) addCertificate(der []byte) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("invalid certificate: %w", err)
	}
	key := Key{Name: cert.Subject.String(), Public: cert.PublicKey}
	if n := len(cert.SubjectKeyId); n >= 4 {
		key.IDs = append(key.IDs, [4]byte(cert.SubjectKeyId[n-4:]))
	}
	id, err := spkiKeyID(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return err
	}
	key.IDs = append(key.IDs, id)
	k.Keys = append(k.Keys, key)
	return nil
}

// spkiKeyID returns the last 4 bytes of the SHA-1 of the public key bits.
func spkiKeyID(spki []byte) ([4]byte, error) {
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return [4]byte{}, fmt.Errorf("invalid subject public key info: %w", err)
	}
	sum := sha1.Sum(info.PublicKey.Bytes)
	return [4]byte(sum[16:]), nil
}

// Merge adds the keys of other.
func (k *Keyring) Merge(other *Keyring) {
	k.Keys = append(k.Keys, other.Keys...)
}

// VerifySignature checks an entry's IMA signature against the keyring:
//
//  1. the signature parses and is version 2 (version 3 signs a file id
//     structure and is reported as not supported);
//  2. its hash algorithm is the one of the logged file digest;
//  3. a key with the signature's key id exists;
//  4. that key's signature over the file digest verifies (RSA PKCS #1
//     v1.5 or ECDSA).
//
// It returns the key that verified the signature.
func (k *Keyring) VerifySignature(f *Fields) (*Key, error) {
	sig, err := ParseSignature(f.Signature)
	if err != nil {
		return nil, fmt.Errorf("signature does not parse: %w", err)
	}
	if sig.Version != 2 || sig.Type != SignatureTypeDigsig {
		return nil, fmt.Errorf("signature type 0x%02x version %d is not supported: only version 2 file signatures are checked", sig.Type, sig.Version)
	}
	alg, ok := kernelHashAlgorithms[sig.HashAlgorithm]
	if !ok || alg.hash == 0 || !alg.hash.Available() {
		return nil, fmt.Errorf("signature hash algorithm %s is not supported", sig.HashName())
	}
	if alg.name != f.DigestAlgorithm {
		return nil, fmt.Errorf("signature uses %s but the file digest is %s", alg.name, f.DigestAlgorithm)
	}
	var tried bool
	var lastErr error
	for i := range k.Keys {
		key := &k.Keys[i]
		if !hasKeyID(key.IDs, sig.KeyID) {
			continue
		}
		tried = true
		if lastErr = verifyDigest(key.Public, alg.hash, f.Digest, sig.Value); lastErr == nil {
			return key, nil
		}
	}
	if !tried {
		return nil, fmt.Errorf("no configured key has key id %x", sig.KeyID)
	}
	return nil, fmt.Errorf("signature by key id %x does not verify: %w", sig.KeyID, lastErr)
}

func hasKeyID(ids [][4]byte, id [4]byte) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func verifyDigest(pub crypto.PublicKey, h crypto.Hash, digest, sig []byte) error {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(p, h, digest, sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	case ed25519.PublicKey:
		return errors.New("Ed25519 keys are not used for IMA signatures")
	}
	return fmt.Errorf("unsupported public key type %T", pub)
}
