package tpm

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/attest"
)

var updateFixtures = flag.Bool("update-fixtures", false, "regenerate the simulator quotes in ../attest/testdata/sim")

// TestGenerateAttestFixtures writes genuine simulator evidence that the
// attest package's tests mutate (attest must not import this package, so
// it reads files). Run: go test ./tpm -run GenerateAttestFixtures -update-fixtures
func TestGenerateAttestFixtures(t *testing.T) {
	if !*updateFixtures {
		t.Skip("run with -update-fixtures to regenerate ../attest/testdata/sim")
	}
	tp := openTestSimulator(t)
	dir := filepath.Join("..", "attest", "testdata", "sim")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nonce := sha256.Sum256([]byte("vouch fixture nonce"))

	// Put non-initial values into a few PCRs of every bank.
	banks, err := tp.ActiveBanks()
	if err != nil {
		t.Fatal(err)
	}
	for _, pcr := range []int{0, 7, 16} {
		digests := map[attest.Algorithm][]byte{}
		for _, b := range banks {
			h := attest.HashFunc(b.Hash).New()
			h.Write([]byte{byte(pcr)})
			digests[b.Hash] = h.Sum(nil)
		}
		if err := tp.ExtendPCR(pcr, digests); err != nil {
			t.Fatal(err)
		}
	}
	sel, err := tp.SelectAllBanks([]int{0, 1, 2, 3, 4, 5, 6, 7, 16})
	if err != nil {
		t.Fatal(err)
	}

	write := func(name string, ev *attest.QuoteEvidence) {
		b, err := json.MarshalIndent(ev, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	quote := func(ak *AK) *attest.QuoteEvidence {
		q, pcrs, err := tp.QuoteWithPCRs(ak, nonce[:], sel)
		if err != nil {
			t.Fatal(err)
		}
		return &attest.QuoteEvidence{AKPublic: ak.Public, Nonce: nonce[:], Selection: attest.SelectionJSON(sel), Attest: q.Attest, Signature: q.Signature, PCRs: attest.PCRValuesJSON(pcrs)}
	}

	for _, tc := range []struct {
		name string
		opts AKOptions
	}{
		{"ecc-quote.json", AKOptions{Type: ECC, Parent: ECC}},
		{"rsa-quote.json", AKOptions{Type: RSA, Parent: ECC}},
		{"other-ecc-quote.json", AKOptions{Type: ECC, Parent: ECC}},
	} {
		ak, err := tp.CreateAK(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		ev := quote(ak)
		write(tc.name, ev)

		if tc.name != "ecc-quote.json" {
			continue
		}
		// A TPM2_Certify of the AK by itself: a genuine TPMS_ATTEST of
		// type TPM_ST_ATTEST_CERTIFY, signed by the AK, carrying the nonce.
		if err := tp.lock(); err != nil {
			t.Fatal(err)
		}
		h, err := tp.loadAK(ak)
		if err != nil {
			tp.unlock()
			t.Fatal(err)
		}
		auth := tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)}
		rsp, err := tpm2.Certify{ObjectHandle: auth, SignHandle: auth, QualifyingData: tpm2.TPM2BData{Buffer: nonce[:]}, InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}}.Execute(tp.t)
		var ferr error
		tp.flush(h.Handle, &ferr)
		tp.unlock()
		if err != nil || ferr != nil {
			t.Fatal(err, ferr)
		}
		ev.Attest = rsp.CertifyInfo.Bytes()
		ev.Signature = tpm2.Marshal(rsp.Signature)
		write("ecc-certify.json", ev)
	}
}
