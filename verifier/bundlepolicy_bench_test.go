package verifier

import (
	"testing"

	"github.com/vouch-attest/vouch/policy"
)

// BenchmarkBundlePolicy compares building the evidence of the OVMF boot
// (eventlog parse and replay, done each round) with judging it against a
// bundle and approved firmware values.
func BenchmarkBundlePolicy(b *testing.B) {
	p := &BundlePolicy{Engine: bundleEngine(b, policy.Rules{SecureBoot: &policy.SecureBootRule{}}, same)}
	boot := corpusBoot(b, "shim-sbms")
	ref, err := p.Learn(boot)
	if err != nil {
		b.Fatal(err)
	}
	if ref, _, err = p.ApproveReference(ref, "alice", policyTime); err != nil {
		b.Fatal(err)
	}
	b.Run("evidence", func(b *testing.B) {
		for b.Loop() {
			if _, err := corpusBoot(b, "shim-sbms").Evidence(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("evaluate", func(b *testing.B) {
		for b.Loop() {
			out, err := p.Evaluate(ref, boot)
			if err != nil || len(out.Reasons) != 0 {
				b.Fatal(out, err)
			}
		}
	})
}
