package attest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// gceAttestation holds the fields of a go-tpm-tools attest.Attestation
// protobuf that quote verification needs: the AK's TPMT_PUBLIC and one
// quote per PCR bank.
type gceAttestation struct {
	AKPublic []byte
	Quotes   []gceQuote
	EventLog []byte
}

type gceQuote struct {
	Attest, Signature []byte
	Hash              Algorithm
	PCRs              map[int][]byte
}

// decodeGCEAttestation decodes the protobuf wire format by field number
// (proto/attest.proto and proto/tpm.proto of go-tpm-tools): Attestation
// {1: ak_pub, 2: repeated Quote}, Quote {1: quote, 2: raw_sig, 3: PCRs},
// PCRs {1: hash, 2: map<uint32, bytes> pcrs}.
func decodeGCEAttestation(b []byte) (*gceAttestation, error) {
	out := &gceAttestation{}
	err := eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			out.AKPublic = v
		case 3:
			out.EventLog = v
		case 2:
			q := gceQuote{PCRs: map[int][]byte{}}
			err := eachField(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					q.Attest = v
				case 2:
					q.Signature = v
				case 3:
					return eachField(v, func(num protowire.Number, v []byte) error {
						switch num {
						case 1:
							n, _ := protowire.ConsumeVarint(v)
							q.Hash = Algorithm(n)
						case 2:
							var idx int
							var digest []byte
							err := eachField(v, func(num protowire.Number, v []byte) error {
								if num == 1 {
									n, _ := protowire.ConsumeVarint(v)
									idx = int(n)
								} else {
									digest = v
								}
								return nil
							})
							q.PCRs[idx] = digest
							return err
						}
						return nil
					})
				}
				return nil
			})
			if err != nil {
				return err
			}
			out.Quotes = append(out.Quotes, q)
		}
		return nil
	})
	return out, err
}

// eachField calls fn with each field's number and raw value (the bytes of
// a length-delimited field, the varint bytes of a varint field).
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			val, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			v, n = val, m
		case protowire.VarintType:
			_, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			v, n = b[:m], m
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			n = m
		}
		if err := fn(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// TestVerifyQuoteGCE verifies the real GCE vTPM quotes (one per bank) of
// the go-tpm-tools attestations.
func TestVerifyQuoteGCE(t *testing.T) {
	for _, tc := range []struct {
		file  string
		nonce []byte
	}{
		{"gce-cos-85-no-nonce.pb", nil},
		{"gce-cos-85-nonce9009.pb", []byte{0x90, 0x09}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "corpus", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			att, err := decodeGCEAttestation(b)
			if err != nil {
				t.Fatalf("decoding: %v", err)
			}
			ak := mustAK(t, att.AKPublic)
			if len(att.Quotes) != 3 {
				t.Fatalf("%d quotes, want 3 (sha1, sha256, sha384)", len(att.Quotes))
			}
			for _, q := range att.Quotes {
				var pcrs []int
				vals := PCRValues{}
				for i, d := range q.PCRs {
					pcrs = append(pcrs, i)
					SetPCR(vals, q.Hash, i, d)
				}
				vq, err := VerifyQuote(ak, Quote{Attest: q.Attest, Signature: q.Signature}, QuoteExpectations{
					Nonce:     tc.nonce,
					Selection: Selection{{Hash: q.Hash, PCRs: pcrs}},
					PCRs:      vals,
				})
				if err != nil {
					t.Fatalf("%s quote: %v", q.Hash, err)
				}
				if got := len(vq.Verified[q.Hash]); got != 24 {
					t.Errorf("%s quote: %d verified PCRs, want 24", q.Hash, got)
				}
				// The same quote with the other file's nonce fails.
				_, err = VerifyQuote(ak, Quote{Attest: q.Attest, Signature: q.Signature}, QuoteExpectations{
					Nonce:     []byte{0x90, 0x08},
					Selection: Selection{{Hash: q.Hash, PCRs: pcrs}},
					PCRs:      vals,
				})
				wantReason(t, err, ReasonNonceMismatch)
			}
		})
	}
}

