package ima

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadEntries parses a list from testdata; lists cut inside their last
// entry keep their complete entries.
func loadEntries(t testing.TB, name string) []Entry {
	t.Helper()
	entries, _, err := Parse(readTestdata(t, name), ParseOptions{})
	if err != nil && !errors.Is(err, ErrTruncated) {
		t.Fatalf("%s: %v", name, err)
	}
	return entries
}

func testPCRs(t *testing.T, name string) PCRValues {
	t.Helper()
	return readPCRJSON(t, filepath.Join("testdata", name))
}

// merge returns the union of PCR value sets.
func merge(sets ...PCRValues) PCRValues {
	out := PCRValues{}
	for _, s := range sets {
		for alg, pcrs := range s {
			if out[alg] == nil {
				out[alg] = map[int][]byte{}
			}
			for i, v := range pcrs {
				out[alg][i] = v
			}
		}
	}
	return out
}

// encodeFields builds ima-ng style template data (length-prefixed fields).
func encodeFields(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

func digestField(alg string, d []byte) []byte {
	return append(append([]byte(alg+":"), 0), d...)
}

// withFields rebuilds an ima-ng or ima-sig entry with changed fields and a
// matching SHA-1 template hash, the way the kernel would have logged it.
func withFields(t *testing.T, e Entry, change func(f *Fields)) Entry {
	t.Helper()
	f, err := e.Fields()
	if err != nil {
		t.Fatal(err)
	}
	f.Digest = slices.Clone(f.Digest)
	change(&f)
	name := append(slices.Clone(f.Name), 0)
	switch e.TemplateName {
	case TemplateIMANG:
		e.TemplateData = encodeFields(digestField(f.DigestAlgorithm, f.Digest), name)
	case TemplateIMASig:
		e.TemplateData = encodeFields(digestField(f.DigestAlgorithm, f.Digest), name, f.Signature)
	default:
		t.Fatalf("withFields: template %s", e.TemplateName)
	}
	h := sha1.Sum(e.TemplateData)
	e.TemplateHash = h[:]
	return e
}

func reindex(entries []Entry, first int) []Entry {
	out := slices.Clone(entries)
	for i := range out {
		out[i].Index = first + i
	}
	return out
}

func TestParseBinaryTemplates(t *testing.T) {
	tests := []struct {
		file     string
		template string
		entries  int
		hashSize int
	}{
		{"hahuri.ima.bin", TemplateIMANG, 37, 20},
		{"sml-ima-sha1.bin", TemplateIMA, 12, 20},
		{"sml-ima-ng-sha1.bin", TemplateIMANG, 6, 20},
		{"sml-ima-sig-sha256.bin", TemplateIMASig, 9, 20},
		{"ovmf-shim-sbms.ima.bin", TemplateIMASig, 2, 20},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			entries := loadEntries(t, tt.file)
			if len(entries) != tt.entries {
				t.Fatalf("got %d entries, want %d", len(entries), tt.entries)
			}
			if entries[0].TemplateName != tt.template {
				t.Errorf("template = %q, want %q", entries[0].TemplateName, tt.template)
			}
			for i := range entries {
				e := &entries[i]
				wantPCR := uint32(10)
				if tt.file == "hahuri.ima.bin" && i == 36 {
					wantPCR = 11 // a policy rule measures an SSH key into PCR 11
				}
				if e.Index != i || e.PCR != wantPCR || len(e.TemplateHash) != tt.hashSize {
					t.Errorf("entry %d: index %d PCR %d hash size %d", i, e.Index, e.PCR, len(e.TemplateHash))
				}
				if err := e.CheckTemplateHash(); err != nil {
					t.Error(err)
				}
				f, err := e.Fields()
				if err != nil {
					t.Fatal(err)
				}
				if len(f.Name) == 0 || len(f.Digest) == 0 {
					t.Errorf("entry %d: empty name or digest", i)
				}
			}
		})
	}
}

