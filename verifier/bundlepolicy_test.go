package verifier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/policy"
)

var policyTime = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// corpusBoot returns a Boot of the OVMF boot policy/testdata/ovmf-swtpm/NAME,
// whose evidence is the log verified against the PCR values the guest
// read (PCR 10, IMA's, left out).
func corpusBoot(t testing.TB, name string) *Boot {
	t.Helper()
	dir := filepath.Join("..", "policy", "testdata", "ovmf-swtpm", name)
	raw, err := os.ReadFile(filepath.Join(dir, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	pcrData, err := os.ReadFile(filepath.Join(dir, "pcrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	return NewBoot("vm1", nil, policyTime, func() (*policy.Evidence, error) {
		log, err := eventlog.Parse(raw)
		if err != nil {
			return nil, err
		}
		pcrs, err := eventlog.ParseExpectedPCRs(pcrData)
		if err != nil {
			return nil, err
		}
		for _, bank := range pcrs {
			delete(bank, imaPCR)
		}
		res, err := eventlog.Verify(log, pcrs, eventlog.VerifyOptions{})
		if err != nil {
			return nil, err
		}
		return policy.FromVerifiedLog(log, res)
	})
}

// signedPrediction signs the prediction vouch predict made from the Debian
// packages of the corpus boot, after edit, as bundle debian-12.8 of
// publisher "debian", and returns the envelope and the publisher's key.
func signedPrediction(t testing.TB, edit func(string) string, notAfter time.Time) ([]byte, *bundle.PrivateKey) {
	t.Helper()
	key, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signPredictionWith(t, key, "debian", edit, notAfter), key
}

func signPredictionWith(t testing.TB, key *bundle.PrivateKey, publisher string, edit func(string) string, notAfter time.Time) []byte {
	t.Helper()
	data, err := os.ReadFile("../bundle/testdata/predict-debian-12-shim-sbms.json")
	if err != nil {
		t.Fatal(err)
	}
	comps, err := bundle.FromPrediction([]byte(edit(string(data))))
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{
		Schema: bundle.SchemaV1, Publisher: publisher, Product: "debian", Version: "12.8",
		NotBefore: policyTime.AddDate(0, -1, 0), NotAfter: notAfter, Components: comps,
	}
	env, err := bundle.NewEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Sign(key, nil); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func same(s string) string { return s }

// bundleEngine returns an engine holding the signed prediction.
func bundleEngine(t testing.TB, rules policy.Rules, edit func(string) string) *policy.Engine {
	t.Helper()
	env, key := signedPrediction(t, edit, policyTime.AddDate(1, 0, 0))
	trust := bundle.NewTrustStore()
	if err := trust.Add("debian", key.Public()); err != nil {
		t.Fatal(err)
	}
	parsed, err := bundle.ParseEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Verify(parsed, trust, policyTime)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(rules)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetBundles([]*bundle.Verified{v}); err != nil {
		t.Fatal(err)
	}
	return e
}

func reasonCodeList(rs []api.Reason) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Code)
	}
	return strings.Join(out, ",")
}

