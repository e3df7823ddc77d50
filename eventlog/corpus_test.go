package eventlog

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// corpusDir returns the corpus folder named by VOUCH_CORPUS, by default
// ../shared/corpus relative to the repository root, and skips the test
// when it is absent.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("VOUCH_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Skipf("corpus not found at %s (set VOUCH_CORPUS to the folder holding manifest.json): %v", dir, err)
	}
	return dir
}

type corpusRecord struct {
	Path  string `json:"path"`
	Kind  string `json:"kind"`
	Truth *struct {
		File    string `json:"file"`
		Ignored []int  `json:"ignored_pcrs"`
	} `json:"truth"`
}

func corpusLogs(t testing.TB, dir string) []corpusRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Records []corpusRecord `json:"records"`
	}
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	var out []corpusRecord
	for _, r := range man.Records {
		if r.Kind == "tcg" {
			out = append(out, r)
		}
	}
	return out
}

// corpusParseFailures lists the corpus logs that must not parse, with a
// part of the error that names the reason.
var corpusParseFailures = map[string]string{
	// 34 bytes of text, not a log.
	"keylime/binary_bios_measurements-bogus": "event 0 at byte offset 0: malformed event log: event data size 1919248394",
	// The Spec ID event's eventDataSize stops before its vendorInfo.
	"tpm2-tools/specid-vendordata.bin": "vendorInfoSize 4 runs past the end of the 37-byte event data",
}

// verdict is the expected outcome of Verify for a corpus log with truth
// PCR values, with every workaround allowed.
type verdict struct {
	workarounds []Workaround
	// status overrides BankMatch for the listed banks.
	status map[Algorithm]BankStatus
	// mismatch lists the PCRs that must not match, by bank.
	mismatch map[Algorithm][]int
}

// corpusVerdicts holds the logs whose verdict is not "every quoted bank
// matches strictly", from the corpus MANIFEST.md.
var corpusVerdicts = map[string]verdict{
	// Firmware extends the ExitBootServices actions without logging them.
	// The log is SHA-1 format, so the SHA-256 bank cannot be verified.
	"go-attestation/ebs_event_missing_eventlog": {
		workarounds: []Workaround{WorkaroundExitBootServices},
		status:      map[Algorithm]BankStatus{SHA256: BankNotInLog},
	},
	// The TPM has a SHA-384 bank that nothing extended.
	"guard-oss/evidence/ludmilla/ludmilla.eventlog0.bin": {
		status: map[Algorithm]BankStatus{SHA384: BankUnused},
	},
	// Windows capped the SHA-1 bank.
	"guard-oss/evidence/IMN-SUPERMICRO-no-epp/IMN-SUPERMICRO-no-epp.eventlog0.bin": {
		workarounds: []Workaround{WorkaroundWindowsCappedSHA1},
		status:      map[Algorithm]BankStatus{SHA1: BankCapped},
	},
	"guard-oss/evidence/t480s/t480s.eventlog0.bin": {
		workarounds: []Workaround{WorkaroundWindowsCappedSHA1},
		status:      map[Algorithm]BankStatus{SHA1: BankCapped},
	},
	// Deliberately altered copy of HIRS/TpmLog.bin.
	"HIRS/TPMLog_Altered.bin": {
		mismatch: map[Algorithm][]int{SHA256: {0, 1}},
	},
	// PCR 0 holds an unlogged measurement (unexplained upstream).
	"guard-oss/evidence/dl160-fwupd-report/dl160-fwupd-report.eventlog0.bin": {
		mismatch: map[Algorithm][]int{SHA1: {0}, SHA256: {0}},
	},
	// PCR 11 was extended after the log was taken.
	"guard-oss/evidence/hahuri-invalid-eventlog/hahuri-invalid-eventlog.eventlog0.bin": {
		mismatch: map[Algorithm][]int{SHA1: {11}, SHA256: {11}},
	},
	// Windows logs of earlier boot phases than the quoted PCRs.
	"guard-oss/evidence/dell-notebook-5eventlogs-WBCL/dell-notebook-5eventlogs-WBCL.eventlog0.bin": {
		mismatch: map[Algorithm][]int{SHA256: {12, 13, 14}},
	},
	"guard-oss/evidence/dell-notebook-5eventlogs-WBCL/dell-notebook-5eventlogs-WBCL.eventlog1.bin": {
		mismatch: map[Algorithm][]int{SHA256: {12}},
	},
	"guard-oss/evidence/dell-notebook-5eventlogs-WBCL/dell-notebook-5eventlogs-WBCL.eventlog2.bin": {
		mismatch: map[Algorithm][]int{SHA256: {12}},
	},
	"guard-oss/evidence/dell-notebook-5eventlogs-WBCL/dell-notebook-5eventlogs-WBCL.eventlog3.bin": {
		mismatch: map[Algorithm][]int{SHA256: {12}},
	},
}

