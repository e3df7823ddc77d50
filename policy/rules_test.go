package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
)

// Authority certificates of the shim-sbms boot: the db entry that verified
// shim, and shim's built-in Debian CA that verified GRUB.
const (
	msUEFICA2011 = "48e99b991f57fc52f76149599bff0a58c47154229b9f8d603ac40d3500248507"
	debianCA     = "079646974bce09b1f04da67bd722d1fb0947ae4c4010bccdbba52d5b23cbf1a2"
	// emptySHA256 is the one entry of OVMF's default dbx.
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// checkRule runs one rule on a corpus boot and returns its result.
func checkRule(t *testing.T, ev *Evidence, rules Rules) (RuleResult, *Verdict) {
	t.Helper()
	p := &Policy{Rules: rules}
	p.Rules.ReferenceValues = Warn
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Rules) != 1 {
		t.Fatalf("rule results = %+v, want one", v.Rules)
	}
	return v.Rules[0], v
}

func wantRule(t *testing.T, r RuleResult, passed bool, detail string) {
	t.Helper()
	if r.Passed != passed {
		t.Errorf("rule %s passed = %v, want %v (%s)", r.Rule, r.Passed, passed, r.Detail)
	}
	if !strings.Contains(r.Detail, detail) {
		t.Errorf("rule %s detail = %q, want it to contain %q", r.Rule, r.Detail, detail)
	}
}

func TestRuleSecureBoot(t *testing.T) {
	r, v := checkRule(t, loadCorpus(t, "shim-sbms"), Rules{SecureBoot: &SecureBootRule{}})
	wantRule(t, r, true, "event 4: Secure Boot is enabled")
	if !v.Trusted {
		t.Error("verdict not trusted")
	}

	r, v = checkRule(t, loadCorpus(t, "shim-sboff"), Rules{SecureBoot: &SecureBootRule{}})
	wantRule(t, r, false, "Secure Boot is disabled")
	if v.Trusted || r.Action != Enforce {
		t.Errorf("trusted %v action %s, want untrusted by default enforce", v.Trusted, r.Action)
	}

	r, v = checkRule(t, loadCorpus(t, "shim-sboff"), Rules{SecureBoot: &SecureBootRule{Action: Warn}})
	wantRule(t, r, false, "Secure Boot is disabled")
	if !v.Trusted {
		t.Error("a warn rule made the verdict untrusted")
	}
}

