package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/eventlog"
)

var testLogs = filepath.Join("..", "..", "eventlog", "testdata", "corpus")

// runVouch runs the CLI with args and stdin, and returns its output and
// exit code.
func runVouch(t *testing.T, stdin []byte, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(bytes.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return out.String(), exitOK
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return out.String() + err.Error(), exit.code
	}
	return out.String() + err.Error(), exitUsage
}

func TestEventlogShow(t *testing.T) {
	log := filepath.Join(testLogs, "go-eventlog", "rhel8-uefi.bin")
	out, code := runVouch(t, nil, "eventlog", "show", log)
	if code != exitOK || !strings.Contains(out, `\EFI\redhat\shimx64.efi`) || !strings.Contains(out, "SecureBoot = true") {
		t.Errorf("show exit %d, output:\n%s", code, out)
	}

	out, code = runVouch(t, nil, "eventlog", "show", "-o", "json", log)
	var doc struct {
		Format string
		Events []struct {
			Type    string
			Kind    string
			Digests map[string]string
		}
	}
	if code != exitOK {
		t.Fatalf("show -o json exit %d: %s", code, out)
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("show -o json output is not JSON: %v", err)
	}
	if doc.Format != "crypto-agile" || len(doc.Events) != 83 || doc.Events[3].Kind != "efi_variable" || len(doc.Events[3].Digests) != 3 {
		t.Errorf("JSON has format %q and %d events, want crypto-agile with 83", doc.Format, len(doc.Events))
	}

	out, code = runVouch(t, nil, "eventlog", "show", "-o", "yaml", log)
	if code != exitOK || !strings.HasPrefix(out, "---\n") || !strings.Contains(out, `    type: "EV_SEPARATOR"`) {
		t.Errorf("show -o yaml exit %d, output starts:\n%.400s", code, out)
	}
}

func TestEventlogShowStdin(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testLogs, "HIRS", "TpmLogSHA1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, raw, "eventlog", "show", "-")
	if code != exitOK || !strings.Contains(out, "format: sha1") {
		t.Errorf("show - exit %d, output:\n%s", code, out)
	}
}

