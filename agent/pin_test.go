package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// pinnedAgent returns an agent whose HTTP client pins fingerprint and
// logs to the returned buffer.
func pinnedAgent(t *testing.T, server, fingerprint, stateDir string) (*Agent, *bytes.Buffer) {
	t.Helper()
	tlsConfig, err := api.TLSConfig(fingerprint, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a, err := New(Config{Server: server, Name: "m1", StateDir: stateDir, TPM: stubTPM{},
		HTTP:       &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}},
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return a, &logs
}

func TestRunStopsOnWrongPinAtFirstContact(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
	}))
	defer srv.Close()

	a, _ := pinnedAgent(t, srv.URL, strings.Repeat("00", sha256.Size), t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.Run(ctx)

	var identity *ServerIdentityError
	if !errors.As(err, &identity) {
		t.Fatalf("Run with a wrong pin returned %v, want a *ServerIdentityError", err)
	}
	var pin *api.PinMismatchError
	if !errors.As(err, &pin) {
		t.Errorf("the error %v does not wrap the *api.PinMismatchError", err)
	}
	if !strings.Contains(err.Error(), "--server-fingerprint") {
		t.Errorf("the error %q does not name --server-fingerprint", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the server received %d requests through a pin that does not match", n)
	}
}

// TestRunRetriesWrongPinOnceReached covers a verifier whose CA changed
// after the agent enrolled there, as during a CA rotation: the agent keeps
// retrying and logs each attempt at ERROR.
func TestRunRetriesWrongPinOnceReached(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	stateDir := t.TempDir()
	enrolled := fmt.Sprintf(`{"name": "m1", "server": %q, "enrolled": true}`, srv.URL)
	if err := os.WriteFile(filepath.Join(stateDir, "agent.json"), []byte(enrolled), 0o600); err != nil {
		t.Fatal(err)
	}

	a, logs := pinnedAgent(t, srv.URL, strings.Repeat("00", sha256.Size), stateDir)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := a.Run(ctx)

	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run of an enrolled agent with a wrong pin returned %v, want it to retry until the context ends", err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "CA rotation") {
		t.Errorf("the retries were not logged at ERROR with their reason:\n%s", logs)
	}
}
