package agent

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// stubTPM returns fixed values; these tests exercise the agent's own
// logic (backoff, state, event log handling), not TPM behaviour.
type stubTPM struct{}

func (stubTPM) EK() ([]byte, []byte, error)                    { return []byte("ek"), nil, nil }
func (stubTPM) AKPublic() []byte                               { return []byte("ak") }
func (stubTPM) ActivateCredential(_, _ []byte) ([]byte, error) { return []byte("secret"), nil }
func (stubTPM) Quote(nonce []byte, pcrs []int) ([]byte, []byte, []api.PCRBank, error) {
	return append([]byte("quote:"), nonce...), []byte("sig"), []api.PCRBank{{Alg: 0x0b}}, nil
}

func newTestAgent(t *testing.T, eventLog string) *Agent {
	t.Helper()
	a, err := New(Config{Server: "https://127.0.0.1:1", Name: "m1", StateDir: t.TempDir(), TPM: stubTPM{},
		EventLogPath: eventLog, MinBackoff: time.Second, MaxBackoff: 16 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestBackoffGrowsAndStaysBounded(t *testing.T) {
	a := newTestAgent(t, "")
	for n := 1; n <= 10; n++ {
		want := min(time.Second<<(n-1), 16*time.Second)
		for range 50 {
			d := a.backoff(n)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

func TestEvidenceReportsMissingEventLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "binary_bios_measurements")
	a := newTestAgent(t, path)
	ev, err := a.Evidence(&api.Challenge{ID: "c", Nonce: make([]byte, 32), PCRs: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.EventLog != nil || ev.EventLogSHA256 != "" {
		t.Errorf("evidence carries a log: %d bytes, digest %q", len(ev.EventLog), ev.EventLogSHA256)
	}
	if !strings.Contains(ev.EventLogMissing, path) || !strings.Contains(ev.EventLogMissing, "does not exist") {
		t.Errorf("EventLogMissing = %q", ev.EventLogMissing)
	}

	os.WriteFile(path, nil, 0o600)
	ev, _ = a.Evidence(&api.Challenge{ID: "c", Nonce: make([]byte, 32)})
	if !strings.Contains(ev.EventLogMissing, "is empty") {
		t.Errorf("empty log: EventLogMissing = %q", ev.EventLogMissing)
	}
}

func TestEvidenceOmitsKnownEventLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte("a boot log"), 0o600)
	a := newTestAgent(t, path)
	ev, err := a.Evidence(&api.Challenge{ID: "c", Nonce: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.EventLog) != "a boot log" || len(ev.EventLogSHA256) != 64 {
		t.Fatalf("first evidence: log %q, digest %q", ev.EventLog, ev.EventLogSHA256)
	}
	again, _ := a.Evidence(&api.Challenge{ID: "d", Nonce: make([]byte, 32), EventLogSHA256: ev.EventLogSHA256})
	if again.EventLog != nil || again.EventLogSHA256 != ev.EventLogSHA256 {
		t.Errorf("known log sent again: %d bytes", len(again.EventLog))
	}
}

func TestEvidenceRejectsShortNonce(t *testing.T) {
	a := newTestAgent(t, "")
	if _, err := a.Evidence(&api.Challenge{Nonce: make([]byte, 8)}); err == nil {
		t.Error("8-byte nonce accepted")
	}
}

func TestStateKeepsName(t *testing.T) {
	dir := t.TempDir()
	a, err := New(Config{Server: "https://x", Name: "first", StateDir: dir, TPM: stubTPM{}})
	if err != nil {
		t.Fatal(err)
	}
	a.state.Enrolled = true
	if err := a.saveState(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Server: "https://x", Name: "second", StateDir: dir, TPM: stubTPM{}}); err == nil || !strings.Contains(err.Error(), `enrolled as "first"`) {
		t.Errorf("renamed agent: %v", err)
	}
	b, err := New(Config{Server: "https://x", StateDir: dir, TPM: stubTPM{}})
	if err != nil || b.Name() != "first" || !b.state.Enrolled {
		t.Errorf("reloaded agent: name %q enrolled %v, %v", b.Name(), b.state.Enrolled, err)
	}
	c, err := New(Config{Server: "https://other", StateDir: dir, TPM: stubTPM{}})
	if err != nil || c.state.Enrolled {
		t.Errorf("agent pointed at a new verifier still counts as enrolled: %v", err)
	}
}

// attestWithResetCount returns a TPMS_ATTEST (of a non-quote type, so that
// nothing follows the fixed fields) carrying resetCount.
func attestWithResetCount(resetCount uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0xff544347) // TPM_GENERATED_VALUE
	b = binary.BigEndian.AppendUint16(b, 0x8017)        // TPM_ST_ATTEST_CERTIFY
	b = append(b, 0, 0, 0, 0)                           // qualifiedSigner, extraData
	b = binary.BigEndian.AppendUint64(b, 1000)          // clock
	b = binary.BigEndian.AppendUint32(b, resetCount)
	b = binary.BigEndian.AppendUint32(b, 0) // restartCount
	b = append(b, 1)                        // safe
	return binary.BigEndian.AppendUint64(b, 0)
}

// An agent restarted after a reboot must notice the new boot from its
// saved reset count and send the IMA list from the start, not from the
// offset the verifier kept for the previous boot.
func TestIMAFromStartAfterRestartAcrossReboot(t *testing.T) {
	dir := t.TempDir()
	// A real IMA list of two entries (boot_aggregate and one file), so
	// that offset 1 exists in it: the stale offset is not caught by the
	// list being too short.
	imaPath := filepath.Join("..", "ima", "testdata", "ovmf-shim-sbms.ima.bin")
	state := filepath.Join(dir, "state")
	cfg := Config{Server: "https://x", Name: "m1", StateDir: state, TPM: stubTPM{}, IMAPath: imaPath}

	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.imaEvidence(&api.Challenge{IMAOffset: 0}, attestWithResetCount(7))
	a.recordResetCount(a.lastResetCount) // the verifier accepted the evidence
	if a.state.ResetCount == nil || *a.state.ResetCount != 7 {
		t.Fatalf("saved reset count %v, want 7", a.state.ResetCount)
	}

	// Same boot, restarted agent: it keeps the verifier's offset.
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !b.quoted || b.resetCount != 7 {
		t.Fatalf("restarted agent: quoted %v reset count %d, want true 7", b.quoted, b.resetCount)
	}

	// New boot: the first quote's reset count differs, so the offset is 0.
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ev := c.imaEvidence(&api.Challenge{IMAOffset: 1}, attestWithResetCount(8))
	if ev.Offset != 0 {
		t.Errorf("after a reboot the agent sent IMA entries from offset %d, want 0", ev.Offset)
	}
	c.recordResetCount(c.lastResetCount) // the verifier accepted the evidence
	if c.state.ResetCount == nil || *c.state.ResetCount != 8 {
		t.Errorf("saved reset count %v after the reboot, want 8", c.state.ResetCount)
	}
}
