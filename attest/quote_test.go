package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestVerifyQuoteGenuine(t *testing.T) {
	for _, name := range []string{"sim/ecc-quote.json", "sim/rsa-quote.json", "sim/other-ecc-quote.json"} {
		t.Run(name, func(t *testing.T) {
			ev := loadEvidence(t, name)
			ak := mustAK(t, ev.AKPublic)
			want := ev.expectations()
			// An unquoted PCR travels with the quote: it must come back
			// unverified.
			want.PCRs = clonePCRs(want.PCRs)
			SetPCR(want.PCRs, AlgSHA256, 23, make([]byte, 32))
			vq, err := VerifyQuote(ak, ev.quote(), want)
			if err != nil {
				t.Fatalf("VerifyQuote: %v", err)
			}
			for _, b := range Selection(ev.Selection) {
				for _, i := range b.PCRs {
					got, ok := GetPCR(vq.Verified, b.Hash, i)
					if !ok {
						t.Errorf("%s PCR %d is not marked verified", b.Hash, i)
						continue
					}
					if w, _ := GetPCR(want.PCRs, b.Hash, i); !bytes.Equal(got, w) {
						t.Errorf("%s PCR %d: verified value differs from the reported one", b.Hash, i)
					}
				}
			}
			if _, ok := GetPCR(vq.Verified, AlgSHA256, 23); ok {
				t.Error("sha256 PCR 23 is outside the quote but marked verified")
			}
			if _, ok := GetPCR(vq.Unverified, AlgSHA256, 23); !ok {
				t.Error("sha256 PCR 23 is missing from Unverified")
			}
			for _, p := range vq.PCRs() {
				if p.Hash == AlgSHA256 && p.Index == 23 && p.Verified {
					t.Error("PCRs() marks sha256 PCR 23 verified")
				}
			}
			if vq.Clock.Clock == 0 && vq.Clock.ResetCount == 0 && !vq.Clock.Safe {
				t.Errorf("clock info looks empty: %+v", vq.Clock)
			}
		})
	}
}

// TestVerifyQuoteUnverifiedSplit covers the shapes of reported values
// beside the quoted ones: exactly the quoted PCRs, an extra empty bank, an
// extra bank with a value and an extra PCR in a quoted bank.
func TestVerifyQuoteUnverifiedSplit(t *testing.T) {
	ev := loadEvidence(t, "sim/rsa-quote.json")
	ak := mustAK(t, ev.AKPublic)
	for _, tc := range []struct {
		name  string
		add   func(PCRValues)
		extra []PCR
	}{
		{"exact", func(PCRValues) {}, nil},
		{"empty extra bank", func(v PCRValues) { v[AlgSM3] = map[int][]byte{} }, nil},
		{"extra bank", func(v PCRValues) { SetPCR(v, AlgSM3, 3, make([]byte, 32)) }, []PCR{{Hash: AlgSM3, Index: 3}}},
		{"extra PCR", func(v PCRValues) { SetPCR(v, AlgSHA1, 9, make([]byte, 20)) }, []PCR{{Hash: AlgSHA1, Index: 9}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := ev.expectations()
			want.PCRs = clonePCRs(want.PCRs)
			tc.add(want.PCRs)
			vq, err := VerifyQuote(ak, ev.quote(), want)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, b := range Selection(ev.Selection) {
				n += len(b.PCRs)
			}
			verified := 0
			for _, bank := range vq.Verified {
				verified += len(bank)
			}
			if verified != n {
				t.Errorf("%d verified values, want the %d quoted", verified, n)
			}
			if len(tc.extra) == 0 {
				if vq.Unverified != nil {
					t.Errorf("Unverified is %v, want nil", vq.Unverified)
				}
				return
			}
			var got []PCR
			for alg, bank := range vq.Unverified {
				for i := range bank {
					got = append(got, PCR{Hash: alg, Index: i})
				}
			}
			if len(got) != len(tc.extra) || got[0].Hash != tc.extra[0].Hash || got[0].Index != tc.extra[0].Index {
				t.Errorf("Unverified holds %v, want %v", got, tc.extra)
			}
		})
	}
}

