package policy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
)

var testTime = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// osPCRs are the PCRs a distribution bundle covers in the corpus boots:
// Learn leaves out what the firmware logged in them.
var osPCRs = []int{4, 7, 8, 9, 14}

func mustHex(t testing.TB, s string) bundle.Digest {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signBundle signs components as a bundle of publisher "test" and returns
// it verified, as a bundle.Loader would.
func signBundle(t testing.TB, id string, comps []bundle.Component) *bundle.Verified {
	t.Helper()
	product, version, _ := strings.Cut(id, "-")
	b := &bundle.Bundle{
		Schema: bundle.SchemaV1, Publisher: "test", Product: product, Version: version,
		NotBefore: testTime.AddDate(0, -1, 0), NotAfter: testTime.AddDate(1, 0, 0),
		Components: comps,
	}
	env, err := bundle.NewEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	key, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Sign(key, nil); err != nil {
		t.Fatal(err)
	}
	trust := bundle.NewTrustStore()
	if err := trust.Add("test", key.Public()); err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Verify(env, trust, testTime)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// approvedBaseline learns the firmware values of a corpus boot and
// approves them.
func approvedBaseline(t testing.TB, ev *Evidence) *Baseline {
	t.Helper()
	b, err := LearnBaseline("vm1", ev, nil, testTime)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Approve("admin", testTime, "enrollment"); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFromVerifiedLog(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	if got := ev.Banks(); len(got) != 2 || got[0] != "sha256" || got[1] != "sha1" {
		t.Errorf("banks = %v, want [sha256 sha1]", got)
	}
	if !ev.Quoted(4) || ev.Quoted(10) {
		t.Errorf("quoted PCRs = %v, want 4 and not 10", ev.QuotedPCRs())
	}
	// 49 events, less the Spec ID event (EV_NO_ACTION).
	if n := len(ev.Events()); n != 48 {
		t.Errorf("events = %d, want 48", n)
	}
	for _, e := range ev.Events() {
		if e.Type == "EV_NO_ACTION" {
			t.Errorf("event %d: EV_NO_ACTION kept", e.Number)
		}
	}
}

func TestFromVerifiedLogRejectsMismatch(t *testing.T) {
	raw, err := os.ReadFile("testdata/ovmf-swtpm/shim-sbms/eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Quoted PCR values from another boot (Secure Boot off).
	data, err := os.ReadFile("testdata/ovmf-swtpm/shim-sboff/pcrs.json")
	if err != nil {
		t.Fatal(err)
	}
	pcrs, err := eventlog.ParseExpectedPCRs(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := eventlog.Verify(log, pcrs, eventlog.VerifyOptions{})
	var mismatch *eventlog.MismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("verify error = %v, want a mismatch", err)
	}
	if _, err := FromVerifiedLog(log, res); err == nil || !strings.Contains(err.Error(), "did not verify") {
		t.Errorf("FromVerifiedLog error = %v, want a refusal", err)
	}
	if _, err := FromVerifiedLog(log, nil); err == nil {
		t.Error("FromVerifiedLog accepted a missing result")
	}
}

func TestFromVerifiedLogKeepsQuotedOnly(t *testing.T) {
	raw, err := os.ReadFile("testdata/ovmf-swtpm/shim-sbms/eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/ovmf-swtpm/shim-sbms/pcrs.json")
	if err != nil {
		t.Fatal(err)
	}
	all, err := eventlog.ParseExpectedPCRs(data)
	if err != nil {
		t.Fatal(err)
	}
	// A quote of the SHA-256 bank's PCRs 0 to 7 only.
	quoted := eventlog.PCRValues{eventlog.SHA256: {}}
	for i := 0; i <= 7; i++ {
		quoted[eventlog.SHA256][i] = all[eventlog.SHA256][i]
	}
	res, err := eventlog.Verify(log, quoted, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := FromVerifiedLog(log, res)
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.Banks(); len(got) != 1 || got[0] != "sha256" {
		t.Errorf("banks = %v, want [sha256]", got)
	}
	for _, e := range ev.Events() {
		if e.PCR > 7 {
			t.Errorf("event %d of unquoted PCR %d kept", e.Number, e.PCR)
		}
		if _, ok := e.Digests["sha1"]; ok {
			t.Errorf("event %d keeps a digest of the unquoted sha1 bank", e.Number)
		}
	}
	if ev.Quoted(8) {
		t.Error("PCR 8 reported quoted")
	}
}

// TestClassifyCorpusEvents checks the kind and name of each kind of event
// in a real shim, GRUB and kernel boot.
func TestClassifyCorpusEvents(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	byNumber := make(map[int]*Event)
	for i := range ev.Events() {
		byNumber[ev.Events()[i].Number] = &ev.Events()[i]
	}
	tests := []struct {
		event int
		kind  bundle.Kind
		name  string
	}{
		{1, bundle.KindCRTMVersion, "s_crtm_version"},
		{2, bundle.KindFirmwareBlob, "firmware blob 0x820000+0xe0000"},
		{4, bundle.KindSecureBootVar, "SecureBoot"},
		{8, bundle.KindSecureBootVar, "dbx"},
		{9, bundle.KindSeparator, "separator"},
		{11, bundle.KindBootVariable, "Boot0001"},
		{14, bundle.KindAction, "Calling EFI Application from Boot Option"},
		{22, bundle.KindAuthority, "db"},
		{23, bundle.KindGPT, "efi_gpt_event"},
		{24, bundle.KindBootApplication, "BOOTX64.EFI"},
		{25, bundle.KindShimVariable, "MokList"},
		{27, bundle.KindShimVariable, "SbatLevel"},
		{29, bundle.KindAuthority, "MokListRT"},
		{30, bundle.KindBootApplication, "grubx64.efi"},
		{36, bundle.KindGRUBCommand, "grub_cmd: set timeout=0"},
		{35, bundle.KindGRUBFile, "grub.cfg"},
		{41, bundle.KindGRUBFile, "vmlinuz"},
		{42, bundle.KindBootApplication, "vmlinuz"},
		{44, bundle.KindKernelCmdline, "kernel_cmdline: /vmlinuz console=ttyS0 panic=-1"},
		{46, bundle.KindGRUBFile, "initrd.img"},
	}
	for _, tt := range tests {
		e, ok := byNumber[tt.event]
		if !ok {
			t.Errorf("event %d missing", tt.event)
			continue
		}
		if got := Classify(e); got != tt.kind {
			t.Errorf("event %d (%s PCR %d): kind = %s, want %s", tt.event, e.Type, e.PCR, got, tt.kind)
		}
		if got := ComponentName(e); got != tt.name {
			t.Errorf("event %d: name = %q, want %q", tt.event, got, tt.name)
		}
	}
}

func TestCheckLearnedBootIsTrusted(t *testing.T) {
	for _, name := range []string{"shim-sbms", "shim-sboff", "direct-sboff"} {
		t.Run(name, func(t *testing.T) {
			ev := loadCorpus(t, name)
			p := &Policy{
				Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(ev, osPCRs))},
				Baseline: approvedBaseline(t, ev),
			}
			v, err := p.Check(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !v.Trusted || len(v.Unmatched) != 0 {
				t.Fatalf("verdict not trusted: %v", v.Failures())
			}
			if v.Matched != len(ev.Events()) {
				t.Errorf("matched %d of %d events", v.Matched, len(ev.Events()))
			}
		})
	}
}

// TestCheckNamesChangedKernel replaces the kernel's reference digests, as
// a bundle for another kernel build would, and expects the verdict to name
// exactly the kernel's events.
func TestCheckNamesChangedKernel(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	comps := Learn(ev, osPCRs)
	other := mustHex(t, "9a"+strings.Repeat("11", 31))
	replaced := 0
	for i := range comps {
		if comps[i].Name != "vmlinuz" {
			continue
		}
		for j := range comps[i].Values {
			comps[i].Values[j].Digests = map[bundle.Bank]bundle.Digest{"sha256": other}
			replaced++
		}
	}
	if replaced != 2 {
		t.Fatalf("replaced %d kernel values, want 2 (PCR 4 Authenticode, PCR 9 file)", replaced)
	}
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "debian-12.8", comps)},
		Baseline: approvedBaseline(t, ev),
	}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted {
		t.Fatal("verdict trusted with a changed kernel")
	}
	var got []int
	for _, u := range v.Unmatched {
		got = append(got, u.Event)
		if u.Component != "vmlinuz" {
			t.Errorf("event %d taken to be %q, want vmlinuz", u.Event, u.Component)
		}
		if len(u.Allowed) != 1 || !bytes.Equal(u.Allowed[0].Digest, other) || u.Allowed[0].Source != "bundle debian-12.8" {
			t.Errorf("event %d: allowed = %+v, want the bundle's kernel digest", u.Event, u.Allowed)
		}
	}
	if len(got) != 3 || got[0] != 41 || got[1] != 42 || got[2] != 43 {
		t.Errorf("unmatched events = %v, want [41 42 43]", got)
	}
	want := "PCR 4, event 42, vmlinuz Authenticode sha256 61e79ca0acd7…: bundle debian-12.8 allows 9a1111111111…"
	if s := v.Unmatched[1].String(); s != want {
		t.Errorf("explanation =\n%s\nwant\n%s", s, want)
	}
	want = "PCR 9, event 41, vmlinuz file sha256 85667e6c7224…: bundle debian-12.8 allows 9a1111111111…"
	if s := v.Unmatched[0].String(); s != want {
		t.Errorf("explanation =\n%s\nwant\n%s", s, want)
	}
}

func TestCheckWarnOnlyStaysTrusted(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	p := &Policy{Rules: Rules{ReferenceValues: Warn}}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Trusted || len(v.Unmatched) != len(ev.Events()) {
		t.Errorf("trusted %v with %d unmatched, want trusted with all %d unmatched", v.Trusted, len(v.Unmatched), len(ev.Events()))
	}
	if f := v.Failures(); len(f) == 0 || !strings.HasPrefix(f[0], "warn: PCR ") {
		t.Errorf("failures = %v", f)
	}
}

func TestCheckUnapprovedBaselineIsUnused(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	b, err := LearnBaseline("vm1", ev, nil, testTime)
	if err != nil {
		t.Fatal(err)
	}
	p := &Policy{Bundles: []*bundle.Verified{signBundle(t, "golden-1", Learn(ev, osPCRs))}, Baseline: b}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted {
		t.Error("trusted with an unapproved baseline")
	}
	for _, u := range v.Unmatched {
		if u.PCR == 8 || u.PCR == 9 || u.PCR == 14 || u.Type == "EV_EFI_BOOT_SERVICES_APPLICATION" {
			t.Errorf("event %d (%s, PCR %d) unmatched, want only firmware events", u.Event, u.Type, u.PCR)
		}
	}
	if len(v.Notes) != 1 || !strings.Contains(v.Notes[0], "await approval") {
		t.Errorf("notes = %v", v.Notes)
	}

	// A firmware update: the next revision needs a new approval.
	next, err := LearnBaseline("vm1", ev, b, testTime.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if next.Revision != 2 || next.Approved() {
		t.Errorf("next baseline revision %d approved %v, want 2 unapproved", next.Revision, next.Approved())
	}
	if err := next.Approve("", testTime, ""); err == nil {
		t.Error("approval without a name accepted")
	}
}

// TestCheckOtherFirmwareSettings judges a Secure Boot off boot against the
// values of a Secure Boot on boot of the same firmware: the PCR 7 variables
// and the shim chain differ.
func TestCheckOtherFirmwareSettings(t *testing.T) {
	golden := loadCorpus(t, "shim-sbms")
	ev := loadCorpus(t, "shim-sboff")
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(golden, osPCRs))},
		Baseline: approvedBaseline(t, golden),
	}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted {
		t.Fatal("Secure Boot off boot trusted against Secure Boot on values")
	}
	found := false
	for _, u := range v.Unmatched {
		if u.Component == "SecureBoot" {
			found = true
			if u.PCR != 7 || u.Kind != bundle.KindSecureBootVar {
				t.Errorf("SecureBoot event: PCR %d kind %s", u.PCR, u.Kind)
			}
			if len(u.Allowed) != 1 || !strings.HasPrefix(u.Allowed[0].Source, "machine firmware values") {
				t.Errorf("SecureBoot alternatives = %+v", u.Allowed)
			}
		}
	}
	if !found {
		t.Errorf("SecureBoot variable not reported; unmatched: %v", v.Failures())
	}
}

