package policy

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
)

// FuzzCheck judges arbitrary logs that replay to their own PCR values, with
// every rule on, so that the decoded data an attacker controls reaches
// every rule and the verdict's explanations.
func FuzzCheck(f *testing.F) {
	for _, name := range []string{"shim-sbms", "shim-sboff", "direct-sboff"} {
		raw, err := os.ReadFile("testdata/ovmf-swtpm/" + name + "/eventlog.bin")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	golden := loadCorpus(f, "shim-sbms")
	rules, err := ParseRules([]byte(`{
		"quoted_pcrs": {"pcrs": [0, 4, 7]},
		"secure_boot": {},
		"dbx": {"sha256": ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
		"authorities": {"allowed": [{"name": "ms", "sha256": "` + msUEFICA2011 + `"}]},
		"kernel_cmdline": {"allow": ["/vmlinuz .*"], "deny": [".*init=.*"]}
	}`))
	if err != nil {
		f.Fatal(err)
	}
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(f, "golden-1", Learn(golden, osPCRs))},
		Baseline: approvedBaseline(f, golden),
		Rules:    *rules,
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		log, err := eventlog.Parse(raw)
		if err != nil {
			return
		}
		pcrs, err := eventlog.Replay(log)
		if err != nil {
			return
		}
		res, err := eventlog.Verify(log, pcrs, eventlog.VerifyOptions{})
		if err != nil {
			return
		}
		ev, err := FromVerifiedLog(log, res)
		if err != nil {
			return
		}
		v, err := p.Check(ev)
		if err != nil {
			t.Fatalf("Check failed on verified evidence: %v", err)
		}
		for i := range v.Unmatched {
			_ = v.Unmatched[i].String()
		}
		// Whatever a log names its events, learned components must make
		// a valid bundle.
		all := make([]int, 24)
		for i := range all {
			all[i] = i
		}
		for _, c := range Learn(ev, all) {
			if err := c.Validate(); err != nil {
				t.Fatalf("learned component is invalid: %v", err)
			}
		}
		if _, err := LearnBaseline("m", ev, nil, testTime); err != nil && len(ev.Events()) > 0 {
			for _, e := range ev.Events() {
				for _, fw := range FirmwarePCRs {
					if e.PCR == fw {
						t.Fatalf("LearnBaseline failed with firmware events present: %v", err)
					}
				}
			}
		}
	})
}

func FuzzParseBaseline(f *testing.F) {
	golden := loadCorpus(f, "shim-sbms")
	b, err := LearnBaseline("vm1", golden, nil, testTime)
	if err != nil {
		f.Fatal(err)
	}
	data, err := json.Marshal(Learned{Baseline: b})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"machine":"m","components":[{"name":"x","kind":"other","values":[{"pcr":0,"digests":{"sha1":"00"}}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBaseline(data)
		if err != nil {
			return
		}
		if b.Machine == "" || len(b.Components) == 0 {
			t.Fatalf("ParseBaseline accepted an incomplete baseline: %+v", b)
		}
	})
}