// TestRuleSecureBootForgedData flips the SecureBoot value in the log's data
// without changing its digest: replay still matches, but the data no
// longer hashes to the digest, so the rule must not believe it.
func TestRuleSecureBootForgedData(t *testing.T) {
	raw, err := os.ReadFile("testdata/ovmf-swtpm/shim-sboff/eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	name := []byte{'S', 0, 'e', 0, 'c', 0, 'u', 0, 'r', 0, 'e', 0, 'B', 0, 'o', 0, 'o', 0, 't', 0}
	i := strings.Index(string(raw), string(name))
	if i < 0 || raw[i+len(name)] != 0 {
		t.Fatal("SecureBoot variable with value 0 not found")
	}
	raw[i+len(name)] = 1
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/ovmf-swtpm/shim-sboff/pcrs.json")
	if err != nil {
		t.Fatal(err)
	}
	pcrs, err := eventlog.ParseExpectedPCRs(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, bank := range pcrs {
		delete(bank, 10)
	}
	res, err := eventlog.Verify(log, pcrs, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := FromVerifiedLog(log, res)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := checkRule(t, ev, Rules{SecureBoot: &SecureBootRule{}})
	wantRule(t, r, false, "data does not match its digest")
}

func TestRuleDBX(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	r, _ := checkRule(t, ev, Rules{DBX: &DBXRule{SHA256: []bundle.Digest{mustHex(t, emptySHA256)}}})
	wantRule(t, r, true, "dbx contains all 1 required entries")

	revoked := "80b4d96931bf0d02fd91a61e19d14f1da452e66db2408ca8604d411f92659f0a"
	r, _ = checkRule(t, ev, Rules{DBX: &DBXRule{SHA256: []bundle.Digest{mustHex(t, emptySHA256), mustHex(t, revoked)}}})
	wantRule(t, r, false, "lacks 1 required entries: "+revoked)
	if len(r.Events) != 1 || r.Events[0] != 8 {
		t.Errorf("events = %v, want the dbx event 8", r.Events)
	}
}

func TestRuleAuthorities(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	both := &AuthorityRule{Allowed: []AllowedAuthority{
		{Name: "Microsoft UEFI CA 2011", SHA256: mustHex(t, msUEFICA2011)},
		{Name: "Debian Secure Boot CA", SHA256: mustHex(t, debianCA)},
	}}
	r, _ := checkRule(t, ev, Rules{Authorities: both})
	wantRule(t, r, true, "authorized by Microsoft UEFI CA 2011, Debian Secure Boot CA")

	onlyMS := &AuthorityRule{Allowed: both.Allowed[:1]}
	r, _ = checkRule(t, ev, Rules{Authorities: onlyMS})
	wantRule(t, r, false, "event 29: Debian Secure Boot CA (MokListRT, sha256 "+debianCA+") is not an allowed authority")

	r, _ = checkRule(t, loadCorpus(t, "shim-sboff"), Rules{Authorities: both})
	wantRule(t, r, false, "no EV_EFI_VARIABLE_AUTHORITY event")
}

func TestBootAuthorities(t *testing.T) {
	got := BootAuthorities(loadCorpus(t, "shim-sbms"))
	want := []struct {
		app, authority int
		name, cert     string
	}{
		{24, 22, "BOOTX64.EFI", "Microsoft Corporation UEFI CA 2011"},
		{30, 29, "grubx64.efi", "Debian Secure Boot CA"},
		{42, -1, "vmlinuz", ""},
		{43, -1, "vmlinuz", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("boot authorities = %+v", got)
	}
	for i, w := range want {
		g := got[i]
		if g.Application != w.app || g.Authority != w.authority || g.Name != w.name || g.Certificate != w.cert {
			t.Errorf("application %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestRuleKernelCmdline(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	tests := []struct {
		name   string
		rule   CmdlineRule
		passed bool
		detail string
	}{
		{"allowed", CmdlineRule{Allow: []string{`/vmlinuz console=ttyS0( panic=-1)?`}}, true, `"/vmlinuz console=ttyS0 panic=-1" is allowed`},
		{"no allow matches", CmdlineRule{Allow: []string{`/vmlinuz quiet`}}, false, "matches no allow pattern"},
		{"allow is anchored", CmdlineRule{Allow: []string{`console=ttyS0`}}, false, "matches no allow pattern"},
		{"denied", CmdlineRule{Deny: []string{`.*\bpanic=-1\b.*`}}, false, `matches deny pattern`},
		{"deny only, passes", CmdlineRule{Deny: []string{`.*\binit=.*`}}, true, "is allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := tt.rule
			r, _ := checkRule(t, ev, Rules{KernelCmdline: &rule})
			wantRule(t, r, tt.passed, tt.detail)
			if len(r.Events) != 1 || r.Events[0] != 44 {
				t.Errorf("events = %v, want the kernel_cmdline event 44", r.Events)
			}
		})
	}

	// A QEMU -kernel boot measures no command line into PCR 8.
	r, _ := checkRule(t, loadCorpus(t, "direct-sboff"), Rules{KernelCmdline: &CmdlineRule{}})
	wantRule(t, r, false, "no kernel command line was measured")
}

func TestRuleQuotedPCRs(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	r, _ := checkRule(t, ev, Rules{QuotedPCRs: &QuotedPCRsRule{PCRs: []int{0, 4, 7}}})
	wantRule(t, r, true, "quote covers PCRs [0 4 7]")
	// The test helper leaves PCR 10 (IMA) out of the quote.
	r, _ = checkRule(t, ev, Rules{QuotedPCRs: &QuotedPCRsRule{PCRs: []int{7, 10}}})
	wantRule(t, r, false, "PCR 10 not covered by the quote")
}

func TestParseRules(t *testing.T) {
	good := `{
		"reference_values": "enforce",
		"quoted_pcrs": {"pcrs": [0, 2, 4, 7]},
		"secure_boot": {"action": "warn"},
		"dbx": {"sha256": ["` + emptySHA256 + `"]},
		"authorities": {"allowed": [{"name": "Microsoft UEFI CA 2011", "sha256": "` + msUEFICA2011 + `"}]},
		"kernel_cmdline": {"allow": ["/vmlinuz .*"], "deny": [".*init=.*"]}
	}`
	r, err := ParseRules([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if r.SecureBoot.Action != Warn || len(r.KernelCmdline.Allow) != 1 {
		t.Errorf("rules = %+v", r)
	}

	bad := []struct{ name, json, want string }{
		{"unknown rule", `{"secure_boot": {}, "tpm_vendor": {}}`, `unknown field "tpm_vendor"`},
		{"bad action", `{"secure_boot": {"action": "block"}}`, `secure_boot: action "block" is invalid`},
		{"bad pattern", `{"kernel_cmdline": {"allow": ["(("]}}`, `allow pattern "(("`},
		{"short dbx hash", `{"dbx": {"sha256": ["00"]}}`, "sha256 entry 0 is 1 bytes"},
		{"pcr out of range", `{"quoted_pcrs": {"pcrs": [24]}}`, "PCR 24 is outside 0 to 23"},
		{"duplicate rule", `{"quoted_pcrs": {"pcrs": [0, 7]}, "quoted_pcrs": {"pcrs": [23]}}`, `duplicate member "quoted_pcrs"`},
		{"rule in another case", `{"Secure_Boot": {"action": "warn"}}`, `member "Secure_Boot" must be spelled "secure_boot"`},
		{"rules member in another case", `{"secure_boot": {"action": "warn", "Action": "enforce"}}`, `in another case`},
		{"empty quoted pcrs", `{"quoted_pcrs": {"pcrs": []}}`, "quoted_pcrs: pcrs is empty"},
		{"missing quoted pcrs", `{"quoted_pcrs": {"action": "warn"}}`, "quoted_pcrs: pcrs is empty"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRules([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestParseBaselineRejectsCaseVariants: a stored or reviewed baseline must
// read the same in vouch as in case-sensitive JSON tools.
func TestParseBaselineRejectsCaseVariants(t *testing.T) {
	b, err := LearnBaseline("vm1", loadCorpus(t, "shim-sbms"), nil, testTime)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseBaseline(data); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, data, want string }{
		{"wrapper in another case", `{"Baseline": ` + string(data) + `}`, `must be spelled "baseline"`},
		{"machine twice", strings.Replace(string(data), `"machine":"vm1"`, `"machine":"vm1","Machine":"vm2"`, 1), "in another case"},
	} {
		if _, err := ParseBaseline([]byte(tt.data)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

// TestRuleAuthoritiesBareCertificate checks the authorities rule on a RHEL
// 8 boot, whose shim 15 logs its vendor certificate as bare DER: the
// allowed hash is that of the whole certificate.
func TestRuleAuthoritiesBareCertificate(t *testing.T) {
	const redHatCA5 = "40175d4c7c5ab4bd753a493f47952f1d8dcf1c219b836968a693e48bd4766135"
	dir := filepath.Join("..", "eventlog", "testdata", "corpus", "go-eventlog")
	ev := loadLogFiles(t, filepath.Join(dir, "rhel8-uefi.bin"), filepath.Join(dir, "rhel8-uefi.bin.expected_pcrs.json"))

	rule := &AuthorityRule{Allowed: []AllowedAuthority{
		{Name: "Microsoft UEFI CA 2011", SHA256: mustHex(t, msUEFICA2011)},
		{Name: "Red Hat Secure Boot CA 5", SHA256: mustHex(t, redHatCA5)},
	}}
	r, _ := checkRule(t, ev, Rules{Authorities: rule})
	wantRule(t, r, true, "authorized by Microsoft UEFI CA 2011, Red Hat Secure Boot CA 5")
}
