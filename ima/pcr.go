package ima

import (
	"crypto"
	_ "crypto/sha1" // registers SHA-1 for Algorithm.Hash
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"strings"
)

// NOTE: Algorithm and PCRValues mirror the types of package eventlog so
// that a verifier can pass the same quoted values to both packages. They
// are to be replaced by eventlog's once that package is on main.

// Algorithm is a TPM_ALG_ID naming a PCR bank's hash algorithm (TPM 2.0
// Library Part 2, section 6.3).
type Algorithm uint16

// PCR bank algorithms.
const (
	SHA1   Algorithm = 0x0004
	SHA256 Algorithm = 0x000B
	SHA384 Algorithm = 0x000C
	SHA512 Algorithm = 0x000D
	SM3256 Algorithm = 0x0012
)

// PCRValues holds PCR values by bank and PCR index.
type PCRValues map[Algorithm]map[int][]byte

// Hash returns the Go hash for the algorithm, or 0 when Go has none
// (SM3-256).
func (a Algorithm) Hash() crypto.Hash {
	switch a {
	case SHA1:
		return crypto.SHA1
	case SHA256:
		return crypto.SHA256
	case SHA384:
		return crypto.SHA384
	case SHA512:
		return crypto.SHA512
	}
	return 0
}

// Size returns the digest size in bytes, or 0 for an unknown algorithm.
func (a Algorithm) Size() int {
	if a == SM3256 {
		return 32
	}
	if h := a.Hash(); h != 0 {
		return h.Size()
	}
	return 0
}

func (a Algorithm) String() string {
	switch a {
	case SHA1:
		return "sha1"
	case SHA256:
		return "sha256"
	case SHA384:
		return "sha384"
	case SHA512:
		return "sha512"
	case SM3256:
		return "sm3_256"
	}
	return fmt.Sprintf("alg(0x%04x)", uint16(a))
}

// ParseAlgorithm returns the algorithm named by a bank name such as
// "sha256" (case-insensitive).
func ParseAlgorithm(name string) (Algorithm, error) {
	switch strings.ToLower(name) {
	case "sha1":
		return SHA1, nil
	case "sha256":
		return SHA256, nil
	case "sha384":
		return SHA384, nil
	case "sha512":
		return SHA512, nil
	case "sm3_256", "sm3-256", "sm3":
		return SM3256, nil
	}
	return 0, fmt.Errorf("unknown hash algorithm %q: use sha1, sha256, sha384 or sha512", name)
}
