package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vouch-attest/vouch/eventlog"
)

// loadCorpus parses testdata/ovmf-swtpm/NAME's event log, verifies it
// against the PCR values the guest read from its TPM, and returns the
// evidence.
func loadCorpus(t testing.TB, name string) *Evidence {
	t.Helper()
	log, res := verifyCorpus(t, name)
	ev, err := FromVerifiedLog(log, res)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func verifyCorpus(t testing.TB, name string) (*eventlog.Log, *eventlog.Result) {
	t.Helper()
	dir := filepath.Join("testdata", "ovmf-swtpm", name)
	raw, err := os.ReadFile(filepath.Join(dir, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	pcrData, err := os.ReadFile(filepath.Join(dir, "pcrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	pcrs, err := eventlog.ParseExpectedPCRs(pcrData)
	if err != nil {
		t.Fatal(err)
	}
	// PCR 10 holds IMA measurements, which are not in the firmware log.
	for _, bank := range pcrs {
		delete(bank, 10)
	}
	res, err := eventlog.Verify(log, pcrs, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatalf("%s: verify: %v", name, err)
	}
	return log, res
}
