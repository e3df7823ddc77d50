package attest

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseQuoteEvidence(t *testing.T) {
	good := &QuoteEvidence{
		AKPublic: []byte{1}, Nonce: HexBytes{2}, Attest: []byte{3}, Signature: []byte{4},
		Selection: SelectionJSON{{Hash: AlgSHA256, PCRs: []int{0, 7}}},
		PCRs:      PCRValuesJSON{AlgSHA256: {0: make([]byte, 32), 7: make([]byte, 32)}},
	}
	data, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	qe, err := ParseQuoteEvidence(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(qe.Selection) != 1 || len(qe.PCRs[AlgSHA256]) != 2 {
		t.Errorf("parsed %+v", qe)
	}

	doc := string(data)
	for _, tt := range []struct{ name, in, want string }{
		{"attest twice in another case", strings.Replace(doc, `"attest":`, `"Attest":"AA==","attest":`, 1), "in another case"},
		{"selection bank twice", strings.Replace(doc, `"selection":{`, `"selection":{"SHA256":[23],`, 1), "in another case"},
		{"pcrs twice", strings.Replace(doc, `"pcrs":`, `"pcrs":{},"pcrs":`, 1), `duplicate member "pcrs"`},
		{"member in another case", strings.Replace(doc, `"signature"`, `"Signature"`, 1), `must be spelled "signature"`},
		{"unknown member", `{"ak":{"public":"AA=="}}`, `unknown field "ak"`},
		{"null", `null`, "attest or signature is missing"},
		{"too large", `{"x":"` + strings.Repeat("a", MaxQuoteFileSize) + `"}`, "more than the limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseQuoteEvidence([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzParseQuoteEvidence(f *testing.F) {
	good, err := json.Marshal(&QuoteEvidence{
		AKPublic: []byte{1}, Nonce: HexBytes{2}, Attest: []byte{3}, Signature: []byte{4},
		Selection: SelectionJSON{{Hash: AlgSHA256, PCRs: []int{0, 7}}},
		PCRs:      PCRValuesJSON{AlgSHA256: {0: make([]byte, 32)}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"attest":"AA==","Attest":"AA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		qe, err := ParseQuoteEvidence(data)
		if err == nil && (len(qe.Attest) == 0 || len(qe.Signature) == 0) {
			t.Fatal("accepted a quote file without a quote")
		}
	})
}