// Each numbered check of VerifyQuote has a failing case built from a
// genuine simulator quote.
func TestVerifyQuoteChecks(t *testing.T) {
	ecc := loadEvidence(t, "sim/ecc-quote.json")
	rsaEv := loadEvidence(t, "sim/rsa-quote.json")
	other := loadEvidence(t, "sim/other-ecc-quote.json")
	certify := loadEvidence(t, "sim/ecc-certify.json")
	eccAK := mustAK(t, ecc.AKPublic)
	rsaAK := mustAK(t, rsaEv.AKPublic)

	tests := []struct {
		name   string
		ak     *AKPublic
		quote  func() Quote
		want   func() QuoteExpectations
		reason Reason
	}{
		{
			name:   "1 truncated attest",
			ak:     eccAK,
			quote:  func() Quote { q := ecc.quote(); q.Attest = q.Attest[:len(q.Attest)-1]; return q },
			want:   ecc.expectations,
			reason: ReasonMalformedAttest,
		},
		{
			name:   "1 trailing byte after attest",
			ak:     eccAK,
			quote:  func() Quote { q := ecc.quote(); q.Attest = append(bytes.Clone(q.Attest), 0); return q },
			want:   ecc.expectations,
			reason: ReasonMalformedAttest,
		},
		{
			name: "2 bad magic",
			ak:   eccAK,
			quote: func() Quote {
				q := ecc.quote()
				q.Attest = bytes.Clone(q.Attest)
				q.Attest[0] ^= 0x01
				return q
			},
			want:   ecc.expectations,
			reason: ReasonBadMagic,
		},
		{
			name:   "3 certify structure presented as a quote",
			ak:     eccAK,
			quote:  certify.quote,
			want:   ecc.expectations,
			reason: ReasonNotQuote,
		},
		{
			name:  "4 nonce with an extra byte",
			ak:    eccAK,
			quote: ecc.quote,
			want: func() QuoteExpectations {
				w := ecc.expectations()
				w.Nonce = append(bytes.Clone(w.Nonce), 0)
				return w
			},
			reason: ReasonNonceMismatch,
		},
		{
			name:  "4 nonce truncated",
			ak:    eccAK,
			quote: ecc.quote,
			want: func() QuoteExpectations {
				w := ecc.expectations()
				w.Nonce = w.Nonce[:len(w.Nonce)-1]
				return w
			},
			reason: ReasonNonceMismatch,
		},
		{
			name:  "5 selection narrower than asked",
			ak:    eccAK,
			quote: ecc.quote,
			want: func() QuoteExpectations {
				w := ecc.expectations()
				sel := make(Selection, len(w.Selection))
				for i, b := range w.Selection {
					sel[i] = BankSelection{Hash: b.Hash, PCRs: append(append([]int{}, b.PCRs...), 23)}
				}
				w.Selection = sel
				return w
			},
			reason: ReasonSelectionMismatch,
		},
		{
			name:  "5 bank not asked for",
			ak:    eccAK,
			quote: ecc.quote,
			want: func() QuoteExpectations {
				w := ecc.expectations()
				w.Selection = w.Selection[1:]
				return w
			},
			reason: ReasonSelectionMismatch,
		},
		{
			name:  "6 selected PCR not reported",
			ak:    eccAK,
			quote: ecc.quote,
			want: func() QuoteExpectations {
				w := ecc.expectations()
				w.PCRs = clonePCRs(w.PCRs)
				delete(w.PCRs[AlgSHA256], 7)
				return w
			},
			reason: ReasonMissingPCR,
		},
		{
			name:   "7 wrong union member",
			ak:     rsaAK,
			quote:  func() Quote { q := rsaEv.quote(); q.Signature = resignAs(t, q.Signature, sigAlgRSAPSS); return q },
			want:   rsaEv.expectations,
			reason: ReasonSignatureScheme,
		},
		{
			name:   "7 ECDSA signature for an RSA key",
			ak:     rsaAK,
			quote:  func() Quote { q := rsaEv.quote(); q.Signature = ecc.Signature; return q },
			want:   rsaEv.expectations,
			reason: ReasonSignatureScheme,
		},
		{
			name:   "7 signature with an unsupported selector",
			ak:     eccAK,
			quote:  func() Quote { q := ecc.quote(); q.Signature = resignAs(t, q.Signature, sigAlgECDAA); return q },
			want:   ecc.expectations,
			reason: ReasonMalformedSignature,
		},
		{
			name:  "8 PCR value changed",
			ak:    eccAK,
			quote: ecc.quote,
			want: func() QuoteExpectations {
				w := ecc.expectations()
				w.PCRs = clonePCRs(w.PCRs)
				w.PCRs[AlgSHA256][0][0] ^= 0x80
				return w
			},
			reason: ReasonPCRDigestMismatch,
		},
		{
			name:   "9 signature from another AK",
			ak:     eccAK,
			quote:  func() Quote { q := ecc.quote(); q.Signature = other.Signature; return q },
			want:   ecc.expectations,
			reason: ReasonBadSignature,
		},
		{
			name:   "9 quote of another AK",
			ak:     eccAK,
			quote:  other.quote,
			want:   other.expectations,
			reason: ReasonBadSignature,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyQuote(tc.ak, tc.quote(), tc.want())
			wantReason(t, err, tc.reason)
		})
	}
}

