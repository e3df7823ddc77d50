package policy

import (
	"crypto/sha256"
	"errors"
	"os"
	"testing"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/tpm"
)

// quotedPCRs are the PCRs the simulator test extends and quotes.
var quotedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}

// quoteCorpusLog extends the events of a corpus log into the simulator's
// PCRs, as firmware would, and returns a verified quote of them.
func quoteCorpusLog(t *testing.T, log *eventlog.Log) *attest.VerifiedQuote {
	t.Helper()
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no TPM simulator (CGO_ENABLED=0)")
	}
	tp, err := tpm.Open(tpm.Config{Transport: tpm.TransportSimulator})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()

	for _, e := range log.Events {
		if e.Type == eventlog.EV_NO_ACTION {
			continue
		}
		digests := make(map[attest.Algorithm][]byte)
		for _, d := range e.Digests {
			digests[attest.Algorithm(d.Alg)] = d.Value
		}
		if err := tp.ExtendPCR(int(e.PCR), digests); err != nil {
			t.Fatalf("event %d: %v", e.Number, err)
		}
	}

	ak, err := tp.CreateAK(tpm.AKOptions{Type: tpm.ECC, Parent: tpm.ECC})
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := attest.ParseAKPublic(ak.Public)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := tp.SelectAllBanks(quotedPCRs)
	if err != nil {
		t.Fatal(err)
	}
	nonce := sha256.Sum256([]byte("policy quote test"))
	q, pcrs, err := tp.QuoteWithPCRs(ak, nonce[:], sel)
	if err != nil {
		t.Fatal(err)
	}
	vq, err := attest.VerifyQuote(akPub, *q, attest.QuoteExpectations{Nonce: nonce[:], Selection: sel, PCRs: pcrs})
	if err != nil {
		t.Fatal(err)
	}
	return vq
}

func parseCorpusLog(t *testing.T, name string) *eventlog.Log {
	t.Helper()
	raw, err := os.ReadFile("testdata/ovmf-swtpm/" + name + "/eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// TestFromQuote runs the verifier's path: a TPM quote of PCRs that a real
// boot's events were extended into, verified by attest, replayed by
// eventlog, judged by policy.
func TestFromQuote(t *testing.T) {
	log := parseCorpusLog(t, "shim-sbms")
	vq := quoteCorpusLog(t, log)

	ev, res, err := FromQuote(log, vq, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatalf("FromQuote: %v", err)
	}
	if !res.Verified() {
		t.Fatal("result not verified")
	}
	for _, p := range quotedPCRs {
		if !ev.Quoted(p) {
			t.Errorf("PCR %d not quoted", p)
		}
	}
	if ev.Quoted(15) {
		t.Error("PCR 15 quoted, want only the selected PCRs")
	}

	golden := loadCorpus(t, "shim-sbms")
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(golden, osPCRs))},
		Baseline: approvedBaseline(t, golden),
		Rules:    Rules{SecureBoot: &SecureBootRule{}, QuotedPCRs: &QuotedPCRsRule{PCRs: []int{0, 2, 4, 7}}},
	}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Trusted {
		t.Errorf("verdict not trusted: %v", v.Failures())
	}

	// The same quote with a log whose GRUB digest was swapped for another
	// boot's: replay no longer reproduces PCR 4, so there is no evidence.
	other := parseCorpusLog(t, "shim-sbms")
	for i := range other.Events {
		if other.Events[i].Number == 30 {
			for j := range other.Events[i].Digests {
				other.Events[i].Digests[j].Value[0] ^= 1
			}
		}
	}
	_, res, err = FromQuote(other, vq, eventlog.VerifyOptions{})
	var mismatch *eventlog.MismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("FromQuote with a changed log: error = %v, want a mismatch", err)
	}
	if got := mismatch.Mismatches[eventlog.SHA256]; len(got) != 1 || got[0] != 4 {
		t.Errorf("mismatched sha256 PCRs = %v, want [4]", got)
	}
	if res == nil {
		t.Error("no result returned with the mismatch")
	}
}
