package verifier

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/agent"
	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/ima"
)

// imaMachine is a recorded machine: its real IMA list and boot PCRs.
type imaMachine struct {
	entries []ima.Entry
	boot    ima.PCRValues
}

func loadIMAMachine(t testing.TB, name string) *imaMachine {
	t.Helper()
	raw, err := os.ReadFile("../ima/testdata/" + name + ".ima.bin")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ima.ParseBinary(raw, ima.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	raw, err = os.ReadFile("../ima/testdata/" + name + ".boot.pcrs.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	boot := ima.PCRValues{}
	for bank, pcrs := range doc.Banks {
		alg, err := ima.ParseAlgorithm(bank)
		if err != nil {
			t.Fatal(err)
		}
		boot[alg] = map[int][]byte{}
		for k, v := range pcrs {
			i, _ := strconv.Atoi(k)
			if i >= 10 {
				continue
			}
			if boot[alg][i], err = hex.DecodeString(v); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &imaMachine{entries: entries, boot: boot}
}

// quote returns a verified quote of the boot PCRs and of PCR 10 after the
// first n entries, in the SHA-1 and SHA-256 banks.
func (m *imaMachine) quote(t testing.TB, n int, resetCount uint32) *QuoteResult {
	t.Helper()
	r, err := ima.ReplayEntries(m.entries[:n], []ima.Algorithm{ima.SHA1, ima.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	quoted := ima.PCRValues{}
	for _, alg := range []ima.Algorithm{ima.SHA1, ima.SHA256} {
		quoted[alg] = map[int][]byte{}
		for i, v := range m.boot[alg] {
			quoted[alg][i] = v
		}
		quoted[alg][10] = r.PCRs[ima.PerBankHash][alg][10]
	}
	return &QuoteResult{ResetCount: resetCount, Opaque: &attest.VerifiedQuote{Verified: quoted}}
}

func encodeEntries(entries []ima.Entry) []byte {
	var out []byte
	for i := range entries {
		out = ima.AppendBinary(out, &entries[i])
	}
	return out
}

func codes(reasons []api.Reason) []string {
	var out []string
	for _, r := range reasons {
		out = append(out, r.Code)
	}
	return out
}

func mustVerifyIMA(t *testing.T, b *AttestBackend, state []byte, offset int, entries []ima.Entry, q *QuoteResult) *IMAResult {
	t.Helper()
	res, err := b.VerifyIMA(state, int64(offset), encodeEntries(entries), q)
	if err != nil {
		t.Fatalf("VerifyIMA from offset %d: %v", offset, err)
	}
	return res
}

// TestVerifyIMAIncremental follows one boot of a real machine's list: two
// rounds verified incrementally, a resent list whose history changed, the
// finding staying in force, and a reboot starting over.
func TestVerifyIMAIncremental(t *testing.T) {
	m := loadIMAMachine(t, "hahuri")
	b := &AttestBackend{}
	// Round 1: the agent read 25 entries, the quote covers 20.
	res := mustVerifyIMA(t, b, nil, 0, m.entries[:25], m.quote(t, 20, 7))
	if len(res.Failures) != 0 || res.Entries != 20 || res.Pending != 5 || res.Report.Policy != "off" ||
		!strings.HasPrefix(res.Report.BootAggregate, "matches sha256 PCRs 0-9") {
		t.Fatalf("round 1: failures %v, report %+v", res.Failures, res.Report)
	}
	// Round 2: entries from offset 20 on, all covered.
	res = mustVerifyIMA(t, b, res.State, 20, m.entries[20:36], m.quote(t, 36, 7))
	if len(res.Failures) != 0 || res.Entries != 36 || res.Verified != 16 || res.Pending != 0 {
		t.Fatalf("round 2: failures %v, report %+v", res.Failures, res.Report)
	}
	good := res.State

	// The list is resent from 0 with entry 5 changed (consistently: its
	// template hash fits its data).
	changed := slices.Clone(m.entries[:36])
	data := slices.Clone(changed[5].TemplateData)
	data[len(data)-3] ^= 1
	sum := sha1.Sum(data)
	changed[5].TemplateData, changed[5].TemplateHash = data, sum[:]
	res = mustVerifyIMA(t, b, good, 0, changed, m.quote(t, 36, 7))
	if !slices.Equal(codes(res.Failures), []string{ReasonIMAHistoryChanged}) ||
		!strings.Contains(res.Failures[0].Message, "IMA log history changed within one boot") {
		t.Fatalf("changed history: %+v", res.Failures)
	}
	// The next round, with honest entries, still carries the finding.
	res = mustVerifyIMA(t, b, res.State, 36, nil, m.quote(t, 36, 7))
	if !slices.Equal(codes(res.Failures), []string{ReasonIMAHistoryChanged}) || !strings.HasPrefix(res.Failures[0].Message, "earlier in this boot") {
		t.Fatalf("round after the change: %+v", res.Failures)
	}
	// A reboot starts over.
	res = mustVerifyIMA(t, b, res.State, 0, m.entries[:36], m.quote(t, 36, 8))
	if len(res.Failures) != 0 || res.Entries != 36 || !res.Report.Restarted {
		t.Fatalf("after a reboot: failures %v, report %+v", res.Failures, res.Report)
	}

	// A record written before findings were kept (a bare ima.State) reads.
	var rec imaRecord
	if err := json.Unmarshal(good, &rec); err != nil {
		t.Fatal(err)
	}
	bare, _ := json.Marshal(rec.State)
	res = mustVerifyIMA(t, b, bare, 36, nil, m.quote(t, 36, 7))
	if len(res.Failures) != 0 || res.Entries != 36 {
		t.Fatalf("from a bare state: %+v", res.Failures)
	}
}

func TestVerifyIMAFailures(t *testing.T) {
	m := loadIMAMachine(t, "hahuri")
	b := &AttestBackend{}
	// PCR 10 extended beyond what the list records.
	q := m.quote(t, 10, 1)
	q.Opaque.(*attest.VerifiedQuote).Verified[ima.SHA256][10] = make([]byte, 32)
	res := mustVerifyIMA(t, b, nil, 0, m.entries[:10], q)
	if !slices.Equal(codes(res.Failures), []string{ReasonIMAPCRMismatch}) {
		t.Errorf("wrong PCR 10: %+v", res.Failures)
	}
	// A boot_aggregate that does not match the boot PCRs.
	q = m.quote(t, 10, 1)
	q.Opaque.(*attest.VerifiedQuote).Verified[ima.SHA256][0] = make([]byte, 32)
	res = mustVerifyIMA(t, b, nil, 0, m.entries[:10], q)
	if !slices.Equal(codes(res.Failures), []string{ReasonIMABootAggregate}) {
		t.Errorf("wrong PCR 0: %+v", res.Failures)
	}
	// No forward progress: the quote stays at 10 entries while 20 are listed.
	res = mustVerifyIMA(t, b, nil, 0, m.entries[:20], m.quote(t, 10, 1))
	for round := 0; round < 5 && len(res.Failures) == 0; round++ {
		res = mustVerifyIMA(t, b, res.State, 10, m.entries[10:20], m.quote(t, 10, 1))
	}
	if !slices.Equal(codes(res.Failures), []string{ReasonIMANoProgress}) {
		t.Errorf("stalled quotes: %+v", res.Failures)
	}
	// Entries that do not parse.
	res, err := b.VerifyIMA(nil, 0, []byte("not a list"), m.quote(t, 10, 1))
	if err != nil || !slices.Equal(codes(res.Failures), []string{ReasonIMAInvalid}) {
		t.Errorf("garbage: %+v, %v", res, err)
	}
}

// allowlistFile writes an allowlist of every file digest of entries
// except those of skip.
func allowlistFile(t *testing.T, entries []ima.Entry, skip int) string {
	t.Helper()
	var sb strings.Builder
	for i := range entries {
		f, err := entries[i].Fields()
		if err != nil || i == skip || entries[i].IsViolation() {
			continue
		}
		fmt.Fprintf(&sb, "%s:%x  %s\n", f.DigestAlgorithm, f.Digest, f.Name)
	}
	path := t.TempDir() + "/allow.txt"
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerifyIMAPolicy(t *testing.T) {
	m := loadIMAMachine(t, "hahuri")
	allow := allowlistFile(t, m.entries[:36], 7)
	f7, _ := m.entries[7].Fields()
	digest7 := fmt.Sprintf("%s:%x", f7.DigestAlgorithm, f7.Digest)

	pol, err := IMAPolicyConfig{Allowlists: []string{allow}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	b := &AttestBackend{IMA: IMAOptions{Policy: pol}}
	res := mustVerifyIMA(t, b, nil, 0, m.entries[:36], m.quote(t, 36, 1))
	if len(res.Failures) != 1 {
		t.Fatalf("enforce: failures %+v", res.Failures)
	}
	r := res.Failures[0]
	if r.Code != ReasonIMAFileNotAllowed || r.File != string(f7.Name) || r.Digest != digest7 || r.Rule != "allowlist" ||
		r.Event == nil || *r.Event != 7 || !strings.Contains(r.Message, string(f7.Name)) || !strings.Contains(r.Message, digest7) {
		t.Errorf("enforce: reason %+v", r)
	}
	if want := "is not accepted by rule allowlist (enforce): digest is not in the allowlist"; !strings.HasSuffix(r.Message, want) {
		t.Errorf("enforce: message %q does not end with %q", r.Message, want)
	}
	if res.Report.Policy != "on" || res.Report.Checked != 36 || res.Report.Accepted != 35 {
		t.Errorf("enforce: report %+v", res.Report)
	}

	// The same file under a warn rule is reported, not fatal.
	pol, err = IMAPolicyConfig{Allowlists: []string{allow}, Action: "warn"}.Load()
	if err != nil {
		t.Fatal(err)
	}
	b = &AttestBackend{IMA: IMAOptions{Policy: pol}}
	res = mustVerifyIMA(t, b, nil, 0, m.entries[:36], m.quote(t, 36, 1))
	if len(res.Failures) != 0 || len(res.Report.Warnings) != 1 || res.Report.Warnings[0].File != string(f7.Name) {
		t.Errorf("warn: failures %+v, warnings %+v", res.Failures, res.Report.Warnings)
	}

	// Excluded, the file is not judged.
	pol, err = IMAPolicyConfig{Allowlists: []string{allow}, Exclude: []string{string(f7.Name)}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	b = &AttestBackend{IMA: IMAOptions{Policy: pol}}
	res = mustVerifyIMA(t, b, nil, 0, m.entries[:36], m.quote(t, 36, 1))
	if len(res.Failures) != 0 || res.Report.Excluded != 1 {
		t.Errorf("excluded: failures %+v, report %+v", res.Failures, res.Report)
	}

	if _, err := (IMAPolicyConfig{Exclude: []string{"/var/log/"}}).Load(); err == nil {
		t.Error("exclusions without an allowlist were accepted")
	}
	if _, err := (IMAPolicyConfig{Allowlists: []string{allow}, Action: "block"}).Load(); err == nil {
		t.Error("action block was accepted")
	}
}

// TestVerifyIMAViolations uses a real list with violations: each
// configured action applies.
func TestVerifyIMAViolations(t *testing.T) {
	m := loadIMAMachine(t, "h12ssl")
	const n = 1626 // entry 1625 is the list's first violation
	for _, tc := range []struct {
		cfg      IMAPolicyConfig
		failures []string
		warnings int
	}{
		{IMAPolicyConfig{}, nil, 0},
		{IMAPolicyConfig{Violations: "enforce"}, []string{ReasonIMAViolation}, 0},
		{IMAPolicyConfig{Violations: "warn"}, nil, 1},
	} {
		pol, err := tc.cfg.Load()
		if err != nil {
			t.Fatal(err)
		}
		b := &AttestBackend{IMA: IMAOptions{Policy: pol}}
		res := mustVerifyIMA(t, b, nil, 0, m.entries[:n], m.quote(t, n, 1))
		if !slices.Equal(codes(res.Failures), tc.failures) || len(res.Report.Warnings) != tc.warnings || res.Report.Violations != 1 {
			t.Errorf("%+v: failures %+v, report %+v", tc.cfg, res.Failures, res.Report)
		}
		if len(res.Failures) > 0 && (res.Failures[0].Event == nil || *res.Failures[0].Event != 1625) {
			t.Errorf("violation reason %+v does not name entry 1625", res.Failures[0])
		}
	}
}

// TestIMAJoinsSelection checks that PCR 10 joins the quotes of a machine
// whose agent sends an IMA list although the configured PCRs lack it.
func TestIMAJoinsSelection(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true}) // PCRs without 10
	stateDir := t.TempDir()
	dev, err := agent.NewDeviceTPM(simulator(t), stateDir)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(stateDir, "eventlog.bin")
	if err := os.WriteFile(logPath, readTestLog(t), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Server: h.http.URL, Name: "joins", StateDir: stateDir, EventLogPath: logPath,
		IMAPath: "../ima/testdata/hahuri.ima.bin", TPM: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch := h.challenge(t, "joins")
	if slices.Contains(ch.PCRs, 10) {
		t.Fatalf("first challenge quotes PCR 10: %v", ch.PCRs)
	}
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	if ev.IMA == nil || ev.IMA.Missing != "" || len(ev.IMA.Entries) == 0 {
		t.Fatalf("agent sent no IMA entries: %+v", ev.IMA)
	}
	if _, _, err := h.send("joins", ev); err != nil {
		t.Fatal(err)
	}
	if ch := h.challenge(t, "joins"); !slices.Contains(ch.PCRs, 10) {
		t.Errorf("challenge after IMA evidence quotes %v, want PCR 10 among them", ch.PCRs)
	}
}

// TestVerifyIMABundleAllowlist feeds a bundle's ima-file digests to the
// allowlist: every file of the list but one is in the bundle.
func TestVerifyIMABundleAllowlist(t *testing.T) {
	m := loadIMAMachine(t, "hahuri")
	comp := bundle.Component{Name: "hahuri files", Kind: bundle.KindIMAFile, Source: "ima/testdata/hahuri.ima.bin"}
	for i := 1; i < 36; i++ {
		f, err := m.entries[i].Fields()
		if err != nil {
			t.Fatal(err)
		}
		if i != 7 {
			comp.Values = append(comp.Values, bundle.Value{PCR: 10, Data: string(f.Name),
				Digests: map[bundle.Bank]bundle.Digest{bundle.Bank(f.DigestAlgorithm): f.Digest}})
		}
	}
	b := &bundle.Bundle{Schema: bundle.SchemaV1, Publisher: "test", Product: "hahuri", Version: "1",
		NotBefore: time.Unix(0, 0).UTC(), NotAfter: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), Components: []bundle.Component{comp}}
	raw, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := bundle.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := IMAPolicyConfig{Bundles: []*bundle.Bundle{parsed}, MatchName: true}.Load()
	if err != nil {
		t.Fatal(err)
	}
	res := mustVerifyIMA(t, &AttestBackend{IMA: IMAOptions{Policy: pol}}, nil, 0, m.entries[:36], m.quote(t, 36, 1))
	if len(res.Failures) != 1 || res.Failures[0].Event == nil || *res.Failures[0].Event != 7 || res.Report.Accepted != 35 {
		t.Errorf("failures %+v, report %+v; want entry 7 alone rejected", res.Failures, res.Report)
	}
}

// TestVerifyIMASHA1Digests uses a real list measured with ima_hash=sha1:
// its allowlisted files fail unless SHA-1 is accepted explicitly.
func TestVerifyIMASHA1Digests(t *testing.T) {
	m := loadIMAMachine(t, "h12ssl")
	const n = 200
	allow := allowlistFile(t, m.entries[:n], -1)

	for _, tc := range []struct {
		allowSHA1 bool
		wantFail  bool
	}{
		{allowSHA1: false, wantFail: true},
		{allowSHA1: true, wantFail: false},
	} {
		pol, err := IMAPolicyConfig{Allowlists: []string{allow}, InsecureAllowSHA1: tc.allowSHA1}.Load()
		if err != nil {
			t.Fatal(err)
		}
		b := &AttestBackend{IMA: IMAOptions{Policy: pol}}
		res := mustVerifyIMA(t, b, nil, 0, m.entries[:n], m.quote(t, n, 1))

		if got := len(res.Failures) > 0; got != tc.wantFail {
			t.Errorf("InsecureAllowSHA1 %v: failures %+v", tc.allowSHA1, res.Failures)
		}
		if tc.wantFail && len(res.Failures) > 0 && !strings.Contains(res.Failures[0].Message, "sha1") {
			t.Errorf("failure %q does not name the sha1 algorithm", res.Failures[0].Message)
		}
	}
}
