package verifier

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/agent"
	"github.com/vouch-attest/vouch/api"
)

func TestEnrollRejectsUnprintableFacts(t *testing.T) {
	h := newHarness(t, Config{})
	stateDir := t.TempDir()
	dev, err := agent.NewDeviceTPM(simulator(t), stateDir)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "eventlog.bin")
	if err := os.WriteFile(logPath, readTestLog(t), 0o600); err != nil {
		t.Fatal(err)
	}
	// A host name that clears the administrator's screen and draws its
	// own line, as a compromised machine could report.
	a, err := agent.New(agent.Config{
		Server: h.http.URL, Name: "esc", StateDir: stateDir, EventLogPath: logPath, TPM: dev,
		Facts: api.Facts{Hostname: "ok\x1b[2J\x1b[Hweb1 trusted", OS: "linux/amd64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Enroll(context.Background())
	if api.ErrorCode(err) != api.CodeBadRequest || !strings.Contains(err.Error(), "facts.hostname") || !strings.Contains(err.Error(), `\x1b`) {
		t.Fatalf("enrollment with an escape in facts.hostname: %v, want 400 naming facts.hostname and the escaped value", err)
	}
	if _, err := h.store.Machine(context.Background(), "esc"); err == nil {
		t.Error("machine enrolled with unprintable facts")
	}

	ak := newSoftwareAK(t)
	for name, facts := range map[string]api.Facts{
		"carriage return": {OS: "linux\rroot"},
		"bidi override":   {TPM: "STM \u202eevil"},
		"DEL":             {AgentVersion: "1.0\x7f"},
		"too long":        {Hostname: strings.Repeat("h", api.MaxFactBytes+1)},
	} {
		req := api.EnrollRequest{Name: "facts", EKPublicArea: randomECCEK(t), AKPublic: ak.public, Facts: facts}
		status, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll", req, nil)
		if status != http.StatusBadRequest || !strings.Contains(err.Error(), "invalid facts.") {
			t.Errorf("%s: %d %v, want 400 invalid facts", name, status, err)
		}
	}
	req := api.EnrollRequest{Name: "facts", EKPublicArea: randomECCEK(t), AKPublic: ak.public, Facts: api.Facts{Hostname: "web-1.example", OS: "Debian GNU/Linux 12 (bookworm) amd64", TPM: "STM 73.4"}}
	if _, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll", req, nil); err != nil {
		t.Errorf("printable facts: %v", err)
	}
}
