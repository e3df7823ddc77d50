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
	dir := filepath.Join("testdata", "ovmf-swtpm", name)
	return loadLogFiles(t, filepath.Join(dir, "eventlog.bin"), filepath.Join(dir, "pcrs.json"))
}

// loadLogFiles returns the evidence of the event log at logPath, verified
// against the PCR values in pcrsPath.
func loadLogFiles(t testing.TB, logPath, pcrsPath string) *Evidence {
	t.Helper()
	log, res := verifyLogFiles(t, logPath, pcrsPath)
	ev, err := FromVerifiedLog(log, res)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// verifyLogFiles parses the event log at logPath and verifies it against
// the PCR values in pcrsPath (JSON or tpm2_pcrread YAML), less PCR 10.
func verifyLogFiles(t testing.TB, logPath, pcrsPath string) (*eventlog.Log, *eventlog.Result) {
	t.Helper()
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	pcrData, err := os.ReadFile(pcrsPath)
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
		t.Fatalf("%s: verify: %v", logPath, err)
	}
	return log, res
}
