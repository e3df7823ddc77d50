package verifier

import (
	"encoding/json"
	"testing"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/ima"
)

// BenchmarkVerifyIMAIncrement verifies the last 1,000 entries of a real
// 5,071-entry list (h12ssl) after the first 4,071: the verifier's work per
// round when 1,000 files were measured since the last one. The peers are
// package ima's parse and Verify alone, and the same round with an
// allowlist of every file digest of the list.
func BenchmarkVerifyIMAIncrement(b *testing.B) {
	m := loadIMAMachine(b, "h12ssl")
	const done, total = 4071, 5071
	q := m.quote(b, total, 1)
	first, err := (&AttestBackend{}).VerifyIMA(nil, 0, encodeEntries(m.entries[:done]), m.quote(b, done, 1))
	if err != nil || len(first.Failures) != 0 {
		b.Fatalf("first round: %+v, %v", first, err)
	}
	chunk := encodeEntries(m.entries[done:total])
	allow := ima.NewAllowlist()
	for i := range m.entries {
		if f, err := m.entries[i].Fields(); err == nil {
			allow.Add(f.DigestAlgorithm, f.Digest, string(f.Name))
		}
	}
	policy := &ima.Policy{Rules: []ima.Rule{{Name: "allowlist", Allowlist: allow}}, Violations: ima.Warn}
	b.SetBytes(int64(len(chunk)))

	b.Run("Backend", func(b *testing.B) {
		be := &AttestBackend{}
		for b.Loop() {
			res, err := be.VerifyIMA(first.State, done, chunk, q)
			if err != nil || res.Verified != total-done {
				b.Fatalf("%+v, %v", res, err)
			}
		}
	})
	b.Run("BackendAllowlist", func(b *testing.B) {
		be := &AttestBackend{IMA: IMAOptions{Policy: policy}}
		for b.Loop() {
			res, err := be.VerifyIMA(first.State, done, chunk, q)
			if err != nil || len(res.Failures) != 0 || res.Report.Accepted != total-done-res.Report.Excluded-len(res.Report.Warnings) {
				b.Fatalf("%+v, %v", res.Report, err)
			}
		}
	})
	b.Run("PeerParseAndVerify", func(b *testing.B) {
		var rec imaRecord
		if err := json.Unmarshal(first.State, &rec); err != nil {
			b.Fatal(err)
		}
		quoted := q.Opaque.(*attest.VerifiedQuote).Verified
		for b.Loop() {
			list, err := ima.ParseBinary(chunk, ima.ParseOptions{FirstIndex: done})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ima.Verify(&rec.State, ima.Round{ResetCount: 1, Offset: done, Entries: list, Quoted: quoted}, ima.VerifyOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