func TestParseBinaryTruncated(t *testing.T) {
	data := readTestdata(t, "sml-ima-sig-sha256.bin")
	entries, err := ParseBinary(data, ParseOptions{})
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if len(entries) != 9 {
		t.Errorf("got %d complete entries, want 9", len(entries))
	}
	if !strings.Contains(err.Error(), "entry 9 at byte 987") {
		t.Errorf("error %q does not name the entry and offset", err)
	}
}

func TestParseIMABufFields(t *testing.T) {
	entries := loadEntries(t, "hahuri.ima.bin")
	var bufs int
	for i := range entries {
		if entries[i].TemplateName != TemplateIMABuf {
			continue
		}
		bufs++
		f, err := entries[i].Fields()
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Buffer) == 0 {
			t.Errorf("entry %d (%s): empty buffer", i, f.Name)
		}
		if got := sum(SHA256, f.Buffer); f.DigestAlgorithm == "sha256" && !bytes.Equal(got.bytes(), f.Digest) {
			t.Errorf("entry %d: buffer hashes to %x, digest is %x", i, got.bytes(), f.Digest)
		}
	}
	if bufs == 0 {
		t.Fatal("no ima-buf entries in hahuri.ima.bin")
	}
}

func TestASCIIMatchesBinary(t *testing.T) {
	bin := loadEntries(t, "ovmf-shim-sbms.ima.bin")
	asc := loadEntries(t, "ovmf-shim-sbms.ima.ascii")
	if len(bin) != len(asc) {
		t.Fatalf("binary has %d entries, ascii %d", len(bin), len(asc))
	}
	for i := range bin {
		if !bytes.Equal(bin[i].TemplateData, asc[i].TemplateData) {
			t.Errorf("entry %d: ascii template data differs from binary", i)
		}
		if !bytes.Equal(bin[i].TemplateHash, asc[i].TemplateHash) {
			t.Errorf("entry %d: template hash differs", i)
		}
	}
}

// TestASCIIRoundTrip prints real binary entries, including violations,
// ima-buf and the legacy ima template, as ascii and parses them back.
func TestASCIIRoundTrip(t *testing.T) {
	for _, file := range []string{"h12ssl.ima.bin", "hahuri.ima.bin", "sml-ima-sha1.bin", "sml-ima-sig-sha256.bin"} {
		t.Run(file, func(t *testing.T) {
			entries := loadEntries(t, file)
			var text []byte
			for i := range entries {
				var err error
				if text, err = AppendASCII(text, &entries[i]); err != nil {
					t.Fatal(err)
				}
			}
			back, err := ParseASCII(text, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != len(entries) {
				t.Fatalf("got %d entries back, want %d", len(back), len(entries))
			}
			for i := range entries {
				if !bytes.Equal(back[i].TemplateData, entries[i].TemplateData) || !bytes.Equal(back[i].TemplateHash, entries[i].TemplateHash) {
					t.Fatalf("entry %d differs after the ascii round trip", i)
				}
			}
			var bin []byte
			for i := range back {
				bin = AppendBinary(bin, &back[i])
			}
			if want := readTestdata(t, file); !bytes.HasPrefix(want, bin) {
				t.Error("binary re-encoding differs from the original list")
			}
		})
	}
}

// TestNamesWithSpacesAndUTF8 checks names with UTF-8 and with spaces. The
// kernel logs spaces as underscores, but the parsers keep any byte they
// are given, so lists from other producers keep their names too.
func TestNamesWithSpacesAndUTF8(t *testing.T) {
	base := loadEntries(t, "hahuri.ima.bin")[1]
	sig := loadEntries(t, "sml-ima-sig-sha256.bin")[1]
	names := []string{"/usr/lib/my file.so", "/home/jürgen/bin/naïve tool ✓", "/tmp/trailing space ", "/tmp/  two  spaces"}
	for _, name := range names {
		for _, orig := range []Entry{base, sig} {
			e := withFields(t, orig, func(f *Fields) { f.Name = []byte(name) })
			line, err := AppendASCII(nil, &e)
			if err != nil {
				t.Fatal(err)
			}
			for _, format := range []Format{FormatASCII, FormatBinary} {
				data := line
				if format == FormatBinary {
					data = AppendBinary(nil, &e)
				}
				got, _, err := Parse(data, ParseOptions{})
				if err != nil {
					t.Fatalf("%s %q: %v", format, name, err)
				}
				f, err := got[0].Fields()
				if err != nil {
					t.Fatal(err)
				}
				if string(f.Name) != name {
					t.Errorf("%s %s: name = %q, want %q", format, e.TemplateName, f.Name, name)
				}
				if err := got[0].CheckTemplateHash(); err != nil {
					t.Errorf("%s %q: %v", format, name, err)
				}
			}
		}
	}
}

func TestReplayCorpusCopies(t *testing.T) {
	tests := []struct{ list, pcrs string }{
		{"hahuri.ima.bin", "hahuri.ima.pcrs.json"},
		{"h12ssl.ima.bin", "h12ssl.ima.pcrs.json"},
		{"ovmf-shim-sbms.ima.bin", "ovmf-shim-sbms.pcrs.json"},
		{"ovmf-shim-sbms.ima.ascii", "ovmf-shim-sbms.pcrs.json"},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			entries := loadEntries(t, tt.list)
			want := testPCRs(t, tt.pcrs)
			expected := PCRValues{SHA1: {10: want[SHA1][10]}, SHA256: {10: want[SHA256][10]}}
			r, err := ReplayEntries(entries, []Algorithm{SHA1, SHA256, SHA384})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range r.Compare(expected) {
				if m.Scheme != PerBankHash {
					t.Errorf("%s PCR 10: scheme %s, want %s (replayed %x, want %x)", m.Algorithm, m.Scheme, PerBankHash, m.Replayed[PerBankHash], m.Expected)
				}
			}
		})
	}
}