func TestEventlogExitCodes(t *testing.T) {
	dir := testLogs
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unreadable log", []string{"eventlog", "show", filepath.Join(dir, "keylime", "binary_bios_measurements-bogus")}, exitUnreadable, "event 0 at byte offset 0"},
		{"missing file", []string{"eventlog", "replay", filepath.Join(dir, "nonexistent")}, exitUnreadable, "no such file"},
		{"bad output format", []string{"eventlog", "show", "-o", "xml", "x"}, exitUsage, `invalid --output "xml"`},
		{"unknown workaround", []string{"eventlog", "replay", "--insecure-workaround", "guess", "x"}, exitUsage, `unknown workaround "guess"`},
		{"replay only", []string{"eventlog", "replay", filepath.Join(dir, "HIRS", "TpmLog.bin")}, exitOK, "sha256  0    5ef6c69a589a96b5ade6a09e960eb341e6f68a8239df66be34e5e991ddde97a8"},
		{"match", []string{"eventlog", "replay", filepath.Join(dir, "HIRS", "TpmLog.bin"), "--expect", filepath.Join(dir, "HIRS", "TpmLog.bin.expected_pcrs.json")}, exitOK, "sha256: match"},
		{"mismatch", []string{"eventlog", "replay", filepath.Join(dir, "HIRS", "TPMLog_Altered.bin"), "--expect", filepath.Join(dir, "HIRS", "TPMLog_Altered.bin.expected_pcrs.json")}, exitMismatch, "event log does not replay to the --expect values: mismatch in sha256 PCR 0,1"},
		{"strict quirk", []string{"eventlog", "replay", filepath.Join(dir, "go-attestation", "ebs_event_missing_eventlog"), "--expect", filepath.Join(dir, "go-attestation", "ebs_event_missing_eventlog.expected_pcrs.json")}, exitMismatch, "MISMATCH"},
		{"workaround", []string{"eventlog", "replay", filepath.Join(dir, "go-attestation", "ebs_event_missing_eventlog"), "--expect", filepath.Join(dir, "go-attestation", "ebs_event_missing_eventlog.expected_pcrs.json"), "--insecure-workaround", "exit-boot-services-missing"}, exitOK, "sha1: match with workaround exit-boot-services-missing"},
		{"bad expect file", []string{"eventlog", "replay", filepath.Join(dir, "HIRS", "TpmLog.bin"), "--expect", filepath.Join(dir, "HIRS", "TpmLog.bin")}, exitUnreadable, "PCR values YAML line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runVouch(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tt.code, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output does not contain %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestEventlogReplayPCRReadYAML(t *testing.T) {
	yaml := "  sha256:\n" +
		"    0 : 0x5EF6C69A589A96B5ADE6A09E960EB341E6F68A8239DF66BE34E5E991DDDE97A8\n" +
		"    7 : 0x5D4B6D3A5B1A3E0F9F2E6B0C7C2D8E9F0A1B2C3D4E5F60718293A4B5C6D7E8F9\n"
	path := filepath.Join(t.TempDir(), "pcrs.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "eventlog", "replay", filepath.Join(testLogs, "HIRS", "TpmLog.bin"), "--expect", path, "-o", "json")
	if code != exitMismatch {
		t.Fatalf("exit %d, want %d (PCR 7 is wrong on purpose):\n%s", code, exitMismatch, out)
	}
	var res struct {
		Banks []struct {
			PCRs []struct {
				Index int
				Match bool
			}
		}
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(res.Banks) != 1 || len(res.Banks[0].PCRs) != 2 || !res.Banks[0].PCRs[0].Match || res.Banks[0].PCRs[1].Match {
		t.Errorf("result = %+v, want PCR 0 match and PCR 7 mismatch", res)
	}
}

// TestEventlogShowSummaries checks that the DATA column describes every
// event of the repository's logs, including events whose decoded data has
// no text of its own.
func TestEventlogShowSummaries(t *testing.T) {
	logs := []string{
		filepath.Join("testdata", "demo", "rhel8-uefi.bin"),
		filepath.Join(testLogs, "guard-oss", "evidence", "r340", "r340.eventlog0.bin"),
		filepath.Join(testLogs, "tpmtool", "binary_bios_measurements_tpm12_bios"),
	}
	more, err := filepath.Glob(filepath.Join(testLogs, "*", "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range append(logs, more...) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		log, err := eventlog.Parse(raw)
		if err != nil {
			continue // the corpus holds deliberately broken logs too
		}
		for i, d := range log.DecodeAll() {
			if summarize(&log.Events[i], d) == "" {
				t.Errorf("%s: event %d (%s) has an empty summary", path, log.Events[i].Number, log.Events[i].Type)
			}
		}
	}

	out, code := runVouch(t, nil, "eventlog", "show", logs[0])
	if code != exitOK {
		t.Fatalf("show exit %d: %s", code, out)
	}
	want := "image of 9485680 bytes at 0xba3ee6c0, no device path (loaded from memory)"
	if !strings.Contains(out, want) {
		t.Errorf("rhel8 event 77 lacks %q:\n%s", want, out)
	}
}

func TestEventlogShowHelpMatchesTable(t *testing.T) {
	out, code := runVouch(t, nil, "eventlog", "show", "--help")
	if code != exitOK {
		t.Fatalf("help exit %d", code)
	}
	if strings.Contains(out, "type, digests and decoded data") {
		t.Errorf("help promises digests that the table does not show:\n%s", out)
	}
	if !strings.Contains(out, "-o json and -o yaml also print each event's digests") {
		t.Errorf("help does not say where the digests are:\n%s", out)
	}
}
