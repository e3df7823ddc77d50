package eventlog

import (
	"crypto"
	"fmt"
	"strings"

	// Register the hash implementations that Algorithm.Hash returns.
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Algorithm is a TPM_ALG_ID, the identifier of a PCR bank's hash algorithm
// (TPM 2.0 Library, Part 2, section 6.3).
type Algorithm uint16

// Hash algorithms of PCR banks. SM3_256 logs parse, but the standard
// library has no SM3, so an SM3_256 bank cannot be replayed.
const (
	SHA1    Algorithm = 0x0004
	SHA256  Algorithm = 0x000B
	SHA384  Algorithm = 0x000C
	SHA512  Algorithm = 0x000D
	SM3_256 Algorithm = 0x0012
)

var algorithmNames = []struct {
	alg  Algorithm
	name string
	size int
	hash crypto.Hash
}{
	{SHA1, "sha1", 20, crypto.SHA1},
	{SHA256, "sha256", 32, crypto.SHA256},
	{SHA384, "sha384", 48, crypto.SHA384},
	{SHA512, "sha512", 64, crypto.SHA512},
	{SM3_256, "sm3_256", 32, 0},
}

// String returns the lowercase name tpm2-tools uses for the algorithm
// ("sha256"), or "alg_0x0010" for an identifier this package does not know.
func (a Algorithm) String() string {
	for _, n := range algorithmNames {
		if n.alg == a {
			return n.name
		}
	}
	return fmt.Sprintf("alg_0x%04x", uint16(a))
}

// Hash returns the Go hash for the algorithm. The boolean is false for
// SM3_256 and for unknown identifiers.
func (a Algorithm) Hash() (crypto.Hash, bool) {
	for _, n := range algorithmNames {
		if n.alg == a && n.hash != 0 {
			return n.hash, true
		}
	}
	return 0, false
}

// hashable reports whether Hash supports the algorithm, without the table
// walk.
func (a Algorithm) hashable() bool {
	switch a {
	case SHA1, SHA256, SHA384, SHA512:
		return true
	}
	return false
}

// Size returns the digest size in bytes, or 0 for an unknown algorithm.
func (a Algorithm) Size() int {
	switch a {
	case SHA1:
		return 20
	case SHA256, SM3_256:
		return 32
	case SHA384:
		return 48
	case SHA512:
		return 64
	}
	return 0
}

// MarshalText encodes the algorithm by name, so PCRValues marshal to
// {"sha256": {...}} in JSON.
func (a Algorithm) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText decodes a name accepted by ParseAlgorithm.
func (a *Algorithm) UnmarshalText(text []byte) error {
	alg, err := ParseAlgorithm(string(text))
	if err != nil {
		return err
	}
	*a = alg
	return nil
}

// ParseAlgorithm parses a bank name such as "sha256", "SHA-256" or
// "sm3_256", or a numeric TPM_ALG_ID such as "0x000b".
func ParseAlgorithm(name string) (Algorithm, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.ReplaceAll(n, "-", "")
	switch n {
	case "sha1":
		return SHA1, nil
	case "sha256":
		return SHA256, nil
	case "sha384":
		return SHA384, nil
	case "sha512":
		return SHA512, nil
	case "sm3_256", "sm3256", "sm3":
		return SM3_256, nil
	}
	var id uint16
	if _, err := fmt.Sscanf(n, "0x%x", &id); err == nil && strings.HasPrefix(n, "0x") {
		return Algorithm(id), nil
	}
	return 0, fmt.Errorf("unknown hash algorithm %s: use sha1, sha256, sha384, sha512 or sm3_256", quoteInput(name))
}