func TestReplayViolations(t *testing.T) {
	entries := loadEntries(t, "h12ssl.ima.bin")
	r, err := ReplayEntries(entries, []Algorithm{SHA1, SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Violations) != 9 {
		t.Fatalf("got %d violations, want 9", len(r.Violations))
	}
	if len(r.TemplateHashErrors) != 0 {
		t.Errorf("violations reported as template hash errors: %v", r.TemplateHashErrors)
	}
	// Replaying a violation like a measurement (hashing its data) must
	// not reproduce the TPM value.
	want := testPCRs(t, "h12ssl.ima.pcrs.json")
	changed := slices.Clone(entries)
	v := r.Violations[0]
	h := sha1.Sum(changed[v].TemplateData)
	changed[v].TemplateHash = h[:]
	r2, err := ReplayEntries(changed, []Algorithm{SHA1})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(r2.PCRs[PerBankHash][SHA1][10], want[SHA1][10]) {
		t.Error("replay matches although a violation was extended as a measurement")
	}
	// Policy reports violations and never accepts them.
	p := &Policy{Rules: []Rule{{Name: "all", Allowlist: allowAll(t, entries), AllowSHA1: true}}, Violations: Warn}
	rep := p.Check(entries)
	var got []int
	for _, vd := range rep.Verdicts {
		if vd.Outcome == Violation {
			got = append(got, vd.Entry)
		}
	}
	if !slices.Equal(got, r.Violations) {
		t.Errorf("policy violation verdicts %v, want %v", got, r.Violations)
	}
	if rep.Failed() {
		t.Error("violations with the Warn action failed the report")
	}
	if rep.Accepted != len(entries)-len(r.Violations) {
		t.Errorf("accepted %d, want %d", rep.Accepted, len(entries)-len(r.Violations))
	}
}

// paddedReplay computes the PCR value older kernels produce in a non-SHA1
// bank: each SHA-1 template hash (all ones for violations) zero-padded.
func paddedReplay(t *testing.T, entries []Entry, alg Algorithm) []byte {
	t.Helper()
	ch, _ := alg.Hash()
	h := ch.New()
	pcr := make([]byte, alg.Size())
	for i := range entries {
		d := make([]byte, alg.Size())
		if entries[i].IsViolation() {
			copy(d, bytes.Repeat([]byte{0xff}, 20))
		} else {
			copy(d, entries[i].TemplateHash)
		}
		h.Reset()
		h.Write(pcr)
		h.Write(d)
		pcr = h.Sum(nil)
	}
	return pcr
}

func TestVerifyExtendSchemes(t *testing.T) {
	entries := loadEntries(t, "h12ssl.ima.bin")
	boot := testPCRs(t, "h12ssl.boot.pcrs.json")
	ima := testPCRs(t, "h12ssl.ima.pcrs.json")

	t.Run("per-bank", func(t *testing.T) {
		res, err := Verify(nil, Round{Entries: entries, Quoted: merge(boot, ima)}, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Schemes[SHA256] != PerBankHash || res.Schemes[SHA1] != PerBankHash {
			t.Errorf("schemes = %v, want per-bank-hash", res.Schemes)
		}
		if len(res.Verified) != len(entries) || res.Pending != 0 {
			t.Errorf("verified %d, pending %d", len(res.Verified), res.Pending)
		}
		if len(res.Violations) != 9 || res.State.Violations != 9 {
			t.Errorf("violations %d (state %d), want 9", len(res.Violations), res.State.Violations)
		}
		if res.BootAggregate == nil || res.BootAggregate.Algorithm != SHA1 {
			t.Errorf("boot aggregate = %+v, want a sha1 aggregate", res.BootAggregate)
		}
	})
	t.Run("padded", func(t *testing.T) {
		quoted := merge(boot, PCRValues{SHA1: {10: ima[SHA1][10]}, SHA256: {10: paddedReplay(t, entries, SHA256)}})
		res, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Schemes[SHA256] != PaddedSHA1 {
			t.Errorf("sha256 scheme = %s, want padded-sha1", res.Schemes[SHA256])
		}
	})
	t.Run("neither", func(t *testing.T) {
		quoted := merge(boot, PCRValues{SHA256: {10: bytes.Repeat([]byte{1}, 32)}})
		_, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{})
		var ve *VerificationError
		if !errors.As(err, &ve) || ve.Reason != ReasonPCRMismatch {
			t.Fatalf("err = %v, want %s", err, ReasonPCRMismatch)
		}
		if !strings.Contains(ve.Detail, "per-bank-hash") || !strings.Contains(ve.Detail, "padded-sha1") {
			t.Errorf("detail %q does not show both schemes", ve.Detail)
		}
	})
}

// extraEntries returns real entries from another machine, renumbered to
// follow n entries, to stand for measurements logged after a quote.
func extraEntries(t *testing.T, n, count int) []Entry {
	return reindex(loadEntries(t, "h12ssl.ima.bin")[1:1+count], n)
}

// hahuriRound returns the first 36 entries of hahuri.ima.bin, which all
// extend PCR 10, and the machine's PCRs: the recorded PCR 10 covers them.
// The 37th entry extends PCR 11, which other software shares on that
// machine; TestVerifyOtherPCRs covers it.
func hahuriRound(t *testing.T) (entries []Entry, quoted PCRValues) {
	entries = loadEntries(t, "hahuri.ima.bin")[:36]
	return entries, merge(testPCRs(t, "hahuri.boot.pcrs.json"), testPCRs(t, "hahuri.ima.pcrs.json"))
}

func TestVerifyQuoteBeforeBootAggregate(t *testing.T) {
	entries, quoted := hahuriRound(t)
	quoted[SHA1][10] = make([]byte, 20)
	quoted[SHA256][10] = make([]byte, 32)
	_, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{})
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.Reason != ReasonPCRMismatch || !strings.Contains(ve.Detail, "not even the boot_aggregate") {
		t.Fatalf("err = %v, want %s naming the boot_aggregate", err, ReasonPCRMismatch)
	}
}

