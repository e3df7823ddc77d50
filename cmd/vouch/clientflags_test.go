package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServerURLWithoutScheme(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"client.json": "{}", "token": "vouch_x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"hosts", "list", "--server", "127.0.0.1:8443", "--token-file", filepath.Join(dir, "token"), "--server-fingerprint", strings.Repeat("00", 32)},
		{"agent", "--server", "127.0.0.1:8443", "--server-fingerprint", strings.Repeat("00", 32), "--state-dir", dir, "--name", "x"},
	} {
		t.Setenv("VOUCH_CONFIG", filepath.Join(dir, "client.json"))
		_, err := run(t, args...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `invalid --server "127.0.0.1:8443": use https://HOST:PORT`) {
			t.Errorf("%s: exit %d, %v", args[0], exitCode(err), err)
		}
	}
}

func TestAgentNeedsServerPin(t *testing.T) {
	t.Setenv("VOUCH_SERVER_FINGERPRINT", "")
	_, err := run(t, "agent", "--server", "https://127.0.0.1:1", "--state-dir", t.TempDir(), "--name", "x", "--tpm", "device:/nonexistent")
	if exitCode(err) != exitUsage || err == nil {
		t.Fatalf("agent without a pin: exit %d, %v", exitCode(err), err)
	}
	for _, want := range []string{"--server-fingerprint", "VOUCH_SERVER_FINGERPRINT", "--ca"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestServerPortTakenLeavesNoFiles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	_, err = run(t, "server", "--listen", ln.Addr().String(), "--data-dir", dataDir, "--ek-mode", "tofu")
	if exitCode(err) != exitUnavailable || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("server on a taken port: exit %d, %v", exitCode(err), err)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the server created %s before it could listen (stat: %v)", dataDir, err)
	}
}

func TestAdminClientPlainHTTP(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("vouch_x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VOUCH_CONFIG", "")
	t.Setenv("VOUCH_SERVER_FINGERPRINT", "")
	// Port 1 on loopback refuses connections, so a request that got past
	// the checks fails as unavailable, not as a usage error.
	base := []string{"hosts", "list", "--server", "http://127.0.0.1:1", "--token-file", token}

	_, err := run(t, base...)
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "travel in clear and unauthenticated") {
		t.Errorf("http:// without --insecure-http: exit %d, %v", exitCode(err), err)
	}

	_, err = run(t, append(base, "--server-fingerprint", strings.Repeat("00", 32), "--insecure-http")...)
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "would not be checked") {
		t.Errorf("http:// with a pin: exit %d, %v", exitCode(err), err)
	}

	_, err = run(t, append(base, "--insecure-http")...)
	if exitCode(err) != exitUnavailable {
		t.Errorf("http:// with --insecure-http: exit %d, %v, want the connection to be tried", exitCode(err), err)
	}
}

func TestAgentPlainHTTPNeedsFlag(t *testing.T) {
	t.Setenv("VOUCH_SERVER_FINGERPRINT", "")
	_, err := run(t, "agent", "--server", "http://127.0.0.1:1", "--state-dir", t.TempDir(), "--name", "x", "--tpm", "device:/nonexistent")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--insecure-http") {
		t.Errorf("agent on http:// without --insecure-http: exit %d, %v", exitCode(err), err)
	}
}
