package attest

import (
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds returns the genuine evidence of testdata as seeds.
func fuzzSeeds(f *testing.F) []*QuoteEvidence {
	f.Helper()
	var out []*QuoteEvidence
	for _, name := range []string{"sim/ecc-quote.json", "sim/rsa-quote.json", "sim/ecc-certify.json"} {
		out = append(out, loadEvidence(f, name))
	}
	out = append(out, loadWindowsGCP(f))
	for _, name := range []string{"gce-cos-85-no-nonce.pb", "gce-cos-85-nonce9009.pb"} {
		b, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
		if err != nil {
			f.Fatal(err)
		}
		att, err := decodeGCEAttestation(b)
		if err != nil {
			f.Fatal(err)
		}
		for _, q := range att.Quotes {
			out = append(out, &QuoteEvidence{AKPublic: att.AKPublic, Attest: q.Attest, Signature: q.Signature})
		}
	}
	return out
}

func FuzzParseAttestationData(f *testing.F) {
	for _, ev := range fuzzSeeds(f) {
		f.Add(ev.Attest)
	}
	ev := loadEvidence(f, "sim/ecc-quote.json")
	ak := mustAK(f, ev.AKPublic)
	want := ev.expectations()
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAttestationData(b)
		if err != nil {
			return
		}
		if a.Type == tpmSTAttestQuote && a.Quote == nil {
			t.Fatal("quote type without TPMS_QUOTE_INFO")
		}
		if len(a.ExtraData) > maxDataSize || len(a.QualifiedSigner) > maxNameSize {
			t.Fatal("TPM2B larger than its bound")
		}
		// The whole verification path must reject, never panic.
		if _, err := VerifyQuote(ak, Quote{Attest: b, Signature: ev.Signature}, want); err == nil && string(b) != string(ev.Attest) {
			t.Fatal("a modified TPMS_ATTEST verified")
		}
	})
}

func FuzzParseAKPublic(f *testing.F) {
	for _, ev := range fuzzSeeds(f) {
		f.Add(ev.AKPublic)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ak, err := ParseAKPublic(b)
		if err != nil {
			return
		}
		if ak.Key == nil || len(ak.Name) < 2 {
			t.Fatal("accepted AK without key or name")
		}
		if !ak.Public.ObjectAttributes.FixedTPM || ak.Public.ObjectAttributes.Decrypt {
			t.Fatal("accepted AK with wrong attributes")
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	for _, ev := range fuzzSeeds(f) {
		f.Add(ev.Signature)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignature(b)
		if err != nil {
			return
		}
		switch s.SigAlg {
		case sigAlgRSASSA, sigAlgRSAPSS:
			if s.R != nil || s.S != nil {
				t.Fatal("RSA signature with ECC members set")
			}
		case sigAlgECDSA:
			if s.RSA != nil {
				t.Fatal("ECDSA signature with the RSA member set")
			}
		default:
			t.Fatalf("accepted selector 0x%04x", s.SigAlg)
		}
	})
}

func FuzzParseEKCertificate(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "ekcerts", "*.pem"))
	for _, p := range paths {
		certs, err := LoadCertificates(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(certs[0].Raw)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseEKCertificate(b)
		if err != nil {
			return
		}
		if c.PublicKey == nil {
			t.Fatal("parsed certificate without a public key")
		}
	})
}