func TestVerifyLogAheadOfQuote(t *testing.T) {
	entries, quoted := hahuriRound(t)
	ahead := append(slices.Clone(entries), extraEntries(t, len(entries), 5)...)
	res, err := Verify(nil, Round{Entries: ahead, Quoted: quoted}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Verified) != 36 || res.Pending != 5 || res.State.Entries != 36 || res.State.Pending != 5 {
		t.Fatalf("verified %d, pending %d, state %d/%d; want 36 and 5", len(res.Verified), res.Pending, res.State.Entries, res.State.Pending)
	}
	// The next round sends from the verified count; a quote that now
	// covers the pending entries verifies them.
	later := ahead[36:]
	r2, err := ReplayEntries(ahead, []Algorithm{SHA1, SHA256})
	if err != nil {
		t.Fatal(err)
	}
	quoted2 := merge(quoted, r2.PCRs[PerBankHash])
	res2, err := Verify(res.State, Round{Offset: 36, Entries: later, Quoted: quoted2}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Verified) != 5 || res2.Verified[0].Index != 36 || res2.Pending != 0 || res2.State.Entries != 41 {
		t.Errorf("second round verified %d from %d, pending %d, state %d", len(res2.Verified), res2.Verified[0].Index, res2.Pending, res2.State.Entries)
	}
}