func TestMatchSHA1OnlyNeedsSHA1OnlyEvidence(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	comps := Learn(ev, osPCRs)
	for i := range comps {
		for j := range comps[i].Values {
			delete(comps[i].Values[j].Digests, "sha256")
		}
	}
	p := &Policy{Bundles: []*bundle.Verified{signBundle(t, "sha1-1", comps)}, Rules: Rules{ReferenceValues: Warn}}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range v.Unmatched {
		if u.PCR == 4 && u.Event == 30 {
			return // grubx64.efi did not match on SHA-1 alone
		}
	}
	t.Errorf("a SHA-1-only reference matched while SHA-256 was verified; unmatched: %v", v.Failures())
}

func TestCheckRejectsUnverifiedInputs(t *testing.T) {
	p := &Policy{}
	if _, err := p.Check(nil); err == nil {
		t.Error("Check accepted nil evidence")
	}
	if _, err := p.Check(&Evidence{}); err == nil {
		t.Error("Check accepted evidence not built by FromVerifiedLog")
	}
	p.Bundles = []*bundle.Verified{{}}
	if _, err := p.Check(loadCorpus(t, "shim-sbms")); err == nil || !strings.Contains(err.Error(), "not verified") {
		t.Errorf("Check with an unverified bundle: error = %v", err)
	}
}

