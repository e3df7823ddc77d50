package attest

import (
	"crypto"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vouch-attest/vouch/eventlog"
)

// Algorithm is a TPM_ALG_ID hash algorithm identifier, the one package
// eventlog uses, so verified PCR values go straight to log replay.
type Algorithm = eventlog.Algorithm

// Hash algorithms of PCR banks.
const (
	AlgSHA1   = eventlog.SHA1
	AlgSHA256 = eventlog.SHA256
	AlgSHA384 = eventlog.SHA384
	AlgSHA512 = eventlog.SHA512
	AlgSM3    = eventlog.SM3_256
)

// HashFunc returns the Go hash function of the algorithm, or 0 when Go has
// none (SM3_256 and unknown algorithms).
func HashFunc(a Algorithm) crypto.Hash {
	h, _ := a.Hash()
	return h
}

// ParseAlgorithm parses a bank name such as "sha256" (case-insensitive).
func ParseAlgorithm(name string) (Algorithm, error) { return eventlog.ParseAlgorithm(name) }

// MaxPCRs is the number of PCRs a selection can name: the PC Client platform
// has 24, and a 4-byte selection bitmap allows 32.
const MaxPCRs = 32

// PCRValues maps a bank and a PCR index to the PCR's digest. It is
// eventlog.PCRValues, so the values VerifyQuote marks verified can be
// compared with a log replay directly.
type PCRValues = eventlog.PCRValues

// SetPCR stores a digest, creating the bank's map when needed.
func SetPCR(v PCRValues, alg Algorithm, index int, digest []byte) {
	bank := v[alg]
	if bank == nil {
		bank = make(map[int][]byte)
		v[alg] = bank
	}
	bank[index] = digest
}

// GetPCR returns the digest of one PCR and whether it is present.
func GetPCR(v PCRValues, alg Algorithm, index int) ([]byte, bool) {
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
	if s.isNormal() {
		return s, nil
	}
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

// isNormal reports whether Normalize would return s unchanged, so the
// common case allocates nothing.
func (s Selection) isNormal() bool {
	for i, b := range s {
		if len(b.PCRs) == 0 {
			return false
		}
		for j, p := range b.PCRs {
			if p < 0 || p >= MaxPCRs || (j > 0 && p <= b.PCRs[j-1]) {
				return false
			}
		}
		for _, prev := range s[:i] {
			if prev.Hash == b.Hash {
				return false
			}
		}
	}
	return true
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

// bitmapCount is the number of PCRs a bitmap selects.
func bitmapCount(bitmap []byte) int {
	n := 0
	for _, b := range bitmap {
		n += bits.OnesCount8(b)
	}
	return n
}

// appendBitmapPCRs appends the sorted indexes a bitmap selects.
func appendBitmapPCRs(pcrs []int, bitmap []byte) []int {
	for i, b := range bitmap {
		for bit := 0; bit < 8; bit++ {
			if b&(1<<bit) != 0 {
				pcrs = append(pcrs, i*8+bit)
			}
		}
	}
	return pcrs
}
