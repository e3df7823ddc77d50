package attest

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestParseAKPublicAttributes(t *testing.T) {
	ev := loadEvidence(t, "sim/ecc-quote.json")
	base, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*tpm2.TPMAObject)
	}{
		{"without fixedTPM", func(a *tpm2.TPMAObject) { a.FixedTPM = false }},
		{"without fixedParent", func(a *tpm2.TPMAObject) { a.FixedParent = false }},
		{"without sensitiveDataOrigin", func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = false }},
		{"without restricted", func(a *tpm2.TPMAObject) { a.Restricted = false }},
		{"without sign", func(a *tpm2.TPMAObject) { a.SignEncrypt = false }},
		{"with decrypt", func(a *tpm2.TPMAObject) { a.Decrypt = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := *base
			tc.mutate(&pub.ObjectAttributes)
			_, err := ParseAKPublic(tpm2.Marshal(pub))
			wantReason(t, err, ReasonAKAttributes)
		})
	}
}

func TestParseAKPublicName(t *testing.T) {
	ev := loadEvidence(t, "sim/ecc-quote.json")
	ak := mustAK(t, ev.AKPublic)
	// A name is the nameAlg identifier and the SHA-256 of TPMT_PUBLIC.
	if len(ak.Name) != 34 || ak.Name[0] != 0x00 || ak.Name[1] != 0x0b {
		t.Fatalf("name %x is not a SHA-256 name", ak.Name)
	}
	if ak.SigAlg != sigAlgECDSA || ak.Hash != AlgSHA256 {
		t.Errorf("scheme %s-%s, want ECDSA-sha256", sigAlgName(ak.SigAlg), ak.Hash)
	}
}

func TestParseAKPublicEncoding(t *testing.T) {
	ev := loadEvidence(t, "sim/ecc-quote.json")
	_, err := ParseAKPublic(append(bytes.Clone(ev.AKPublic), 0))
	wantReason(t, err, ReasonMalformedPublic)
	_, err = ParseAKPublic(ev.AKPublic[:len(ev.AKPublic)-1])
	wantReason(t, err, ReasonMalformedPublic)
	_, err = ParseAKPublic(nil)
	wantReason(t, err, ReasonMalformedPublic)
}

func TestParseAKPublicRejectsSHA1Name(t *testing.T) {
	ev := loadEvidence(t, "sim/ecc-quote.json")
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	pub.NameAlg = tpm2.TPMAlgSHA1
	_, err = ParseAKPublic(tpm2.Marshal(pub))
	wantReason(t, err, ReasonAKKey)
	if _, err := ParseAKPublicAllowSHA1Name(tpm2.Marshal(pub)); err != nil {
		t.Errorf("ParseAKPublicAllowSHA1Name: %v", err)
	}
}