// windowsEvidence reads go-attestation's windows_gcp_shielded_vm.json: a
// GCE Shielded VM quote of the SHA-1 bank signed RSASSA-SHA1.
func loadWindowsGCP(t testing.TB) *QuoteEvidence {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "corpus", "windows_gcp_shielded_vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		AK struct {
			Public []byte
		}
		Quote struct {
			Nonce     []byte
			Quote     []byte
			Signature []byte
		}
		Log struct {
			Raw  []byte
			PCRs []struct {
				Index     int
				Digest    []byte
				DigestAlg int
			}
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	ev := &QuoteEvidence{AKPublic: doc.AK.Public, Nonce: doc.Quote.Nonce, Attest: doc.Quote.Quote, Signature: doc.Quote.Signature}
	pcrs := PCRValues{}
	var idx []int
	for _, p := range doc.Log.PCRs {
		// DigestAlg is a Go crypto.Hash: 3 is SHA-1.
		if p.DigestAlg != 3 {
			t.Fatalf("PCR %d has digest algorithm %d, want 3 (SHA-1)", p.Index, p.DigestAlg)
		}
		SetPCR(pcrs, AlgSHA1, p.Index, p.Digest)
		idx = append(idx, p.Index)
	}
	ev.PCRs = PCRValuesJSON(pcrs)
	ev.Selection = SelectionJSON{{Hash: AlgSHA1, PCRs: idx}}
	return ev
}

// windowsGCPRawLog returns the event log of windows_gcp_shielded_vm.json.
func windowsGCPRawLog(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "corpus", "windows_gcp_shielded_vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Log struct{ Raw []byte } }
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Log.Raw
}

func TestVerifyQuoteWindowsGCP(t *testing.T) {
	ev := loadWindowsGCP(t)
	ak := mustAK(t, ev.AKPublic)
	want := ev.expectations()
	want.InsecureAllowSHA1 = true
	vq, err := VerifyQuote(ak, ev.quote(), want)
	if err != nil {
		t.Fatalf("VerifyQuote: %v", err)
	}
	if got := len(vq.Verified[AlgSHA1]); got != 24 {
		t.Errorf("%d verified SHA-1 PCRs, want 24", got)
	}
}

// TestCorpusQuotes walks the shared corpus (VOUCH_CORPUS) and verifies
// every go-tpm-tools attestation in it, so new files are picked up.
func TestCorpusQuotes(t *testing.T) {
	dir := os.Getenv("VOUCH_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "corpus")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "go-tpm-tools", "*.pb"))
	if len(files) == 0 {
		t.Skipf("no corpus at %s: set VOUCH_CORPUS to the corpus folder", dir)
	}
	verified := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		att, err := decodeGCEAttestation(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		ak := mustAK(t, att.AKPublic)
		for _, q := range att.Quotes {
			a, err := ParseAttestationData(q.Attest)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			var pcrs []int
			vals := PCRValues{}
			for i, d := range q.PCRs {
				pcrs = append(pcrs, i)
				SetPCR(vals, q.Hash, i, d)
			}
			// The nonce is whatever the quote carries: this test checks
			// signatures and PCR digests, the nonce check has its own.
			_, err = VerifyQuote(ak, Quote{Attest: q.Attest, Signature: q.Signature}, QuoteExpectations{
				Nonce: a.ExtraData, Selection: Selection{{Hash: q.Hash, PCRs: pcrs}}, PCRs: vals,
			})
			if err != nil {
				t.Errorf("%s %s quote: %v", filepath.Base(f), q.Hash, err)
				continue
			}
			verified++
		}
	}
	t.Logf("verified %d quotes in %d corpus files", verified, len(files))
}

func ExampleReason() {
	fmt.Println(ReasonNonceMismatch)
	// Output: nonce_mismatch
}
