package seal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/internal/strictjson"
)

// MaxPCR is one past the highest PCR index Vouch seals to: PC Client TPMs
// have 24 PCRs.
const MaxPCR = 24

// Bank is a PCR bank, named by its hash algorithm.
type Bank = attest.Algorithm

// Banks that Vouch seals to.
const (
	SHA1   = attest.AlgSHA1
	SHA256 = attest.AlgSHA256
	SHA384 = attest.AlgSHA384
	SHA512 = attest.AlgSHA512
)

// ParseBank reads a bank name such as "sha256".
func ParseBank(name string) (Bank, error) {
	return attest.ParseAlgorithm(name)
}

// Selection is a set of PCR indices below MaxPCR as a bit mask: bit i
// selects PCR i.
type Selection uint32

// ParseSelection reads a PCR list such as "0,2,4,7" or "0-7".
func ParseSelection(list string) (Selection, error) {
	pcrs, err := attest.ParsePCRList(list)
	if err != nil {
		return 0, err
	}
	var s Selection
	for _, i := range pcrs {
		if i >= MaxPCR {
			return 0, fmt.Errorf("pcr %d in %q is out of range: a PC Client TPM has pcrs 0 to %d", i, list, MaxPCR-1)
		}
		s |= 1 << i
	}
	if s == 0 {
		return 0, fmt.Errorf("pcr list %q is empty: name at least one pcr, e.g. 0,2,4,7", list)
	}
	return s, nil
}

// SelectionOf returns the selection of the given PCR indices; indices of
// MaxPCR or more are ignored.
func SelectionOf(indices ...int) Selection {
	var s Selection
	for _, i := range indices {
		if i >= 0 && i < MaxPCR {
			s |= 1 << i
		}
	}
	return s
}

// Indices returns the selected PCR indices in increasing order.
func (s Selection) Indices() []int {
	var out []int
	for i := range MaxPCR {
		if s&(1<<i) != 0 {
			out = append(out, i)
		}
	}
	return out
}

// Len returns the number of selected PCRs.
func (s Selection) Len() int { return bits.OnesCount32(uint32(s)) }

func (s Selection) String() string {
	parts := make([]string, 0, s.Len())
	for _, i := range s.Indices() {
		parts = append(parts, strconv.Itoa(i))
	}
	return strings.Join(parts, ",")
}

// PCRs is a set of PCR values of one bank.
type PCRs struct {
	Bank   Bank
	Values map[int][]byte // by PCR index
}

// Selection returns the indices present in p.
func (p PCRs) Selection() Selection {
	var s Selection
	for i := range p.Values {
		s |= SelectionOf(i)
	}
	return s
}

// Validate checks that p has at least one PCR, only indices below MaxPCR
// and digests of the bank's size.
func (p PCRs) Validate() error {
	size := p.Bank.Size()
	if size == 0 {
		return fmt.Errorf("unknown pcr bank %s: use sha1, sha256, sha384, sha512 or sm3_256", p.Bank)
	}
	if len(p.Values) == 0 {
		return fmt.Errorf("no pcr values given")
	}
	for _, i := range mapsKeys(p.Values) {
		if i < 0 || i >= MaxPCR {
			return fmt.Errorf("pcr %d is out of range 0 to %d", i, MaxPCR-1)
		}
		if len(p.Values[i]) != size {
			return fmt.Errorf("pcr %d in bank %s is %d bytes: expected %d", i, p.Bank, len(p.Values[i]), size)
		}
	}
	return nil
}

func mapsKeys(m map[int][]byte) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// Changed returns the indices, in increasing order, of the PCRs of p whose
// value in now differs or is missing. The banks must match.
func (p PCRs) Changed(now PCRs) []int {
	var out []int
	for _, i := range mapsKeys(p.Values) {
		if v, ok := now.Values[i]; !ok || now.Bank != p.Bank || !bytes.Equal(v, p.Values[i]) {
			out = append(out, i)
		}
	}
	return out
}

// Subset returns the values of the selected PCRs, or an error naming the
// first selected PCR that p lacks.
func (p PCRs) Subset(sel Selection) (PCRs, error) {
	out := PCRs{Bank: p.Bank, Values: make(map[int][]byte, sel.Len())}
	for _, i := range sel.Indices() {
		v, ok := p.Values[i]
		if !ok {
			return PCRs{}, fmt.Errorf("pcr %d of bank %s is missing from the expected values", i, p.Bank)
		}
		out.Values[i] = v
	}
	return out, nil
}

// maxExpectedFile bounds an expected-PCR file: 8 banks of 24 hex SHA-512
// values take about 25 KiB.
const maxExpectedFile = 1 << 20

// ParseExpected reads the values of one bank from an expected-PCR JSON
// document of the form
//
//	{"banks": {"sha256": {"0": "hex digest", "7": "hex digest"}}}
//
// Other top-level keys, such as "provenance", are ignored.
func ParseExpected(data []byte, bank Bank) (PCRs, error) {
	if len(data) > maxExpectedFile {
		return PCRs{}, fmt.Errorf("expected pcr file is %d bytes, more than the limit of %d", len(data), maxExpectedFile)
	}
	var doc struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	// Repeated members are rejected: encoding/json would keep the last,
	// another reader of the file the first.
	if err := strictjson.Decode(data, &doc, strictjson.Options{AllowUnknown: true}); err != nil {
		return PCRs{}, fmt.Errorf("expected pcr file is not the {\"banks\": {\"sha256\": {\"0\": \"hex\"}}} json layout: %w", err)
	}
	values, ok := doc.Banks[bank.String()]
	if !ok {
		have := slices.Sorted(func(yield func(string) bool) {
			for k := range doc.Banks {
				if !yield(k) {
					return
				}
			}
		})
		return PCRs{}, fmt.Errorf("expected pcr file has no %s bank (it has %v): choose another bank or file", bank, have)
	}

	out := PCRs{Bank: bank, Values: make(map[int][]byte, len(values))}
	for key, text := range values {
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= MaxPCR {
			return PCRs{}, fmt.Errorf("expected pcr file: bank %s key %q is not a pcr index from 0 to %d", bank, key, MaxPCR-1)
		}
		v, err := hex.DecodeString(text)
		if err != nil {
			return PCRs{}, fmt.Errorf("expected pcr file: bank %s pcr %d is not hex: %w", bank, i, err)
		}
		out.Values[i] = v
	}
	if err := out.Validate(); err != nil {
		return PCRs{}, fmt.Errorf("expected pcr file: %w", err)
	}
	return out, nil
}

// MarshalExpected writes p in the layout ParseExpected reads.
func MarshalExpected(p PCRs) ([]byte, error) {
	values := make(map[string]string, len(p.Values))
	for i, v := range p.Values {
		values[strconv.Itoa(i)] = hex.EncodeToString(v)
	}
	return json.MarshalIndent(map[string]any{"banks": map[string]any{p.Bank.String(): values}}, "", "  ")
}
