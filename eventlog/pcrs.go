package eventlog

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vouch-attest/vouch/internal/strictjson"
)

// PCRValues holds PCR values by bank and PCR index.
type PCRValues map[Algorithm]map[int][]byte

// Banks returns the banks in ascending TPM_ALG_ID order.
func (v PCRValues) Banks() []Algorithm {
	algs := make([]Algorithm, 0, len(v))
	for a := range v {
		algs = append(algs, a)
	}
	slices.Sort(algs)
	return algs
}

// Indexes returns the PCR indexes of a bank in ascending order.
func (v PCRValues) Indexes(alg Algorithm) []int {
	idx := make([]int, 0, len(v[alg]))
	for i := range v[alg] {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	return idx
}

// MarshalJSON encodes the values as {"sha256": {"0": "hex", ...}}, the
// layout ParseExpectedPCRs reads.
func (v PCRValues) MarshalJSON() ([]byte, error) {
	out := make(map[string]map[string]string, len(v))
	for alg, pcrs := range v {
		m := make(map[string]string, len(pcrs))
		for i, val := range pcrs {
			m[strconv.Itoa(i)] = hex.EncodeToString(val)
		}
		out[alg.String()] = m
	}
	return json.Marshal(out)
}

// maxPCRIndex bounds the PCR indexes ParseExpectedPCRs accepts. PC Client
// TPMs have 24 PCRs.
const maxPCRIndex = 23

// ParseExpectedPCRs reads PCR values from one of these layouts:
//
//   - JSON {"banks": {"sha256": {"0": "hex", ...}}}, the layout of the
//     corpus's expected_pcrs.json files (other top-level keys are ignored);
//   - JSON {"sha256": {"0": "hex", ...}} without the "banks" wrapper;
//   - the YAML that tpm2_pcrread prints ("sha256:" lines followed by
//     "  0 : 0x..." lines).
//
// Every value must be hex of the bank's digest size, and PCR indexes must
// be 0 to 23.
func ParseExpectedPCRs(data []byte) (PCRValues, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("PCR values file is empty: expected JSON {\"banks\": {\"sha256\": {\"0\": \"hex\"}}} or tpm2_pcrread YAML")
	}
	if trimmed[0] == '{' {
		return parsePCRJSON(trimmed)
	}
	return parsePCRYAML(data)
}

func parsePCRJSON(data []byte) (PCRValues, error) {
	// A repeated member would silently replace the first, as in
	// {"banks": {...}, "banks": {}}.
	if err := strictjson.Check(data, 0); err != nil {
		return nil, fmt.Errorf("invalid PCR values JSON: %w", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("invalid PCR values JSON: %w", err)
	}
	banks := doc
	if raw, ok := doc["banks"]; ok {
		banks = nil
		if err := json.Unmarshal(raw, &banks); err != nil {
			return nil, fmt.Errorf("invalid \"banks\" object in PCR values JSON: %w", err)
		}
	}
	out := PCRValues{}
	for name, raw := range banks {
		alg, err := ParseAlgorithm(name)
		if err != nil {
			if _, isWrapper := doc["banks"]; !isWrapper {
				// Without the wrapper, metadata keys such as "provenance"
				// sit next to the banks and are not banks.
				continue
			}
			return nil, fmt.Errorf("PCR values JSON: bank %s: %w", quoteInput(name), err)
		}
		var pcrs map[string]string
		if err := json.Unmarshal(raw, &pcrs); err != nil {
			return nil, fmt.Errorf("PCR values JSON: bank %s: expected an object of PCR index to hex value: %w", name, err)
		}
		for idx, val := range pcrs {
			if err := out.set(alg, idx, val); err != nil {
				return nil, fmt.Errorf("PCR values JSON: %w", err)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("PCR values JSON has no bank: expected {\"banks\": {\"sha256\": {\"0\": \"hex\"}}}")
	}
	return out, nil
}

// parsePCRYAML reads the fixed shape tpm2_pcrread prints:
//
//	sha256:
//	  0 : 0x3D458CFE55CC03EA1F443F1562BEEC8DF51C75E14A9FCF9A7234A13F198E7969
//
// It is not a general YAML parser: comments, blank lines and a leading
// "---" are skipped, and anything else is an error naming the line.
func parsePCRYAML(data []byte) (PCRValues, error) {
	out := PCRValues{}
	var bank Algorithm
	haveBank := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		t := strings.TrimSpace(text)
		if t == "" || t == "---" {
			continue
		}
		key, val, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fmt.Errorf("PCR values YAML line %d: expected \"bank:\" or \"index : 0xhex\", found %s", line, quoteInput(t))
		}
		key = strings.Trim(strings.TrimSpace(key), `"'`)
		val = strings.Trim(strings.TrimSpace(val), `"'`)
		if val == "" {
			alg, err := ParseAlgorithm(key)
			if err != nil {
				return nil, fmt.Errorf("PCR values YAML line %d: %w", line, err)
			}
			bank, haveBank = alg, true
			continue
		}
		if !haveBank {
			return nil, fmt.Errorf("PCR values YAML line %d: PCR %s comes before any bank line such as \"sha256:\"", line, quoteInput(key))
		}
		if err := out.set(bank, key, val); err != nil {
			return nil, fmt.Errorf("PCR values YAML line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading PCR values YAML: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("PCR values file has no bank: expected JSON {\"banks\": {\"sha256\": {\"0\": \"hex\"}}} or tpm2_pcrread YAML")
	}
	return out, nil
}

func (v PCRValues) set(alg Algorithm, index, value string) error {
	i, err := strconv.Atoi(strings.TrimSpace(index))
	if err != nil || i < 0 || i > maxPCRIndex {
		return fmt.Errorf("bank %s: invalid PCR index %s: expected 0 to %d", alg, quoteInput(index), maxPCRIndex)
	}
	s := strings.TrimSpace(value)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	b, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("bank %s PCR %d: value is not hex: %w", alg, i, err)
	}
	if size := alg.Size(); size != 0 && len(b) != size {
		return fmt.Errorf("bank %s PCR %d: value is %d bytes, a %s digest is %d", alg, i, len(b), alg, size)
	}
	if v[alg] == nil {
		v[alg] = map[int][]byte{}
	}
	if _, dup := v[alg][i]; dup {
		return fmt.Errorf("bank %s PCR %d is given twice", alg, i)
	}
	v[alg][i] = b
	return nil
}

// maxQuotedInput bounds how much of an input value an error echoes.
const maxQuotedInput = 80

// quoteInput quotes s for an error message, cut to its first 80 bytes.
func quoteInput(s string) string {
	if len(s) <= maxQuotedInput {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:maxQuotedInput]), len(s))
}
