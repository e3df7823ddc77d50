package bundle

import (
	"bytes"
	"encoding/json"
	"testing"
)

// BenchmarkVerify compares verifying the example bundle signed with each
// key algorithm. Parsing the payload is included, so the difference is the
// signature check.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{AlgEd25519, AlgECDSAP256} {
		b.Run(alg, func(b *testing.B) {
			key := newKey(b, alg)
			env := signedExample(b, key)
			trust := trustFor(b, "example-debian-mirror", key)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Verify(env, trust, inPeriod); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse is the payload parse alone, the peer of BenchmarkVerify.
func BenchmarkParse(b *testing.B) {
	data := readExample(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStdlib decodes the same payload with encoding/json alone,
// without the strict member checks or validation: the peer that shows what
// Parse's strictness costs.
func BenchmarkDecodeStdlib(b *testing.B) {
	data := readExample(b)
	b.ReportAllocs()
	for b.Loop() {
		var bundle Bundle
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&bundle); err != nil {
			b.Fatal(err)
		}
	}
}
