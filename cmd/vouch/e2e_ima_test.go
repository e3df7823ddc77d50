package main

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/ima"
)

func writeIMAList(t *testing.T, path string, entries []ima.Entry) {
	t.Helper()
	var out []byte
	for i := range entries {
		out = ima.AppendBinary(out, &entries[i])
	}
	// Write and rename, so that a reader never sees half a list.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func imaReasons(d api.MachineDetail) []api.Reason {
	if d.Verdict == nil {
		return nil
	}
	return d.Verdict.Reasons
}

// TestEndToEndIMA runs an agent on swtpm whose IMA list grows from a real
// machine's list (ima/testdata/hahuri.ima.bin) round after round, against
// a server that enforces an allowlist of that list's files but one.
func TestEndToEndIMA(t *testing.T) {
	dir := t.TempDir()
	raw, err := os.ReadFile("../../ima/testdata/hahuri.ima.bin")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ima.ParseBinary(raw, ima.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	entries = entries[:36] // entry 36 extends PCR 11, which the server does not quote
	const unlisted = 30
	var allow bytes.Buffer
	for i := 1; i < len(entries); i++ {
		f, err := entries[i].Fields()
		if err != nil {
			t.Fatal(err)
		}
		if i != unlisted {
			fmt.Fprintf(&allow, "%s:%x  %s\n", f.DigestAlgorithm, f.Digest, f.Name)
		}
	}
	allowPath := filepath.Join(dir, "allow.txt")
	if err := os.WriteFile(allowPath, allow.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	f30, _ := entries[unlisted].Fields()
	digest30 := fmt.Sprintf("%s:%x", f30.DigestAlgorithm, f30.Digest)

	sw := startSwtpm(t, filepath.Join(dir, "swtpm"))
	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-mode", "tofu", "--insecure-auto-approve-reference", "--ima-allowlist", allowPath)
	bootLog := demoLog(t, dir, "ubuntu-2104-no-secure-boot.bin")
	source := filepath.Join(dir, "recorded-ima.bin")
	writeIMAList(t, source, entries[:20])
	agentList := filepath.Join(dir, "agent-imahost", "simulated-ima.bin")

	imaAt := func(n int64, state string) func(api.MachineDetail) bool {
		return func(d api.MachineDetail) bool {
			return d.State == state && d.Verdict != nil && d.Verdict.IMA != nil && d.Verdict.IMA.Entries == n
		}
	}
	a := startAgent(t, s, dir, "imahost", sw.spec(), bootLog, "--simulate-ima-log", source)
	d := s.waitFor(t, "imahost", "trusted with 20 IMA entries", imaAt(20, api.StateTrusted))
	if r := d.Verdict.IMA; r.Policy != "on" || (r.Offset == 0 && !strings.HasPrefix(r.BootAggregate, "matches sha256 PCRs 0-9")) {
		t.Errorf("first IMA report: %+v", r)
	}

	// Ten more files measured: only they are sent and verified.
	writeIMAList(t, source, entries[:30])
	d = s.waitFor(t, "imahost", "trusted with 30 IMA entries", imaAt(30, api.StateTrusted))
	if r := d.Verdict.IMA; r.Offset < 20 || r.Checked > 10 {
		t.Errorf("second IMA report %+v: want entries from offset 20 or later", r)
	}
	var out bytes.Buffer
	printMachineDetail(&out, d)
	if !strings.Contains(out.String(), "IMA:     30 entries verified in this boot") || !strings.Contains(out.String(), "file policy: ") {
		t.Errorf("hosts show output lacks the IMA part:\n%s", out.String())
	}

	// An earlier entry of the agent's list changes (its template hash
	// still fits): the agent resends the list and the verifier finds the
	// history changed.
	list, err := os.ReadFile(agentList)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := ima.ParseBinary(list, ima.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := slices.Clone(changed[5].TemplateData)
	data[len(data)-3] ^= 1
	sum := sha1.Sum(data)
	changed[5].TemplateData, changed[5].TemplateHash = data, sum[:]
	writeIMAList(t, agentList, changed)
	d = s.waitFor(t, "imahost", "untrusted with a changed IMA history", func(d api.MachineDetail) bool {
		return d.State == api.StateUntrusted && hasReason(d, "ima_history_changed")
	})
	for _, r := range imaReasons(d) {
		if r.Code == "ima_history_changed" && !strings.Contains(r.Message, "IMA log history changed within one boot") {
			t.Errorf("reason %+v does not say the history changed", r)
		}
	}

	// A reboot starts the IMA state over: trusted again.
	a.stop()
	sw.powerCycle(t)
	a = startAgent(t, s, dir, "imahost", sw.spec(), bootLog, "--simulate-ima-log", source)
	d = s.waitFor(t, "imahost", "trusted on its second boot", func(d api.MachineDetail) bool {
		return imaAt(30, api.StateTrusted)(d) && d.Verdict.BootCount == 2
	})

	// A file outside the allowlist: untrusted, naming the file, its digest
	// and the rule.
	writeIMAList(t, source, entries)
	d = s.waitFor(t, "imahost", "untrusted for an unlisted file", func(d api.MachineDetail) bool {
		return d.State == api.StateUntrusted && hasReason(d, "ima_file_not_allowed")
	})
	var found bool
	for _, r := range imaReasons(d) {
		if r.Code != "ima_file_not_allowed" {
			continue
		}
		found = true
		if r.File != string(f30.Name) || r.Digest != digest30 || r.Rule != "allowlist" || r.Event == nil || *r.Event != unlisted ||
			!strings.Contains(r.Message, string(f30.Name)) || !strings.Contains(r.Message, digest30) {
			t.Errorf("reason %+v does not name entry %d, %s, %s and rule allowlist", r, unlisted, f30.Name, digest30)
		}
	}
	if !found || hasReason(d, "ima_history_changed") {
		t.Errorf("reasons after the reboot: %+v", imaReasons(d))
	}
	a.stop()
}
