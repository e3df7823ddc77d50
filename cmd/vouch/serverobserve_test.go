package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/notify"
)

// webhookReceiver records the state changes posted to it whose signature
// verifies, and counts the others.
type webhookReceiver struct {
	mu      sync.Mutex
	changes []api.StateChange
	badSigs int
}

func (rc *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !notify.Verify(e2eWebhookSecret, body, r.Header.Get(notify.HeaderSignature)) {
		rc.badSigs++
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	var c api.StateChange
	if err := json.Unmarshal(body, &c); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.changes = append(rc.changes, c)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *webhookReceiver) has(machine, from, to string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, c := range rc.changes {
		if c.Machine == machine && c.OldState == from && c.NewState == to {
			return true
		}
	}
	return false
}

var e2eWebhookSecret = []byte("e2e-webhook-secret-0123456789")

func writeSecret(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "webhook-secret-")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := f.Name()
	if err := os.WriteFile(p, append(e2eWebhookSecret, '\n'), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func fetchMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", resp.StatusCode, body)
	}
	return string(body)
}

// TestServerMetricsWebhooksDashboard runs vouch server with a metrics
// listener and a webhook, and follows one simulated machine to trusted.
func TestServerMetricsWebhooksDashboard(t *testing.T) {
	needSimulator(t)
	dir := t.TempDir()
	rc := &webhookReceiver{}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	metricsAddr := freeAddr(t)
	s := startServer(t, filepath.Join(dir, "data"), "", "--ek-mode", "tofu",
		"--metrics-listen", metricsAddr, "--webhook", hook.URL+"/vouch",
		"--webhook-secret-file", writeSecret(t, dir, 0o600))

	startAgent(t, s, dir, "obs1", "simulator", demoLog(t, dir, "rhel8-uefi.bin"))
	s.waitFor(t, "obs1", "pending with learned reference values", func(d api.MachineDetail) bool {
		return d.State == api.StatePending && hasReason(d, "reference_unapproved")
	})
	s.admin(t, http.MethodPost, "/v1/machines/obs1/approve", nil)
	s.waitFor(t, "obs1", "trusted", stateIs(api.StateTrusted))

	deadline := time.Now().Add(10 * time.Second)
	for !(rc.has("obs1", "", "pending") && rc.has("obs1", "pending", "trusted")) {
		if time.Now().After(deadline) {
			t.Fatalf("webhook did not receive enrolled and trusted changes: %+v\nserver output:\n%s", rc.changes, tail(s.proc.output(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rc.badSigs != 0 {
		t.Errorf("%d webhook requests had an invalid signature", rc.badSigs)
	}

	m := fetchMetrics(t, metricsAddr)
	for _, want := range []string{
		`vouch_machines{state="trusted"} 1`,
		`vouch_enrollments_total{outcome="enrolled",step="activate"} 1`,
		`vouch_webhook_deliveries_total{result="delivered",webhook="0"}`,
		`go_goroutines `,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "obs1") {
		t.Error("metrics name the machine without --metrics-per-machine")
	}

	req, err := http.NewRequest(http.MethodGet, s.url+"/dashboard", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.client.Token)
	resp, err := s.client.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `data-machine="obs1" data-state="trusted"`) {
		t.Errorf("dashboard: status %d, obs1 not listed as trusted", resp.StatusCode)
	}

	s.proc.stop()
	if code := s.proc.exited(t, 15*time.Second); code != 0 {
		t.Errorf("server exited with %d after SIGTERM:\n%s", code, tail(s.proc.output(), 20))
	}
}

func TestServerObserveFlagErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"webhook without secret", []string{"--webhook", "https://hooks.example.net/x"}, "--webhook needs --webhook-secret-file"},
		{"secret without webhook", []string{"--webhook-secret-file", writeSecret(t, dir, 0o600)}, "give --webhook URL"},
		{"plain http", []string{"--webhook", "http://hooks.example.net/x", "--webhook-secret-file", writeSecret(t, dir, 0o600)}, "--insecure-webhook-http"},
		{"readable secret", []string{"--webhook", "https://hooks.example.net/x", "--webhook-secret-file", writeSecret(t, dir, 0o644)}, "chmod 600"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dataDir := filepath.Join(dir, "data-"+strings.ReplaceAll(c.name, " ", "-"))
			args := append([]string{"server", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, c.args...)
			p := startProc(t, filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".log"), args...)
			if code := p.exited(t, 10*time.Second); code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if out := p.output(); !strings.Contains(out, c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, out)
			}
			if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("rejected flags left %s behind (stat: %v)", dataDir, err)
			}
		})
	}
}