func TestLearnKeepsCommandText(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	for _, c := range Learn(ev, []int{8}) {
		if c.Kind == bundle.KindKernelCmdline {
			if got := c.Values[0].Data; got != "kernel_cmdline: /vmlinuz console=ttyS0 panic=-1" {
				t.Errorf("kernel command line data = %q", got)
			}
			return
		}
	}
	t.Error("no kernel command line learned")
}

func TestSourcesNote(t *testing.T) {
	// The corpus copies must keep their source note.
	if _, err := os.Stat(filepath.Join("testdata", "SOURCES.md")); err != nil {
		t.Error(err)
	}
}

// TestCheckPCRLockComponent imports a systemd .pcrlock file and matches it
// against the firmware's EV_EFI_ACTION event in a real boot.
func TestCheckPCRLockComponent(t *testing.T) {
	data, err := os.ReadFile("../bundle/testdata/350-action-efi-application.pcrlock")
	if err != nil {
		t.Fatal(err)
	}
	c, err := bundle.ImportPCRLock("350-action-efi-application", data, bundle.KindAction)
	if err != nil {
		t.Fatal(err)
	}
	ev := loadCorpus(t, "shim-sbms")
	p := &Policy{Bundles: []*bundle.Verified{signBundle(t, "systemd-255", []bundle.Component{*c})}, Rules: Rules{ReferenceValues: Warn}}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Matched != 1 {
		t.Fatalf("matched %d events, want 1 (event 14)", v.Matched)
	}
	for _, u := range v.Unmatched {
		if u.Event == 14 {
			t.Error("event 14 (Calling EFI Application from Boot Option) did not match")
		}
	}
}