// TestBundlePolicyApprovalFlow follows one machine: learned firmware
// values pending approval, approved, then a firmware change that needs a
// new approval.
func TestBundlePolicyApprovalFlow(t *testing.T) {
	p := &BundlePolicy{Engine: bundleEngine(t, policy.Rules{SecureBoot: &policy.SecureBootRule{}}, same)}
	sbms := corpusBoot(t, "shim-sbms")
	ref, err := p.Learn(sbms)
	if err != nil {
		t.Fatal(err)
	}
	// Before approval the pending values stand in, so nothing else fails.
	out, err := p.Evaluate(ref, sbms)
	if err != nil || len(out.Reasons) != 0 || out.Revised != nil {
		t.Fatalf("unapproved first boot: %+v %v", out, err)
	}
	ref, note, err := p.ApproveReference(ref, "alice", policyTime)
	if err != nil || note != "firmware values revision 1 approved" {
		t.Fatalf("approve: %q %v", note, err)
	}
	out, err = p.Evaluate(ref, sbms)
	if err != nil || len(out.Reasons)+len(out.Warnings) != 0 || out.Revised != nil {
		t.Fatalf("approved boot: %+v %v", out, err)
	}

	// The same firmware with Secure Boot off: different firmware values.
	sboff := corpusBoot(t, "shim-sboff")
	out, err = p.Evaluate(ref, sboff)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reasons) == 0 || out.Reasons[0].Code != ReasonFirmwareChanged || out.Revised == nil || out.RevisedApproved {
		t.Fatalf("firmware change: reasons %s, revised %v", reasonCodeList(out.Reasons), out.Revised != nil)
	}
	if m := out.Reasons[0].Message; !strings.Contains(m, "PCR 7 SecureBoot (secure-boot-variable): sha256 ccfc4bb32888… → sha256 115aa827dbcc…") ||
		!strings.Contains(m, "approve revision 2") {
		t.Errorf("firmware change message: %s", m)
	}
	if !strings.Contains(reasonCodeList(out.Reasons), "rule_failed") || !strings.Contains(reasonCodeList(out.Reasons), policy.ReasonEventUnmatched) {
		t.Errorf("Secure Boot off judged against approved revision 1: reasons %s", reasonCodeList(out.Reasons))
	}
	if !strings.Contains(out.RevisionNote, "revision 2 awaits approval") {
		t.Errorf("revision note %q", out.RevisionNote)
	}
	pending := out.Revised
	// The same change again: the pending revision stays as it is.
	out, err = p.Evaluate(pending, sboff)
	if err != nil || out.Revised != nil || out.Reasons[0].Code != ReasonFirmwareChanged {
		t.Fatalf("second round of the change: revised %v, reasons %s, %v", out.Revised != nil, reasonCodeList(out.Reasons), err)
	}
	// Back to the approved firmware: the pending revision is dropped.
	out, err = p.Evaluate(pending, sbms)
	if err != nil || out.Revised == nil || !out.RevisedApproved || len(out.Reasons) != 0 {
		t.Fatalf("firmware restored: revised %v approved %v reasons %s %v", out.Revised != nil, out.RevisedApproved, reasonCodeList(out.Reasons), err)
	}
	// Approving revision 2 makes its values the machine's.
	ref2, note, err := p.ApproveReference(pending, "alice", policyTime)
	if err != nil || !strings.HasPrefix(note, "firmware values revision 2 approved (") {
		t.Fatalf("approve revision 2: %q %v", note, err)
	}
	out, err = p.Evaluate(ref2, sboff)
	if err != nil || strings.Contains(reasonCodeList(out.Reasons), ReasonFirmwareChanged) || out.Revised != nil {
		t.Fatalf("approved revision 2: %s %v", reasonCodeList(out.Reasons), err)
	}
	if !strings.Contains(reasonCodeList(out.Reasons), "rule_failed") {
		t.Errorf("Secure Boot off passed the enforced secure_boot rule: %s", reasonCodeList(out.Reasons))
	}
}

// TestBundlePolicyNamesEvent changes the kernel in the bundle: the reason
// names the PCR, the event and what the bundle allows.
func TestBundlePolicyNamesEvent(t *testing.T) {
	const authenticode = "61e79ca0acd7e9f18984bea7b44650801ed54fd95a8786c16c583b86acf9d538"
	p := &BundlePolicy{Engine: bundleEngine(t, policy.Rules{}, func(s string) string {
		return strings.ReplaceAll(s, authenticode, "9a"+authenticode[2:])
	})}
	boot := corpusBoot(t, "shim-sbms")
	ref, err := p.Learn(boot)
	if err != nil {
		t.Fatal(err)
	}
	ref, _, err = p.ApproveReference(ref, "alice", policyTime)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Evaluate(ref, boot)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reasons) != 2 {
		t.Fatalf("reasons = %+v, want the two kernel events", out.Reasons)
	}
	r := out.Reasons[0]
	want := "PCR 4, event 42, vmlinuz Authenticode sha256 61e79ca0acd7…: bundle debian-12.8 allows vmlinuz-6.1.0-57-amd64 9ae79ca0acd7…"
	if r.Code != policy.ReasonEventUnmatched || *r.PCR != 4 || *r.Event != 42 || r.Message != want || r.Action != "" ||
		r.Digest != authenticode || len(r.Expected) != 1 || r.Expected[0] != "9a"+authenticode[2:] {
		t.Errorf("reason = %+v\nwant message %s", r, want)
	}
}