// loadTruth reads a truth file and drops the PCRs the manifest lists as
// ignore (PCR 10, extended by IMA, for firmware logs).
func loadTruth(t testing.TB, path string, ignored []int) PCRValues {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseExpectedPCRs(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, bank := range want {
		for _, i := range ignored {
			delete(bank, i)
		}
	}
	return want
}

// TestCorpusLogs walks every TCG log of the corpus named by VOUCH_CORPUS.
func TestCorpusLogs(t *testing.T) {
	testCorpus(t, corpusDir(t))
}

// TestTestdataLogs walks the Apache- and BSD-licensed corpus logs copied
// into testdata, so the verdicts are checked in every clone.
func TestTestdataLogs(t *testing.T) {
	testCorpus(t, filepath.Join("testdata", "corpus"))
}

func testCorpus(t *testing.T, dir string) {
	records := corpusLogs(t, dir)
	var failed int
	var parsed, truths, correct int
	for _, r := range records {
		t.Run(r.Path, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, r.Path))
			if err != nil {
				t.Fatal(err)
			}
			log, err := Parse(raw)
			if reason, ok := corpusParseFailures[r.Path]; ok {
				if err == nil || !strings.Contains(err.Error(), reason) {
					t.Fatalf("Parse error = %v, want one containing %q", err, reason)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("Parse error %v does not wrap ErrMalformed", err)
				}
				failed++
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			parsed++
			if _, err := Replay(log); err != nil {
				t.Fatalf("Replay: %v", err)
			}
			if r.Truth == nil || r.Truth.File == "" {
				return
			}
			truths++
			want := loadTruth(t, filepath.Join(dir, r.Truth.File), r.Truth.Ignored)
			if checkVerdict(t, log, want, corpusVerdicts[r.Path]) {
				correct++
			}
		})
	}
	t.Logf("%d of %d logs parse (%d fail as documented); %d of %d logs with truth PCR values get the expected verdict",
		parsed, len(records), failed, correct, truths)
	if parsed+failed != len(records) || correct != truths {
		t.Errorf("%d logs neither parse nor fail as documented, %d verdicts are wrong", len(records)-parsed-failed, truths-correct)
	}
}

// checkVerdict verifies the log against want with every workaround
// allowed, and strictly, and reports whether both outcomes are expected.
func checkVerdict(t *testing.T, log *Log, want PCRValues, v verdict) bool {
	t.Helper()
	ok := true
	res, err := Verify(log, want, VerifyOptions{Workarounds: Workarounds()})
	if res == nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(v.mismatch) > 0 {
		var mm *MismatchError
		if !errors.As(err, &mm) {
			t.Errorf("Verify error = %v, want a *MismatchError", err)
			ok = false
		}
		if got := res.Mismatches(); !reflect.DeepEqual(got, v.mismatch) {
			t.Errorf("mismatching PCRs = %v, want %v", got, v.mismatch)
			ok = false
		}
	} else if err != nil {
		t.Errorf("Verify: %v", err)
		ok = false
	}
	if !reflect.DeepEqual(res.Workarounds, v.workarounds) {
		t.Errorf("workarounds used = %v, want %v", res.Workarounds, v.workarounds)
		ok = false
	}
	for _, b := range res.Banks {
		wantStatus := BankMatch
		if _, bad := v.mismatch[b.Bank]; bad {
			wantStatus = BankMismatch
		}
		if s, set := v.status[b.Bank]; set {
			wantStatus = s
		}
		if b.Status != wantStatus {
			t.Errorf("bank %s status = %s, want %s", b.Bank, b.Status, wantStatus)
			ok = false
		}
		for _, p := range b.PCRs {
			if !p.Match && b.Status == BankMismatch && len(p.Events) == 0 && hasEvents(log, p.Index) {
				t.Errorf("bank %s PCR %d mismatches but lists no events", b.Bank, p.Index)
			}
		}
	}

	// A result that needed a workaround must fail strictly.
	if len(v.workarounds) > 0 {
		if _, err := Verify(log, want, VerifyOptions{}); err == nil {
			t.Errorf("strict Verify succeeded, want a failure without %v", v.workarounds)
			ok = false
		}
	}
	return ok
}

func hasEvents(log *Log, pcr int) bool {
	for _, e := range log.Events {
		if e.Type != EV_NO_ACTION && int(e.PCR) == pcr {
			return true
		}
	}
	return false
}