func TestComponentNameFromHostileData(t *testing.T) {
	long := strings.Repeat("A\x1b[31m", 100)
	events := []Event{
		{Number: 1, PCR: 7, Type: "EV_EFI_VARIABLE_DRIVER_CONFIG", Digests: map[bundle.Bank][]byte{"sha256": make([]byte, 32)}, Variable: &Variable{Name: long}},
		{Number: 2, PCR: 8, Type: "EV_IPL", Digests: map[bundle.Bank][]byte{"sha256": make([]byte, 32)}, Text: " \n\t "},
		{Number: 3, PCR: 4, Type: "EV_EFI_BOOT_SERVICES_APPLICATION", Digests: map[bundle.Bank][]byte{"sha256": make([]byte, 32)}, ImagePath: `\EFI\` + long},
	}
	ev := &Evidence{events: events, banks: []bundle.Bank{"sha256"}, quoted: map[int]bool{4: true, 7: true, 8: true}}
	for i := range events {
		name := ComponentName(&events[i])
		if strings.ContainsAny(name, "\x1b\n\t") || len([]rune(name)) > maxLabel+1 || name == "" {
			t.Errorf("event %d: name %q", events[i].Number, name)
		}
	}
	if got := ComponentName(&events[1]); got != "ipl" {
		t.Errorf("blank text: name = %q, want the event type", got)
	}
	for _, c := range Learn(ev, []int{4, 7, 8}) {
		if err := c.Validate(); err != nil {
			t.Errorf("learned component %q: %v", c.Name, err)
		}
	}
}

func TestFirmwareParts(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	parts := firmwareParts(ev)
	var firmware, os []int
	for i, e := range ev.Events() {
		if parts[i] {
			firmware = append(firmware, e.Number)
		} else {
			os = append(os, e.Number)
		}
	}
	// Everything up to the GPT event precedes shim (event 24); events 47
	// and 48 are the firmware's ExitBootServices actions in PCR 5.
	want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 47, 48}
	if fmt.Sprint(firmware) != fmt.Sprint(want) {
		t.Errorf("firmware events = %v, want %v", firmware, want)
	}
	// shim's SbatLevel (27) and the authority it logged for GRUB (29) are
	// the operating system's.
	for _, n := range []int{24, 27, 29, 30, 42} {
		found := false
		for _, o := range os {
			found = found || o == n
		}
		if !found {
			t.Errorf("event %d not counted as the operating system's: %v", n, os)
		}
	}
}

// predictedBundle converts the prediction `vouch predict` made from the
// Debian shim, GRUB and kernel packages of the corpus boot, after edit
// changes its JSON, into a verified bundle.
func predictedBundle(t *testing.T, edit func(string) string) *bundle.Verified {
	t.Helper()
	data, err := os.ReadFile("../bundle/testdata/predict-debian-12-shim-sbms.json")
	if err != nil {
		t.Fatal(err)
	}
	comps, err := bundle.FromPrediction([]byte(edit(string(data))))
	if err != nil {
		t.Fatal(err)
	}
	return signBundle(t, "debian-12.8", comps)
}

// TestCheckPredictedBundle judges the real boot against values predicted
// from the packages (not from the log) and the machine's firmware values.
func TestCheckPredictedBundle(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	p := &Policy{
		Bundles:  []*bundle.Verified{predictedBundle(t, func(s string) string { return s })},
		Baseline: approvedBaseline(t, ev),
	}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Trusted || len(v.Unmatched) != 0 {
		t.Fatalf("predicted bundle does not accept the boot: %v", v.Failures())
	}

	// A kernel build that differs from the booted one: its Authenticode
	// and file digests change, and the verdict names the kernel events.
	const (
		authenticode = "61e79ca0acd7e9f18984bea7b44650801ed54fd95a8786c16c583b86acf9d538"
		fileHash     = "85667e6c72245133bd7e3e80bac7d16b26fda15c0a3c68faa4b713850ea526cd"
	)
	p.Bundles = []*bundle.Verified{predictedBundle(t, func(s string) string {
		s = strings.ReplaceAll(s, authenticode, "9a"+authenticode[2:])
		return strings.ReplaceAll(s, fileHash, "c4"+fileHash[2:])
	})}
	v, err = p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted {
		t.Fatal("boot trusted with another kernel's digests")
	}
	var got []string
	for i := range v.Unmatched {
		got = append(got, v.Unmatched[i].String())
	}
	want := []string{
		"PCR 9, event 41, vmlinuz file sha256 85667e6c7224…: bundle debian-12.8 allows vmlinuz-6.1.0-57-amd64 c4667e6c7224…",
		"PCR 4, event 42, vmlinuz Authenticode sha256 61e79ca0acd7…: bundle debian-12.8 allows vmlinuz-6.1.0-57-amd64 9ae79ca0acd7…",
		"PCR 4, event 43, vmlinuz Authenticode sha256 61e79ca0acd7…: bundle debian-12.8 allows vmlinuz-6.1.0-57-amd64 9ae79ca0acd7…",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unmatched events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestVerdictReasons(t *testing.T) {
	ev := loadCorpus(t, "shim-sboff")
	golden := loadCorpus(t, "shim-sbms")
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(golden, osPCRs))},
		Baseline: approvedBaseline(t, golden),
		Rules:    Rules{SecureBoot: &SecureBootRule{Action: Warn}},
	}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	reasons := v.Reasons()
	if len(reasons) != len(v.Unmatched)+1 {
		t.Fatalf("%d reasons for %d unmatched events and one failed rule", len(reasons), len(v.Unmatched))
	}
	var secureBoot *Reason
	for i := range reasons {
		if reasons[i].Code == ReasonEventUnmatched && reasons[i].Event != nil && *reasons[i].Event == 4 {
			secureBoot = &reasons[i]
		}
	}
	if secureBoot == nil || *secureBoot.PCR != 7 || secureBoot.Action != Enforce || len(secureBoot.Expected) != 1 ||
		secureBoot.Expected[0] != "ccfc4bb32888a345bc8aeadaba552b627d99348c767681ab3141f5b01e40a40e" {
		t.Errorf("SecureBoot event reason = %+v", secureBoot)
	}
	last := reasons[len(reasons)-1]
	if last.Code != ReasonRuleFailed || last.Rule != "secure_boot" || last.Action != Warn || last.Event == nil || *last.Event != 4 {
		t.Errorf("rule reason = %+v", last)
	}
}

// TestBaselineDiff compares the firmware values of the same OVMF build with
// two variable stores: Secure Boot on with Microsoft keys, and off.
func TestBaselineDiff(t *testing.T) {
	on, err := LearnBaseline("vm1", loadCorpus(t, "shim-sbms"), nil, testTime)
	if err != nil {
		t.Fatal(err)
	}
	off, err := LearnBaseline("vm1", loadCorpus(t, "shim-sboff"), on, testTime)
	if err != nil {
		t.Fatal(err)
	}
	diff := Diff(on, off)
	joined := strings.Join(diff, "\n")
	for _, want := range []string{
		"PCR 7 SecureBoot (secure-boot-variable): sha256 ccfc4bb32888… → sha256 115aa827dbcc…",
		"PCR 0 firmware blob 0x820000+0xe0000 (firmware-blob): sha256 c4ff2cfc23ae… → sha256 f4f0c5269727…",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("diff lacks %q:\n%s", want, joined)
		}
	}
	// The db authority for shim is logged only with Secure Boot on.
	if !strings.Contains(joined, "PCR 7 db (variable-authority): sha256 4d4a8e2c7413… → (none)") {
		t.Errorf("diff lacks the removed db authority:\n%s", joined)
	}
	if d := Diff(on, on); len(d) != 0 {
		t.Errorf("diff of a baseline with itself = %v", d)
	}
}

// TestCheckConcurrent runs checks of one Policy in parallel, as a verifier
// does; run with -race to catch shared writes.
func TestCheckConcurrent(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(ev, osPCRs))},
		Baseline: approvedBaseline(t, ev),
		Rules:    Rules{SecureBoot: &SecureBootRule{}, KernelCmdline: &CmdlineRule{Allow: []string{"/vmlinuz .*"}}},
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			v, err := p.Check(ev)
			if err == nil && !v.Trusted {
				err = errors.New("verdict not trusted")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// evidenceQuoting verifies the shim-sbms log against a quote of the given
// SHA-256 PCRs only: the log's replayed values for those PCRs, and the
// reset value (zeros) for PCRs the log has no event for.
func evidenceQuoting(t *testing.T, pcrs ...int) *Evidence {
	t.Helper()
	return evidenceQuotingBank(t, eventlog.SHA256, pcrs...)
}

// evidenceQuotingBank is evidenceQuoting with the quote's bank given.
func evidenceQuotingBank(t *testing.T, bank eventlog.Algorithm, pcrs ...int) *Evidence {
	t.Helper()
	raw, err := os.ReadFile("testdata/ovmf-swtpm/shim-sbms/eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := eventlog.Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	quoted := eventlog.PCRValues{bank: {}}
	for _, i := range pcrs {
		v, ok := replayed[bank][i]
		if !ok {
			v = make([]byte, bank.Size())
		}
		quoted[bank][i] = v
	}
	res, err := eventlog.Verify(log, quoted, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := FromVerifiedLog(log, res)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestCheckRequiresQuotedPCRs is the attack of a machine that quotes only
// a PCR with no events (PCR 23) so that no event is judged, or leaves out
// the PCRs where its bundle's values live.
func TestCheckRequiresQuotedPCRs(t *testing.T) {
	golden := loadCorpus(t, "shim-sbms")
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(golden, osPCRs))},
		Baseline: approvedBaseline(t, golden),
	}
	if got, want := fmt.Sprint(p.RequiredPCRs()), "[0 1 2 3 4 5 6 7 8 9 14]"; got != want {
		t.Errorf("required PCRs = %s, want %s", got, want)
	}

	v, err := p.Check(evidenceQuoting(t, 23))
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted {
		t.Fatal("a quote of PCR 23 alone was trusted")
	}
	if got := fmt.Sprint(v.UnquotedPCRs); got != "[0 1 2 3 4 5 6 7 8 9 14]" {
		t.Errorf("unquoted PCRs = %s", got)
	}
	codes := map[string]bool{}
	for _, r := range v.Reasons() {
		codes[r.Code] = true
	}
	if !codes[ReasonPCRNotQuoted] || !codes[ReasonNoEvents] {
		t.Errorf("reasons = %+v, want %s and %s", v.Reasons(), ReasonPCRNotQuoted, ReasonNoEvents)
	}
	if f := strings.Join(v.Failures(), "\n"); !strings.Contains(f, "PCR 0,1,2,3,4,5,6,7,8,9,14 required by the policy") {
		t.Errorf("failures = %s", f)
	}

	// Firmware and boot loader PCRs quoted, GRUB's PCRs 8 and 9 left out:
	// every judged event matches, but the kernel command line was not seen.
	v, err = p.Check(evidenceQuoting(t, 0, 1, 2, 3, 4, 5, 6, 7, 14))
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted || len(v.Unmatched) != 0 || fmt.Sprint(v.UnquotedPCRs) != "[8 9]" {
		t.Errorf("trusted = %v, unmatched %d, unquoted %v: want untrusted for PCRs 8 and 9 alone", v.Trusted, len(v.Unmatched), v.UnquotedPCRs)
	}

	v, err = p.Check(evidenceQuoting(t, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Trusted {
		t.Errorf("full quote not trusted: %v", v.Failures())
	}
}

// TestCheckSHA1OnlyNeedsOptIn judges a boot whose quote covers only the
// SHA-1 bank against reference values that match it: trusted only with
// the insecure_allow_sha1 rule.
func TestCheckSHA1OnlyNeedsOptIn(t *testing.T) {
	full := loadCorpus(t, "shim-sbms")
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(full, osPCRs))},
		Baseline: approvedBaseline(t, full),
	}
	ev := evidenceQuotingBank(t, eventlog.SHA1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14)
	if banks := ev.Banks(); len(banks) != 1 || banks[0] != "sha1" {
		t.Fatalf("banks = %v, want [sha1]", banks)
	}

	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted {
		t.Error("SHA-1-only evidence trusted without insecure_allow_sha1")
	}
	if !v.SHA1Only || v.SHA1Accepted {
		t.Errorf("SHA1Only = %v, SHA1Accepted = %v, want true, false", v.SHA1Only, v.SHA1Accepted)
	}
	if len(v.Unmatched) != 0 || v.Matched != len(ev.Events()) {
		t.Errorf("matched %d of %d events, %d unmatched: the SHA-1 values should still be compared", v.Matched, len(ev.Events()), len(v.Unmatched))
	}
	codes := make(map[string]bool)
	for _, r := range v.Reasons() {
		codes[r.Code] = true
	}
	if !codes[ReasonSHA1Only] {
		t.Errorf("reasons = %+v, want %s", v.Reasons(), ReasonSHA1Only)
	}

	p.Rules.InsecureAllowSHA1 = true
	v, err = p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Trusted {
		t.Errorf("SHA-1-only evidence not trusted with insecure_allow_sha1: %v", v.Failures())
	}
	if !v.SHA1Accepted || len(v.Notes) == 0 {
		t.Errorf("SHA1Accepted = %v, notes = %v: the verdict should say SHA-1 was accepted", v.SHA1Accepted, v.Notes)
	}
}

func TestParseRulesInsecureAllowSHA1(t *testing.T) {
	r, err := ParseRules([]byte(`{"insecure_allow_sha1": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if !r.InsecureAllowSHA1 {
		t.Error("insecure_allow_sha1 not decoded")
	}
}

// TestCheckPerBankCoverage is the attack of a machine whose quote selects
// other PCRs in each bank: PCRs 0-9 and 14 in SHA-1, only PCR 23 in
// SHA-256. Its log carries the true SHA-1 digest of an unapproved boot
// loader and the approved SHA-256 digest, which no quoted SHA-256 PCR
// checks. The SHA-256 digests must not count, so the boot is judged on
// SHA-1 alone and is not trusted.
func TestCheckPerBankCoverage(t *testing.T) {
	golden := evidenceQuotingBank(t, eventlog.SHA256, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14)
	p := &Policy{
		Bundles:  []*bundle.Verified{signBundle(t, "golden-1", Learn(golden, osPCRs))},
		Baseline: approvedBaseline(t, golden),
	}

	raw, err := os.ReadFile("testdata/ovmf-swtpm/shim-sbms/eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	grub := &log.Events[30]
	if grub.PCR != 4 || grub.Type != eventlog.EV_EFI_BOOT_SERVICES_APPLICATION {
		t.Fatalf("event 30 is %s in PCR %d, want the boot loader in PCR 4", grub.Type, grub.PCR)
	}
	evil := sha1.Sum([]byte("evil grub"))
	copy(grub.Digest(eventlog.SHA1), evil[:]) // the digests share the parsed bytes
	replayed, err := eventlog.Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	quoted := eventlog.PCRValues{eventlog.SHA1: {}, eventlog.SHA256: {23: replayed[eventlog.SHA256][23]}}
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14} {
		quoted[eventlog.SHA1][i] = replayed[eventlog.SHA1][i]
	}
	res, err := eventlog.Verify(log, quoted, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := FromVerifiedLog(log, res)
	if err != nil {
		t.Fatal(err)
	}

	for _, e := range ev.Events() {
		if _, ok := e.Digests["sha256"]; ok {
			t.Fatalf("event %d (PCR %d) keeps its sha256 digest, which no quoted sha256 PCR covers", e.Number, e.PCR)
		}
	}
	v, err := p.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted {
		t.Errorf("boot with an unapproved boot loader trusted: matched %d, unmatched %d", v.Matched, len(v.Unmatched))
	}
	if !v.SHA1Only || !slices.Contains(v.SHA1OnlyPCRs, 4) {
		t.Errorf("SHA1Only = %v, PCRs %v: want sha1_only naming PCR 4", v.SHA1Only, v.SHA1OnlyPCRs)
	}
}