func TestVerifyNoForwardProgress(t *testing.T) {
	entries, quoted := hahuriRound(t)
	ahead := append(slices.Clone(entries), extraEntries(t, len(entries), 3)...)
	res, err := Verify(nil, Round{Entries: ahead, Quoted: quoted}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state := res.State
	for round := 1; round <= 3; round++ {
		res, err = Verify(state, Round{Offset: state.Entries, Entries: ahead[state.Entries:], Quoted: quoted}, VerifyOptions{})
		if round < 3 {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if res.State.StalledRounds != round {
				t.Errorf("round %d: stalled rounds = %d", round, res.State.StalledRounds)
			}
			state = res.State
			continue
		}
		var ve *VerificationError
		if !errors.As(err, &ve) || ve.Reason != ReasonNoProgress {
			t.Fatalf("round %d: err = %v, want %s", round, err, ReasonNoProgress)
		}
	}
	// A machine with no pending entries is idle, not stalled.
	res, err = Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 5; round++ {
		res, err = Verify(res.State, Round{Offset: 36, Quoted: quoted}, VerifyOptions{})
		if err != nil {
			t.Fatalf("idle round %d: %v", round, err)
		}
	}
}

func TestVerifyResentFullLog(t *testing.T) {
	entries, quoted := hahuriRound(t)
	res, err := Verify(nil, Round{Entries: entries[:20], Quoted: mustReplay(t, entries[:20], quoted)}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res2, err := Verify(res.State, Round{Offset: 0, Entries: entries, Quoted: quoted}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Restarted || len(res2.Verified) != 16 || res2.Verified[0].Index != 20 || res2.State.Entries != 36 {
		t.Errorf("resend verified %d entries, state %d", len(res2.Verified), res2.State.Entries)
	}
	// The same state reached incrementally and by a full resend agrees.
	res3, err := Verify(res.State, Round{Offset: 20, Entries: entries[20:], Quoted: quoted}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(res2.State)
	b, _ := json.Marshal(res3.State)
	if !bytes.Equal(a, b) {
		t.Errorf("states differ:\n%s\n%s", a, b)
	}
}

// mustReplay returns quoted with PCR 10 replaced by the replay of entries.
func mustReplay(t *testing.T, entries []Entry, quoted PCRValues) PCRValues {
	t.Helper()
	r, err := ReplayEntries(entries, []Algorithm{SHA1, SHA256})
	if err != nil {
		t.Fatal(err)
	}
	return merge(quoted, r.PCRs[PerBankHash])
}

func TestVerifyHistoryChanged(t *testing.T) {
	entries, quoted := hahuriRound(t)
	res, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state := res.State
	// Round-trip the state through JSON, as a verifier stores it.
	raw, err := json.Marshal(state)
	if err != nil {
		t.Fatal(err)
	}
	var stored State
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}

	changedName := slices.Clone(entries)
	changedName[5] = withFields(t, entries[5], func(f *Fields) { f.Name = append(slices.Clone(f.Name), 'x') })
	changedPCR := slices.Clone(entries)
	changedPCR[3].PCR = 11
	shorter := entries[:30]
	for name, resent := range map[string][]Entry{"name": changedName, "pcr": changedPCR, "shorter": shorter} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(&stored, Round{Entries: resent, Quoted: quoted}, VerifyOptions{})
			var ve *VerificationError
			if !errors.As(err, &ve) || ve.Reason != ReasonHistoryChanged {
				t.Fatalf("err = %v, want %s", err, ReasonHistoryChanged)
			}
			if !strings.Contains(err.Error(), "IMA log history changed within one boot") {
				t.Errorf("error %q lacks the history message", err)
			}
		})
	}
	t.Run("reboot", func(t *testing.T) {
		res, err := Verify(&stored, Round{ResetCount: stored.ResetCount + 1, Entries: entries, Quoted: quoted}, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Restarted || len(res.Verified) != 36 {
			t.Errorf("reboot: restarted %v, verified %d", res.Restarted, len(res.Verified))
		}
		_, err = Verify(&stored, Round{ResetCount: stored.ResetCount + 1, Offset: 36, Quoted: quoted}, VerifyOptions{})
		if err == nil || IsVerificationError(err) {
			t.Errorf("reboot with an offset: err = %v, want an operational error", err)
		}
	})
	t.Run("gap", func(t *testing.T) {
		_, err := Verify(&stored, Round{Offset: 40, Entries: extraEntries(t, 40, 2), Quoted: quoted}, VerifyOptions{})
		if err == nil || IsVerificationError(err) || !strings.Contains(err.Error(), "send the list from offset 36") {
			t.Errorf("err = %v, want an operational error naming offset 36", err)
		}
	})
}

func TestVerifyOtherPCRs(t *testing.T) {
	// The real list ends with an entry that extends PCR 11.
	entries := loadEntries(t, "hahuri.ima.bin")
	boot := testPCRs(t, "hahuri.boot.pcrs.json")
	ima := testPCRs(t, "hahuri.ima.pcrs.json")
	if entries[36].PCR != 11 {
		t.Fatalf("entry 36 extends PCR %d, want 11", entries[36].PCR)
	}

	// On that machine PCR 11 also holds boot measurements, so IMA's entry
	// alone does not explain the TPM value: the entry stays pending.
	res, err := Verify(nil, Round{Entries: entries, Quoted: merge(boot, ima)}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Verified) != 36 || res.Pending != 1 {
		t.Errorf("with the machine's PCR 11: verified %d, pending %d; want 36 and 1", len(res.Verified), res.Pending)
	}

	// With PCR 11 holding only IMA's extend, all entries verify and the
	// state tracks PCR 11 too.
	r, err := ReplayEntries(entries, []Algorithm{SHA1, SHA256})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Compare(ima) {
		if m.Scheme != PerBankHash {
			t.Errorf("%s PCR 10 does not match with the PCR 11 entry in the list", m.Algorithm)
		}
	}
	imaOnly := merge(boot, r.PCRs[PerBankHash])
	res, err = Verify(nil, Round{Entries: entries, Quoted: imaOnly}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Verified) != 37 || len(res.State.Banks[0].PCRs) != 2 {
		t.Errorf("verified %d, state PCRs %v", len(res.Verified), res.State.Banks[0].PCRs)
	}

	// A quote without PCR 11 cannot verify the PCR 11 entry.
	noPCR11 := merge(boot, ima)
	for _, bank := range noPCR11 {
		delete(bank, 11)
	}
	_, err = Verify(nil, Round{Entries: entries, Quoted: noPCR11}, VerifyOptions{})
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.Reason != ReasonPCRNotQuoted {
		t.Errorf("err = %v, want %s", err, ReasonPCRNotQuoted)
	}
}

func TestVerifyTemplateHashMismatch(t *testing.T) {
	entries, quoted := hahuriRound(t)
	bad := slices.Clone(entries)
	bad[7].TemplateData = slices.Clone(bad[7].TemplateData)
	bad[7].TemplateData[len(bad[7].TemplateData)-2] ^= 1
	_, err := Verify(nil, Round{Entries: bad, Quoted: quoted}, VerifyOptions{})
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.Reason != ReasonTemplateHash || ve.Entry != 7 {
		t.Fatalf("err = %v, want %s at entry 7", err, ReasonTemplateHash)
	}
}

func TestBootAggregate(t *testing.T) {
	t.Run("sha256 over PCRs 0-9", func(t *testing.T) {
		e := loadEntries(t, "ovmf-shim-sbms.ima.bin")[0]
		ba, err := CheckBootAggregate(&e, testPCRs(t, "ovmf-shim-sbms.pcrs.json"))
		if err != nil {
			t.Fatal(err)
		}
		if ba.Algorithm != SHA256 || len(ba.PCRs) != 10 {
			t.Errorf("aggregate over %s PCRs %v, want sha256 PCRs 0-9", ba.Algorithm, ba.PCRs)
		}
	})
	t.Run("sha1 over PCRs 0-7", func(t *testing.T) {
		e := loadEntries(t, "h12ssl.ima.bin")[0]
		ba, err := CheckBootAggregate(&e, testPCRs(t, "h12ssl.boot.pcrs.json"))
		if err != nil {
			t.Fatal(err)
		}
		if ba.Algorithm != SHA1 || len(ba.PCRs) != 8 {
			t.Errorf("aggregate over %s PCRs %v, want sha1 PCRs 0-7", ba.Algorithm, ba.PCRs)
		}
	})
	t.Run("changed PCR 9", func(t *testing.T) {
		e := loadEntries(t, "ovmf-shim-sbms.ima.bin")[0]
		pcrs := testPCRs(t, "ovmf-shim-sbms.pcrs.json")
		pcrs[SHA256][9] = make([]byte, 32)
		_, err := CheckBootAggregate(&e, pcrs)
		var ve *VerificationError
		if !errors.As(err, &ve) || ve.Reason != ReasonBootAggregate {
			t.Fatalf("err = %v, want %s", err, ReasonBootAggregate)
		}
	})
	t.Run("missing PCR", func(t *testing.T) {
		e := loadEntries(t, "ovmf-shim-sbms.ima.bin")[0]
		pcrs := testPCRs(t, "ovmf-shim-sbms.pcrs.json")
		delete(pcrs[SHA256], 8)
		_, err := CheckBootAggregate(&e, pcrs)
		if err == nil || IsVerificationError(err) || !strings.Contains(err.Error(), "PCR 8") {
			t.Errorf("err = %v, want an operational error naming PCR 8", err)
		}
	})
	t.Run("all zeros with a TPM", func(t *testing.T) {
		e := loadEntries(t, "keylime.ascii")[0]
		_, err := CheckBootAggregate(&e, testPCRs(t, "h12ssl.boot.pcrs.json"))
		var ve *VerificationError
		if !errors.As(err, &ve) || ve.Reason != ReasonBootAggregateZero {
			t.Fatalf("err = %v, want %s", err, ReasonBootAggregateZero)
		}
	})
	t.Run("in Verify", func(t *testing.T) {
		entries, quoted := hahuriRound(t)
		quoted[SHA256][0] = make([]byte, 32)
		_, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{})
		var ve *VerificationError
		if !errors.As(err, &ve) || ve.Reason != ReasonBootAggregate {
			t.Fatalf("err = %v, want %s", err, ReasonBootAggregate)
		}
		if _, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{InsecureSkipBootAggregate: true}); err != nil {
			t.Errorf("skipping the boot aggregate: %v", err)
		}
	})
}

