package attest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vouch-attest/vouch/eventlog"
)

// verifyLogAgainstQuote replays an event log against the PCR values a
// verified quote covers, the way the verifier hands them over.
func verifyLogAgainstQuote(t *testing.T, raw []byte, verified PCRValues) {
	t.Helper()
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatalf("eventlog.Parse: %v", err)
	}
	res, err := eventlog.Verify(log, verified, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatalf("eventlog.Verify: %v", err)
	}
	if !res.Verified() {
		for _, b := range res.Banks {
			for _, p := range b.PCRs {
				if !p.Match {
					t.Errorf("%s PCR %d: replay %x, quoted %x", b.Bank, p.Index, p.Replayed, p.Quoted)
				}
			}
		}
		t.Fatalf("the log does not replay to the quoted PCRs")
	}
	for _, b := range res.Banks {
		if b.Status != eventlog.BankMatch {
			t.Errorf("bank %s: %s, want %s", b.Bank, b.Status, eventlog.BankMatch)
		}
	}
}

func TestGCEQuotesMatchTheirLog(t *testing.T) {
	for _, file := range []string{"gce-cos-85-no-nonce.pb", "gce-cos-85-nonce9009.pb"} {
		t.Run(file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "corpus", file))
			if err != nil {
				t.Fatal(err)
			}
			att, err := decodeGCEAttestation(b)
			if err != nil {
				t.Fatal(err)
			}
			ak := mustAK(t, att.AKPublic)
			verified := PCRValues{}
			for _, q := range att.Quotes {
				a, err := ParseAttestationData(q.Attest)
				if err != nil {
					t.Fatal(err)
				}
				var pcrs []int
				vals := PCRValues{}
				for i, d := range q.PCRs {
					pcrs = append(pcrs, i)
					SetPCR(vals, q.Hash, i, d)
				}
				vq, err := VerifyQuote(ak, Quote{Attest: q.Attest, Signature: q.Signature}, QuoteExpectations{
					Nonce: a.ExtraData, Selection: Selection{{Hash: q.Hash, PCRs: pcrs}}, PCRs: vals,
				})
				if err != nil {
					t.Fatalf("%s quote: %v", q.Hash, err)
				}
				for alg, bank := range vq.Verified {
					for i, d := range bank {
						SetPCR(verified, alg, i, d)
					}
				}
			}
			// PCR 10 holds IMA measurements, whose log is not the
			// firmware event log.
			for alg := range verified {
				delete(verified[alg], 10)
			}
			verifyLogAgainstQuote(t, att.EventLog, verified)
		})
	}
}

func TestWindowsGCPQuoteMatchesItsLog(t *testing.T) {
	ev := loadWindowsGCP(t)
	want := ev.expectations()
	want.InsecureAllowSHA1 = true
	vq, err := VerifyQuote(mustAK(t, ev.AKPublic), ev.quote(), want)
	if err != nil {
		t.Fatalf("VerifyQuote: %v", err)
	}
	verifyLogAgainstQuote(t, windowsGCPRawLog(t), vq.Verified)
}