// resignAs rewrites the selector of a TPMT_SIGNATURE, keeping the rest, so
// a correctly encoded signature carries another union member.
func resignAs(t *testing.T, sig []byte, alg uint16) []byte {
	t.Helper()
	out := bytes.Clone(sig)
	binary.BigEndian.PutUint16(out, alg)
	return out
}

// softwareAK is an attestation key held in software, so tests can sign
// structures a TPM would never sign and show that each check holds on its
// own (the signature is valid, the check still fails).
type softwareAK struct {
	key *ecdsa.PrivateKey
	pub *AKPublic
}

func newSoftwareAK(t *testing.T) *softwareAK {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: point[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: point[33:]},
		}),
	}
	return &softwareAK{key: key, pub: mustAK(t, tpm2.Marshal(pub))}
}

func (s *softwareAK) sign(t *testing.T, attest []byte) []byte {
	t.Helper()
	digest := crypto.SHA256.New()
	digest.Write(attest)
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, digest.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: sv.FillBytes(make([]byte, 32))},
		}),
	})
}

// With a valid signature over the mutated bytes, the structural checks
// still reject them.
func TestVerifyQuoteChecksSignedInSoftware(t *testing.T) {
	ecc := loadEvidence(t, "sim/ecc-quote.json")
	certify := loadEvidence(t, "sim/ecc-certify.json")
	ak := newSoftwareAK(t)

	// The unmodified structure, re-signed, verifies: the software AK is a
	// faithful stand-in.
	if _, err := VerifyQuote(ak.pub, Quote{Attest: ecc.Attest, Signature: ak.sign(t, ecc.Attest)}, ecc.expectations()); err != nil {
		t.Fatalf("re-signed genuine quote: %v", err)
	}

	badMagic := bytes.Clone(ecc.Attest)
	badMagic[3] = 0x00
	_, err := VerifyQuote(ak.pub, Quote{Attest: badMagic, Signature: ak.sign(t, badMagic)}, ecc.expectations())
	wantReason(t, err, ReasonBadMagic)

	_, err = VerifyQuote(ak.pub, Quote{Attest: certify.Attest, Signature: ak.sign(t, certify.Attest)}, ecc.expectations())
	wantReason(t, err, ReasonNotQuote)

	// A quote type field on certify data does not parse as TPMS_QUOTE_INFO.
	forged := bytes.Clone(certify.Attest)
	binary.BigEndian.PutUint16(forged[4:], tpmSTAttestQuote)
	_, err = VerifyQuote(ak.pub, Quote{Attest: forged, Signature: ak.sign(t, forged)}, ecc.expectations())
	wantReason(t, err, ReasonMalformedAttest)
}