// TestBundlePolicyWarnings: a warn rule is reported without counting.
func TestBundlePolicyWarnings(t *testing.T) {
	p := &BundlePolicy{Engine: bundleEngine(t, policy.Rules{
		KernelCmdline: &policy.CmdlineRule{Action: policy.Warn, Allow: []string{"/vmlinuz-[0-9.]+-amd64 quiet"}},
	}, same)}
	boot := corpusBoot(t, "shim-sbms")
	ref, _ := p.Learn(boot)
	ref, _, _ = p.ApproveReference(ref, "alice", policyTime)
	out, err := p.Evaluate(ref, boot)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reasons) != 0 || len(out.Warnings) != 1 {
		t.Fatalf("reasons %+v, warnings %+v", out.Reasons, out.Warnings)
	}
	w := out.Warnings[0]
	if w.Code != policy.ReasonRuleFailed || w.Action != "warn" || w.Rule != "kernel_cmdline" || !strings.HasPrefix(w.Message, "rule kernel_cmdline: ") {
		t.Errorf("warning = %+v", w)
	}
}

func TestBundlePolicyWithoutEvidence(t *testing.T) {
	p := &BundlePolicy{Engine: bundleEngine(t, policy.Rules{}, same)}
	boot := NewBoot("vm1", nil, policyTime, nil)
	if _, err := p.Learn(boot); err == nil {
		t.Error("learned firmware values without evidence")
	}
	ref, _ := p.Learn(corpusBoot(t, "shim-sbms"))
	out, err := p.Evaluate(ref, boot)
	if err != nil || reasonCodeList(out.Reasons) != ReasonEvidenceUnusable {
		t.Errorf("evaluate without evidence: %+v %v", out, err)
	}
	if _, err := p.Evaluate([]byte("{}"), corpusBoot(t, "shim-sbms")); err == nil {
		t.Error("evaluated against empty stored values")
	}
}

