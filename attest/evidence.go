package attest

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/vouch-attest/vouch/internal/strictjson"
)

// QuoteEvidence is the JSON form of a quote with what a verifier needs to
// check it offline: the AK public area, the nonce, the selection and the
// reported PCR values. `vouch tpm quote -o json` writes it and `vouch
// attest verify-quote` reads it. Everything in it is untrusted.
type QuoteEvidence struct {
	// AKPublic is the AK's TPMT_PUBLIC (base64 in JSON).
	AKPublic []byte `json:"ak_public"`
	// Nonce is the verifier's challenge (hex in JSON).
	Nonce HexBytes `json:"nonce"`
	// Selection maps a bank name to the quoted PCR indexes.
	Selection SelectionJSON `json:"selection"`
	// Attest and Signature are the TPM's output (base64 in JSON).
	Attest    []byte `json:"attest"`
	Signature []byte `json:"signature"`
	// PCRs maps a bank name to PCR index to hex digest.
	PCRs PCRValuesJSON `json:"pcrs"`
}

// MaxQuoteFileSize bounds a quote file: a quote of every PCR of four banks
// with its AK and signature takes a few KiB.
const MaxQuoteFileSize = 1 << 20

// ParseQuoteEvidence decodes a quote file. It rejects files over
// MaxQuoteFileSize, unknown members, duplicate members (also in another
// case) and member names in another case than the schema's, so that
// every JSON reader sees the same quote, and a file without a quote. It
// verifies nothing: see VerifyQuote.
func ParseQuoteEvidence(data []byte) (*QuoteEvidence, error) {
	if len(data) > MaxQuoteFileSize {
		return nil, fmt.Errorf("quote file is %d bytes, more than the limit of %d", len(data), MaxQuoteFileSize)
	}
	var qe QuoteEvidence
	if err := strictjson.Decode(data, &qe, strictjson.Options{}); err != nil {
		return nil, fmt.Errorf("not a quote file: %w", err)
	}
	if len(qe.Attest) == 0 || len(qe.Signature) == 0 {
		return nil, errors.New("not a quote file: attest or signature is missing: write quote files with 'vouch tpm quote -o json'")
	}
	return &qe, nil
}

// HexBytes is a byte string written as hex in JSON.
type HexBytes []byte

// MarshalJSON encodes the bytes as a hex string.
func (h HexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON decodes a hex string.
func (h *HexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("invalid hex string: %w", err)
	}
	*h = d
	return nil
}

// SelectionJSON is a Selection written as {"sha256": [0, 1, 2]}. Bank order
// is not kept: banks are written and read in algorithm order.
type SelectionJSON Selection

// MarshalJSON encodes the selection as an object keyed by bank name.
func (s SelectionJSON) MarshalJSON() ([]byte, error) {
	m := make(map[string][]int, len(s))
	for _, b := range s {
		m[b.Hash.String()] = b.PCRs
	}
	return json.Marshal(m)
}

// UnmarshalJSON decodes an object keyed by bank name.
func (s *SelectionJSON) UnmarshalJSON(b []byte) error {
	var m map[string][]int
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	out := make(Selection, 0, len(m))
	for name, pcrs := range m {
		alg, err := ParseAlgorithm(name)
		if err != nil {
			return err
		}
		out = append(out, BankSelection{Hash: alg, PCRs: pcrs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	*s = SelectionJSON(out)
	return nil
}

// PCRValuesJSON is PCRValues written as {"sha256": {"0": "hex"}}.
type PCRValuesJSON PCRValues

// MarshalJSON encodes the values keyed by bank name and decimal index.
func (v PCRValuesJSON) MarshalJSON() ([]byte, error) {
	m := make(map[string]map[string]string, len(v))
	for alg, bank := range v {
		mb := make(map[string]string, len(bank))
		for i, d := range bank {
			mb[strconv.Itoa(i)] = hex.EncodeToString(d)
		}
		m[alg.String()] = mb
	}
	return json.Marshal(m)
}

// UnmarshalJSON decodes values keyed by bank name and decimal index.
func (v *PCRValuesJSON) UnmarshalJSON(b []byte) error {
	var m map[string]map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	out := make(PCRValues, len(m))
	for name, bank := range m {
		alg, err := ParseAlgorithm(name)
		if err != nil {
			return err
		}
		for idx, h := range bank {
			i, err := strconv.Atoi(idx)
			if err != nil || i < 0 || i >= MaxPCRs {
				return fmt.Errorf("invalid PCR index %.40q in bank %.40s: use 0 to %d", idx, name, MaxPCRs-1)
			}
			d, err := hex.DecodeString(h)
			if err != nil {
				return fmt.Errorf("%s PCR %d: invalid hex digest: %w", name, i, err)
			}
			SetPCR(out, alg, i, d)
		}
	}
	*v = PCRValuesJSON(out)
	return nil
}
