package eventlog_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/vouch-attest/vouch/eventlog"
)

// Example verifies a log against PCR values and lists its Secure Boot
// state. In a verifier the PCR values come from a quote whose signature,
// nonce and attestation key were checked first.
func Example() {
	raw, err := os.ReadFile("testdata/corpus/HIRS/TpmLog.bin")
	if err != nil {
		panic(err)
	}
	pcrs, err := os.ReadFile("testdata/corpus/HIRS/TpmLog.bin.expected_pcrs.json")
	if err != nil {
		panic(err)
	}

	log, err := eventlog.Parse(raw)
	if err != nil {
		panic(err) // a *ParseError naming the event and byte offset
	}
	quoted, err := eventlog.ParseExpectedPCRs(pcrs)
	if err != nil {
		panic(err)
	}
	res, err := eventlog.Verify(log, quoted, eventlog.VerifyOptions{})
	var mismatch *eventlog.MismatchError
	switch {
	case errors.As(err, &mismatch):
		fmt.Println("not verified:", mismatch.Mismatches)
		return
	case err != nil:
		panic(err)
	}
	fmt.Println("verified banks:", res.VerifiedBanks(), "findings:", len(res.Findings))

	for _, d := range log.DecodeAll() {
		if v, ok := d.(*eventlog.EFIVariable); ok && v.Name == "SecureBoot" {
			fmt.Println("SecureBoot enabled:", v.IsSecureBootEnabled())
		}
	}
	// Output:
	// verified banks: [sha256] findings: 0
	// SecureBoot enabled: false
}
