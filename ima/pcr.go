package ima

import "github.com/vouch-attest/vouch/eventlog"

// Algorithm and PCRValues are package eventlog's types, so that a
// verifier passes the same quoted values to both packages.
type (
	// Algorithm is a TPM_ALG_ID naming a PCR bank's hash algorithm.
	Algorithm = eventlog.Algorithm
	// PCRValues holds PCR values by bank and PCR index.
	PCRValues = eventlog.PCRValues
)

// PCR bank algorithms.
const (
	SHA1    = eventlog.SHA1
	SHA256  = eventlog.SHA256
	SHA384  = eventlog.SHA384
	SHA512  = eventlog.SHA512
	SM3_256 = eventlog.SM3_256
)

// ParseAlgorithm returns the algorithm named by a bank name such as
// "sha256".
func ParseAlgorithm(name string) (Algorithm, error) { return eventlog.ParseAlgorithm(name) }

// supported reports whether a bank of alg can be replayed.
func supported(alg Algorithm) bool {
	_, ok := alg.Hash()
	return ok
}
