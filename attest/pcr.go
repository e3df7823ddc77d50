package attest

import (
	"crypto"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Algorithm is a TPM_ALG_ID hash algorithm identifier (TPM 2.0 Part 2,
// section 6.3), as used for PCR banks and signature digests.
type Algorithm uint16

// Hash algorithms of PCR banks.
const (
	AlgSHA1   Algorithm = 0x0004
	AlgSHA256 Algorithm = 0x000B
	AlgSHA384 Algorithm = 0x000C
	AlgSHA512 Algorithm = 0x000D
	AlgSM3    Algorithm = 0x0012
)

// String returns the algorithm's lower-case name, or its number in hex when
// the algorithm is not a known hash.
func (a Algorithm) String() string {
	switch a {
	case AlgSHA1:
		return "sha1"
	case AlgSHA256:
		return "sha256"
	case AlgSHA384:
		return "sha384"
	case AlgSHA512:
		return "sha512"
	case AlgSM3:
		return "sm3_256"
	}
	return fmt.Sprintf("0x%04x", uint16(a))
}

// Hash returns the Go hash function of the algorithm, or 0 when Go has none
// (SM3 and unknown algorithms).
func (a Algorithm) Hash() crypto.Hash {
	switch a {
	case AlgSHA1:
		return crypto.SHA1
	case AlgSHA256:
		return crypto.SHA256
	case AlgSHA384:
		return crypto.SHA384
	case AlgSHA512:
		return crypto.SHA512
	}
	return 0
}

// Size returns the digest size in bytes, or 0 for an unknown algorithm.
func (a Algorithm) Size() int {
	if a == AlgSM3 {
		return 32
	}
	if h := a.Hash(); h != 0 {
		return h.Size()
	}
	return 0
}

// ParseAlgorithm parses a bank name such as "sha256" (case-insensitive).
func ParseAlgorithm(name string) (Algorithm, error) {
	switch strings.ToLower(strings.ReplaceAll(name, "-", "")) {
	case "sha1":
		return AlgSHA1, nil
	case "sha256":
		return AlgSHA256, nil
	case "sha384":
		return AlgSHA384, nil
	case "sha512":
		return AlgSHA512, nil
	case "sm3", "sm3_256":
		return AlgSM3, nil
	}
	return 0, fmt.Errorf("unknown hash algorithm %q: use sha1, sha256, sha384, sha512 or sm3_256", name)
}

// MaxPCRs is the number of PCRs a selection can name: the PC Client platform
// has 24, and a 4-byte selection bitmap allows 32.
const MaxPCRs = 32

// PCRValues maps a bank and a PCR index to the PCR's digest.
type PCRValues map[Algorithm]map[int][]byte

// Set stores a digest, creating the bank's map when needed.
func (v PCRValues) Set(alg Algorithm, index int, digest []byte) {
	bank := v[alg]
	if bank == nil {
		bank = make(map[int][]byte)
		v[alg] = bank
	}
	bank[index] = digest
}

// Get returns the digest of one PCR and whether it is present.
func (v PCRValues) Get(alg Algorithm, index int) ([]byte, bool) {
	d, ok := v[alg][index]
	return d, ok
}

// BankSelection names PCRs of one bank.
type BankSelection struct {
	Hash Algorithm
	PCRs []int
}

// Selection is a TPML_PCR_SELECTION: PCRs of one or more banks, in the order
// the TPM hashes them into a quote's pcrDigest (banks in list order, PCRs in
// ascending order within a bank).
type Selection []BankSelection

// Normalize returns a copy with the PCRs of each bank sorted and
// de-duplicated, and banks without PCRs dropped. It reports an error for a
// PCR index outside 0..MaxPCRs-1 or a bank listed twice.
func (s Selection) Normalize() (Selection, error) {
	out := make(Selection, 0, len(s))
	seen := make(map[Algorithm]bool, len(s))
	for _, b := range s {
		if seen[b.Hash] {
			return nil, fmt.Errorf("bank %s is listed twice in the PCR selection: merge its PCRs into one entry", b.Hash)
		}
		seen[b.Hash] = true
		pcrs := slices.Clone(b.PCRs)
		for _, p := range pcrs {
			if p < 0 || p >= MaxPCRs {
				return nil, fmt.Errorf("PCR %d of bank %s is out of range: a selection names PCRs 0 to %d", p, b.Hash, MaxPCRs-1)
			}
		}
		sort.Ints(pcrs)
		pcrs = slices.Compact(pcrs)
		if len(pcrs) == 0 {
			continue
		}
		out = append(out, BankSelection{Hash: b.Hash, PCRs: pcrs})
	}
	return out, nil
}

// String formats the selection as "sha1:0,1,2 sha256:0-7".
func (s Selection) String() string {
	parts := make([]string, 0, len(s))
	for _, b := range s {
		parts = append(parts, b.Hash.String()+":"+FormatPCRList(b.PCRs))
	}
	return strings.Join(parts, " ")
}

// ParsePCRList parses a PCR list such as "0-7,10,14" into sorted, distinct
// indexes.
func ParsePCRList(list string) ([]int, error) {
	var pcrs []int
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := parsePCRIndex(lo)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = parsePCRIndex(hi); err != nil {
				return nil, err
			}
			if last < first {
				return nil, fmt.Errorf("PCR range %q runs backwards: write the lower index first", part)
			}
		}
		for p := first; p <= last; p++ {
			pcrs = append(pcrs, p)
		}
	}
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("PCR list %q names no PCR: use a form such as 0-7,10", list)
	}
	sort.Ints(pcrs)
	return slices.Compact(pcrs), nil
}

func parsePCRIndex(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n >= MaxPCRs {
		return 0, fmt.Errorf("invalid PCR index %q: use a number from 0 to %d", s, MaxPCRs-1)
	}
	return n, nil
}

// FormatPCRList formats sorted PCR indexes with ranges, such as "0-7,10".
func FormatPCRList(pcrs []int) string {
	var b strings.Builder
	for i := 0; i < len(pcrs); {
		j := i
		for j+1 < len(pcrs) && pcrs[j+1] == pcrs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(pcrs[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(pcrs[j]))
		}
		i = j + 1
	}
	return b.String()
}

// bitmapPCRs decodes a TPMS_PCR_SELECTION bitmap into sorted indexes.
func bitmapPCRs(bitmap []byte) []int {
	var pcrs []int
	for i, b := range bitmap {
		for bit := 0; bit < 8; bit++ {
			if b&(1<<bit) != 0 {
				pcrs = append(pcrs, i*8+bit)
			}
		}
	}
	return pcrs
}