// TestBundleSetReload loads a directory with a good, an expired and an
// untrusted bundle, then replaces the good one with a rejected version.
func TestBundleSetReload(t *testing.T) {
	dir := t.TempDir()
	key, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a-good.json", signPredictionWith(t, key, "debian", same, policyTime.AddDate(1, 0, 0)))
	write("b-expired.json", signPredictionWith(t, key, "debian", same, policyTime.Add(-time.Hour)))
	write("c-stranger.json", signPredictionWith(t, other, "debian", same, policyTime.AddDate(1, 0, 0)))
	trust := bundle.NewTrustStore()
	if err := trust.Add("debian", key.Public()); err != nil {
		t.Fatal(err)
	}
	engine, err := policy.NewEngine(policy.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	set := &BundleSet{
		Loader:  &bundle.Loader{Trust: trust, Now: func() time.Time { return policyTime }},
		Sources: []string{dir}, Engine: engine,
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	res, err := set.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 1 || len(res.Rejected) != 2 || len(res.Kept) != 0 {
		t.Fatalf("accepted %d, rejected %v", len(res.Accepted), res.Rejected)
	}
	for _, want := range []string{"bundle accepted", "b-expired.json", "code=expired", "c-stranger.json", "code=untrusted-publisher"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	// An update of the good bundle signed by the stranger: rejected, and
	// the version accepted before stays in use.
	write("a-good.json", signPredictionWith(t, other, "debian", same, policyTime.AddDate(1, 0, 0)))
	logs.Reset()
	res, err = set.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 0 || len(res.Kept) != 1 || res.Kept[0].Bundle().ID() != "debian-12.8" {
		t.Fatalf("after a rejected update: accepted %d, kept %d", len(res.Accepted), len(res.Kept))
	}
	if !strings.Contains(logs.String(), "keeping the version accepted before") {
		t.Errorf("log does not say the earlier version is kept:\n%s", logs.String())
	}
	// The kept bundle still judges boots.
	p := &BundlePolicy{Engine: engine}
	boot := corpusBoot(t, "shim-sbms")
	ref, _ := p.Learn(boot)
	if out, err := p.Evaluate(ref, boot); err != nil || len(out.Reasons) != 0 {
		t.Errorf("boot judged with the kept bundle: %+v %v", out, err)
	}

	// Once the earlier version expires, it is dropped.
	set.Loader.Now = func() time.Time { return policyTime.AddDate(2, 0, 0) }
	res, err = set.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Bundles()) != 0 || !strings.Contains(logs.String(), "has expired and is dropped") {
		t.Errorf("expired earlier version: %d bundles in use\n%s", len(res.Bundles()), logs.String())
	}
}

// TestBundleSetRunFetchesURL serves a bundle over HTTP on loopback: Run
// fetches it again each period and keeps it when an update is rejected.
func TestBundleSetRunFetchesURL(t *testing.T) {
	key, _ := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	other, _ := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	good := signPredictionWith(t, key, "debian", same, policyTime.AddDate(1, 0, 0))
	forged := signPredictionWith(t, other, "debian", same, policyTime.AddDate(1, 0, 0))
	var mu sync.Mutex
	serve := good
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Write(serve)
	}))
	defer hs.Close()

	trust := bundle.NewTrustStore()
	if err := trust.Add("debian", key.Public()); err != nil {
		t.Fatal(err)
	}
	engine, _ := policy.NewEngine(policy.Rules{})
	logs := &syncBuffer{}
	set := &BundleSet{
		Loader:  &bundle.Loader{Trust: trust, Now: func() time.Time { return policyTime }},
		Sources: []string{hs.URL + "/debian-12.8.json"}, Engine: engine,
		Log: slog.New(slog.NewTextHandler(logs, nil)),
	}
	if !set.HasURL() {
		t.Fatal("HasURL is false for an http source")
	}
	if res, err := set.Reload(context.Background()); err != nil || len(res.Accepted) != 1 {
		t.Fatalf("first load: %v %v", res, err)
	}
	mu.Lock()
	serve = forged
	mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { set.Run(ctx, 20*time.Millisecond, nil); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "keeping the version accepted before") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "code=bad-signature") && !strings.Contains(logs.String(), "code=untrusted-publisher") {
		t.Errorf("the forged update was not rejected with its reason:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "keeping the version accepted before") {
		t.Errorf("the accepted version was not kept:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestChallengeQuotesPolicyPCRs checks that challenges ask for the PCRs a
// bundle's components are for, beyond the configured selection: a quote
// without them could never be trusted.
func TestChallengeQuotesPolicyPCRs(t *testing.T) {
	inPCR11 := func(s string) string { return strings.Replace(s, `"pcr": 4,`, `"pcr": 11,`, 1) }
	engine := bundleEngine(t, policy.Rules{}, inPCR11)
	h := newHarness(t, Config{Policy: &BundlePolicy{Engine: engine}})
	a := h.newAgent(t, "uki1", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}

	ch := h.challenge(t, "uki1")
	want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14}
	if !slices.Equal(ch.PCRs, want) {
		t.Errorf("challenge PCRs = %v, want %v", ch.PCRs, want)
	}
}

// TestBundleSetRunDropsExpiredBundle checks that Run reloads when a bundle
// from a file expires, without SIGHUP or a URL source, so the expired
// bundle stops judging boots.
func TestBundleSetRunDropsExpiredBundle(t *testing.T) {
	key, _ := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	dir := t.TempDir()
	data := signPredictionWith(t, key, "debian", same, time.Now().Add(2*time.Second))
	if err := os.WriteFile(filepath.Join(dir, "debian.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	trust := bundle.NewTrustStore()
	if err := trust.Add("debian", key.Public()); err != nil {
		t.Fatal(err)
	}
	engine, _ := policy.NewEngine(policy.Rules{})
	logs := &syncBuffer{}
	set := &BundleSet{
		Loader:  &bundle.Loader{Trust: trust, Now: time.Now},
		Sources: []string{dir}, Engine: engine,
		Log: slog.New(slog.NewTextHandler(logs, nil)),
	}
	if res, err := set.Reload(context.Background()); err != nil || len(res.Accepted) != 1 {
		t.Fatalf("first load: %+v %v", res, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { set.Run(ctx, 0, nil); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "has expired and is dropped") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "has expired and is dropped") {
		t.Errorf("the expired bundle was not dropped:\n%s", logs.String())
	}
}
