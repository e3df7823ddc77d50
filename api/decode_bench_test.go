package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// BenchmarkDecodeEvidence compares Decode with a plain encoding/json decode
// of an evidence body near its limit: a 7 MiB event log and 16 MiB of IMA
// entries, base64-encoded (about 31 MiB).
func BenchmarkDecodeEvidence(b *testing.B) {
	ev := Evidence{
		ChallengeID: "00112233445566778899aabbccddeeff",
		Quote:       make([]byte, 150),
		Signature:   make([]byte, 72),
		PCRs:        []PCRBank{{Alg: 11, Values: map[int][]byte{0: make([]byte, 32), 7: make([]byte, 32)}}},
		EventLog:    bytes.Repeat([]byte{0xa5}, 7<<20),
		IMA:         &IMAEvidence{Entries: bytes.Repeat([]byte{0x5a}, MaxIMAEntriesBytes)},
	}
	body, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("strict", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var out Evidence
			if err := DecodeBody(bytes.NewReader(body), int64(len(body)), MaxEvidenceBytes, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var out Evidence
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
