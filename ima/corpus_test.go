package ima

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/eventlog"
)

// corpusDir returns the corpus folder named by VOUCH_CORPUS, defaulting to
// ../shared/corpus next to the repository, or skips the test.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VOUCH_CORPUS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Skipf("corpus not found at %s (set VOUCH_CORPUS to the corpus folder): %v", dir, err)
	}
	return dir
}

// readPCRJSON reads expected PCR values from a corpus sidecar or a
// pcrs.json file.
func readPCRJSON(t *testing.T, path string) PCRValues {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := eventlog.ParseExpectedPCRs(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

type corpusLog struct {
	path     string // IMA list
	truth    string // expected PCRs, or ""
	bootPCRs string // PCRs 0-9 for the boot_aggregate, or ""
}

// corpusIMALogs lists the IMA lists of the corpus: the manifest's ima-bin
// and ima-ascii records and the ovmf-swtpm boots.
func corpusIMALogs(t *testing.T, dir string) []corpusLog {
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Records []struct {
			Path  string `json:"path"`
			Kind  string `json:"kind"`
			Truth *struct {
				File string `json:"file"`
			} `json:"truth"`
		} `json:"records"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var logs []corpusLog
	for _, r := range m.Records {
		if r.Kind != "ima-bin" && r.Kind != "ima-ascii" {
			continue
		}
		l := corpusLog{path: filepath.Join(dir, r.Path)}
		if r.Truth != nil {
			l.truth = filepath.Join(dir, r.Truth.File)
		}
		// The guard-oss evidence folders hold the firmware log's PCRs,
		// which include PCRs 0-9.
		if strings.HasSuffix(r.Path, ".ima_binary_runtime_measurements") {
			fw := strings.TrimSuffix(l.path, ".ima_binary_runtime_measurements") + ".eventlog0.bin.expected_pcrs.json"
			if _, err := os.Stat(fw); err == nil {
				l.bootPCRs = fw
			}
		}
		logs = append(logs, l)
	}
	boots, _ := filepath.Glob(filepath.Join(dir, "ovmf-swtpm", "*", "pcrs.json"))
	for _, pcrs := range boots {
		d := filepath.Dir(pcrs)
		for _, name := range []string{"ima_binary_runtime_measurements.bin", "ima_ascii_runtime_measurements.txt"} {
			if _, err := os.Stat(filepath.Join(d, name)); err == nil {
				logs = append(logs, corpusLog{path: filepath.Join(d, name), truth: pcrs, bootPCRs: pcrs})
			}
		}
	}
	return logs
}

// TestCorpusReplay replays every IMA list of the corpus that has recorded
// PCR values and compares PCR 10 in every recorded bank.
func TestCorpusReplay(t *testing.T) {
	dir := corpusDir(t)
	logs := corpusIMALogs(t, dir)
	var lists, listsOK, banks, banksOK, parsed, boot, bootOK int
	for _, l := range logs {
		rel, _ := filepath.Rel(dir, l.path)
		data, err := os.ReadFile(l.path)
		if err != nil {
			t.Fatal(err)
		}
		entries, format, err := Parse(data, ParseOptions{})
		if err != nil && !errors.Is(err, ErrTruncated) {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if err != nil {
			t.Logf("%s: %d entries, then: %v", rel, len(entries), err)
		}
		parsed++
		for i := range entries {
			if entries[i].IsViolation() {
				continue
			}
			if err := entries[i].CheckTemplateHash(); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
			if _, err := entries[i].Fields(); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
		}
		if l.truth == "" {
			continue
		}
		lists++
		truth := readPCRJSON(t, l.truth)
		expected := PCRValues{}
		var algs []Algorithm
		for alg, pcrs := range truth {
			if v, ok := pcrs[imaPCR]; ok {
				expected[alg] = map[int][]byte{imaPCR: v}
				algs = append(algs, alg)
			}
		}
		r, err := ReplayEntries(entries, algs)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if len(r.TemplateHashErrors) > 0 {
			t.Errorf("%s: %d template hash errors, first: %v", rel, len(r.TemplateHashErrors), r.TemplateHashErrors[0])
		}
		allOK := true
		for _, m := range r.Compare(expected) {
			banks++
			if m.Scheme == 0 {
				allOK = false
				t.Errorf("%s (%s): %s PCR %d = %x, replayed %x", rel, format, m.Algorithm, m.PCR, m.Expected, m.Replayed)
				continue
			}
			banksOK++
			t.Logf("%s (%s, %d entries, %d violations): %s PCR 10 matches (%s)", rel, format, len(entries), len(r.Violations), m.Algorithm, m.Scheme)
		}
		if allOK {
			listsOK++
		}
		if l.bootPCRs != "" && len(entries) > 0 {
			boot++
			ba, err := CheckBootAggregate(&entries[0], readPCRJSON(t, l.bootPCRs))
			if err != nil {
				t.Errorf("%s: boot_aggregate: %v", rel, err)
			} else {
				bootOK++
				t.Logf("%s: boot_aggregate matches %s PCRs %v", rel, ba.Algorithm, ba.PCRs)
			}
		}
	}
	t.Logf("corpus: %d lists parsed; %d of %d lists with recorded PCRs replay (%d of %d banks); %d of %d boot_aggregates match",
		parsed, listsOK, lists, banksOK, banks, bootOK, boot)
	if lists == 0 {
		t.Fatal("no IMA list with recorded PCR values found in the corpus")
	}
}
