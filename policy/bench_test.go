package policy

import (
	"os"
	"testing"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
)

// BenchmarkCheck judges the 48 verified events of the shim-sbms boot
// against a bundle and a baseline learned from it, with every rule on.
// BenchmarkReplayVerify, eventlog.Verify on the same log, is its peer.
func BenchmarkCheck(b *testing.B) {
	ev := loadCorpus(b, "shim-sbms")
	rules, err := ParseRules([]byte(`{
		"quoted_pcrs": {"pcrs": [0, 4, 7]},
		"secure_boot": {},
		"dbx": {"sha256": ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
		"authorities": {"allowed": [{"name": "ms", "sha256": "` + msUEFICA2011 + `"}, {"name": "debian", "sha256": "` + debianCA + `"}]},
		"kernel_cmdline": {"allow": ["/vmlinuz .*"]}
	}`))
	if err != nil {
		b.Fatal(err)
	}
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(b, "golden-1", Learn(ev, osPCRs))},
		Baseline: approvedBaseline(b, ev),
		Rules:    *rules,
	}
	b.ReportAllocs()
	for b.Loop() {
		v, err := p.Check(ev)
		if err != nil || !v.Trusted {
			b.Fatalf("verdict %+v, error %v", v, err)
		}
	}
}

func BenchmarkReplayVerify(b *testing.B) {
	raw, err := os.ReadFile("testdata/ovmf-swtpm/shim-sbms/eventlog.bin")
	if err != nil {
		b.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	pcrs, err := eventlog.Replay(log)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eventlog.Verify(log, pcrs, eventlog.VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