func TestVerifyQuoteSHA1NeedsOptIn(t *testing.T) {
	ev := loadWindowsGCP(t)
	ak, err := ParseAKPublic(ev.AKPublic)
	if err != nil {
		t.Fatalf("ParseAKPublic: %v", err)
	}
	_, err = VerifyQuote(ak, ev.quote(), ev.expectations())
	wantReason(t, err, ReasonWeakHash)
}

func TestVerifyQuoteOperationalErrors(t *testing.T) {
	ecc := loadEvidence(t, "sim/ecc-quote.json")
	if _, err := VerifyQuote(nil, ecc.quote(), ecc.expectations()); err == nil {
		t.Error("VerifyQuote with no AK succeeded")
	}
	w := ecc.expectations()
	w.Selection = nil
	_, err := VerifyQuote(mustAK(t, ecc.AKPublic), ecc.quote(), w)
	if err == nil {
		t.Fatal("VerifyQuote with an empty selection succeeded")
	}
	if _, ok := err.(*VerificationError); ok {
		t.Errorf("empty selection is a caller error, got a VerificationError: %v", err)
	}
}

func TestCheckClock(t *testing.T) {
	prev := ClockInfo{Clock: 1000, ResetCount: 5, RestartCount: 2, Safe: true}
	for _, tc := range []struct {
		name string
		cur  ClockInfo
		ok   bool
	}{
		{"later clock", ClockInfo{Clock: 2000, ResetCount: 5, RestartCount: 2}, true},
		{"reboot", ClockInfo{Clock: 10, ResetCount: 6}, true},
		{"restart", ClockInfo{Clock: 10, ResetCount: 5, RestartCount: 3}, true},
		{"clock backwards", ClockInfo{Clock: 999, ResetCount: 5, RestartCount: 2}, false},
		{"reset count backwards", ClockInfo{Clock: 5000, ResetCount: 4}, false},
		{"restart count backwards", ClockInfo{Clock: 5000, ResetCount: 5, RestartCount: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckClock(prev, tc.cur)
			if tc.ok && err != nil {
				t.Fatalf("CheckClock: %v", err)
			}
			if !tc.ok {
				wantReason(t, err, ReasonClockRollback)
			}
		})
	}
}

// An RSA AK with an RSAPSS scheme, held in software: the simulator
// fixtures cover RSASSA and ECDSA, this covers the RSAPSS member.
func TestVerifyQuoteRSAPSS(t *testing.T) {
	ecc := loadEvidence(t, "sim/ecc-quote.json")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSAPSS,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.Bytes()}),
	}
	ak := mustAK(t, tpm2.Marshal(pub))
	digest := sha256.Sum256(ecc.Attest)
	// A TPM uses a salt as long as the digest.
	sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		t.Fatal(err)
	}
	encode := func(alg tpm2.TPMAlgID) []byte {
		return tpm2.Marshal(tpm2.TPMTSignature{
			SigAlg:    alg,
			Signature: tpm2.NewTPMUSignature(alg, &tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}}),
		})
	}
	if _, err := VerifyQuote(ak, Quote{Attest: ecc.Attest, Signature: encode(tpm2.TPMAlgRSAPSS)}, ecc.expectations()); err != nil {
		t.Fatalf("RSAPSS quote: %v", err)
	}
	// The same bytes presented as the RSASSA member do not fit the key's
	// scheme.
	_, err = VerifyQuote(ak, Quote{Attest: ecc.Attest, Signature: encode(tpm2.TPMAlgRSASSA)}, ecc.expectations())
	wantReason(t, err, ReasonSignatureScheme)
}
