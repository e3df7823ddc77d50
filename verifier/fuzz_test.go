package verifier

import (
	"os"
	"testing"

	"github.com/vouch-attest/vouch/attest"
)

// FuzzReplayEventLog feeds arbitrary bytes as the event log of a verified
// quote: the back end must return a Failure or events, never panic.
func FuzzReplayEventLog(f *testing.F) {
	for _, name := range []string{"rhel8-uefi.bin", "cos-85-amd-sev.bin", "ubuntu-2104-no-secure-boot.bin"} {
		raw, err := os.ReadFile("../cmd/vouch/testdata/demo/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{})
	zero := make([]byte, 32)
	vq := &attest.VerifiedQuote{Verified: attest.PCRValues{}}
	for i := 0; i < 10; i++ {
		attest.SetPCR(vq.Verified, attest.AlgSHA256, i, zero)
	}
	q := &QuoteResult{Opaque: vq}
	b := &AttestBackend{}
	f.Fuzz(func(t *testing.T, raw []byte) {
		events, err := b.ReplayEventLog(raw, q)
		if err != nil {
			if _, ok := AsFailure(err); !ok {
				t.Fatalf("operational error for log bytes: %v", err)
			}
			return
		}
		for _, e := range events {
			if e.PCR < 0 || e.PCR > 9 {
				t.Fatalf("event for PCR %d outside the quote", e.PCR)
			}
		}
	})
}
