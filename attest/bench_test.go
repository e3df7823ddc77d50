package attest

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"slices"
	"testing"
	"time"
)

// BenchmarkVerifyQuote measures the whole VerifyQuote next to the bare
// signature check of the same quote with the same key: SHA-256 of the
// TPMS_ATTEST and the ECDSA or RSA verification. The ratio of the two is
// the cost of parsing and the other checks. Both fixtures quote 9 PCRs in
// 4 banks (36 values).
func BenchmarkVerifyQuote(b *testing.B) {
	for _, tc := range []struct{ name, file string }{
		{"ECDSA-P256", "sim/ecc-quote.json"},
		{"RSA-2048", "sim/rsa-quote.json"},
	} {
		ev := loadEvidence(b, tc.file)
		ak := mustAK(b, ev.AKPublic)
		q := ev.quote()
		want := ev.expectations()
		if _, err := VerifyQuote(ak, q, want); err != nil {
			b.Fatal(err)
		}
		sig, err := ParseSignature(q.Signature)
		if err != nil {
			b.Fatal(err)
		}

		b.Run(tc.name+"/VerifyQuote", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := VerifyQuote(ak, q, want); err != nil {
					b.Fatal(err)
				}
			}
		})
		signatureOnly := func(b *testing.B) {
			digest := sha256.Sum256(q.Attest)
			switch k := ak.Key.(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig.R), new(big.Int).SetBytes(sig.S)) {
					b.Fatal("signature does not verify")
				}
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(k, HashFunc(ak.Hash), digest[:], sig.RSA); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(tc.name+"/SignatureOnly", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				signatureOnly(b)
			}
		})
		// Interleaved runs both in turn and reports the ratio of their
		// summed times, so load from other processes hits both alike. It
		// also times every call and reports the ratio of the medians,
		// which a preemption in a few calls does not move.
		b.Run(tc.name+"/Interleaved", func(b *testing.B) {
			var full, bare time.Duration
			var fulls, bares []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := VerifyQuote(ak, q, want); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				signatureOnly(b)
				t2 := time.Now()
				full += t1.Sub(t0)
				bare += t2.Sub(t1)
				fulls = append(fulls, t1.Sub(t0))
				bares = append(bares, t2.Sub(t1))
			}
			b.ReportMetric(float64(full.Nanoseconds())/float64(b.N), "verifyquote-ns/op")
			b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "signature-ns/op")
			b.ReportMetric(float64(full)/float64(bare), "ratio")
			b.ReportMetric(float64(median(fulls))/float64(median(bares)), "median-ratio")
		})
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}