func TestStateJSON(t *testing.T) {
	entries, quoted := hahuriRound(t)
	res, err := Verify(nil, Round{Entries: entries[:10], Quoted: mustReplay(t, entries[:10], quoted)}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(res.State)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"entries":10`, `"scheme":"per-bank-hash"`, `"prefix_hash":"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("state JSON lacks %s: %s", want, raw)
		}
	}
	var back State
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(&back, Round{Offset: 10, Entries: entries[10:], Quoted: quoted}, VerifyOptions{}); err != nil {
		t.Fatalf("resuming from the decoded state: %v", err)
	}
	back.PrefixHash[0] ^= 1
	if _, err := Verify(&back, Round{Offset: 10, Entries: entries[10:], Quoted: quoted}, VerifyOptions{}); err == nil {
		t.Error("a corrupt stored state was accepted")
	}
}

// allowAll returns an allowlist of every file digest in entries.
func allowAll(t testing.TB, entries []Entry) *Allowlist {
	a := NewAllowlist()
	for i := range entries {
		if entries[i].IsViolation() {
			continue
		}
		f, err := entries[i].Fields()
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Add(f.DigestAlgorithm, f.Digest, string(f.Name)); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestModsigAndNGv2Templates builds ima-modsig and ima-sigv2 entries from
// the real efivarfs.ko entry of the OVMF boot, as a kernel with those
// templates would log it, and checks both formats keep every field.
func TestModsigAndNGv2Templates(t *testing.T) {
	base := loadEntries(t, "ovmf-shim-sbms.ima.bin")[1]
	f, err := base.Fields()
	if err != nil {
		t.Fatal(err)
	}
	name := append(slices.Clone(f.Name), 0)
	modsig := []byte{0x30, 0x82, 0x01, 0x00, 0xaa, 0xbb} // stands for a PKCS #7 blob
	cases := []struct {
		template string
		data     []byte
	}{
		{TemplateIMAModsig, encodeFields(digestField("sha256", f.Digest), name, nil, digestField("sha256", f.Digest), modsig)},
		{TemplateIMAModsig, encodeFields(digestField("sha256", f.Digest), name, nil, nil, nil)},
		{TemplateIMASigv2, encodeFields(append([]byte("ima:"), digestField("sha256", f.Digest)...), name, []byte{3, 2, 4, 1, 2, 3, 4, 0, 0})},
		{TemplateIMANGv2, encodeFields(append([]byte("verity:"), digestField("sha256", f.Digest)...), name)},
	}
	for i, c := range cases {
		h := sha1.Sum(c.data)
		e := Entry{Index: 1, PCR: 10, TemplateHash: h[:], TemplateName: c.template, TemplateData: c.data}
		line, err := AppendASCII(nil, &e)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		for _, data := range [][]byte{line, AppendBinary(nil, &e)} {
			got, _, err := Parse(data, ParseOptions{FirstIndex: 1})
			if err != nil {
				t.Fatalf("case %d %q: %v", i, line, err)
			}
			if !bytes.Equal(got[0].TemplateData, c.data) {
				t.Errorf("case %d: template data changed in %q", i, line)
			}
			gf, err := got[0].Fields()
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			if string(gf.Name) != "/lib/modules/efivarfs.ko" || !bytes.Equal(gf.Digest, f.Digest) || gf.DigestAlgorithm != "sha256" {
				t.Errorf("case %d: fields %+v", i, gf)
			}
			switch {
			case c.template == TemplateIMAModsig && i == 0:
				if !bytes.Equal(gf.Modsig, modsig) || !bytes.Equal(gf.ModsigDigest, f.Digest) {
					t.Errorf("case %d: modsig %x digest %x", i, gf.Modsig, gf.ModsigDigest)
				}
			case c.template == TemplateIMANGv2:
				if gf.DigestType != "verity" {
					t.Errorf("case %d: digest type %q", i, gf.DigestType)
				}
			}
		}
	}
}

// TestReplayBoundsErrorList: a list whose every entry has a wrong template
// hash keeps MaxReportedErrors errors and counts the rest.
func TestReplayBoundsErrorList(t *testing.T) {
	entries := slices.Clone(loadEntries(t, "h12ssl.ima.bin"))
	damaged := 0
	for i := range entries {
		if entries[i].IsViolation() {
			continue
		}
		entries[i].TemplateHash = bytes.Repeat([]byte{0x01}, len(entries[i].TemplateHash))
		damaged++
	}
	if damaged <= MaxReportedErrors {
		t.Fatalf("only %d entries to damage, need more than %d", damaged, MaxReportedErrors)
	}
	r, err := ReplayEntries(entries, []Algorithm{SHA1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.TemplateHashErrors) != MaxReportedErrors {
		t.Errorf("%d errors listed, want %d", len(r.TemplateHashErrors), MaxReportedErrors)
	}
	if r.TemplateHashErrorCount != damaged {
		t.Errorf("TemplateHashErrorCount = %d, want %d", r.TemplateHashErrorCount, damaged)
	}
}
