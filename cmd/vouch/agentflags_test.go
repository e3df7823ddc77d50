package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAgentFlagValidation(t *testing.T) {
	t.Setenv("VOUCH_SERVER", "")
	t.Setenv("VOUCH_SERVER_FINGERPRINT", "")
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	bootLog := demoLog(t, dir, "rhel8-uefi.bin")
	pin := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--server-fingerprint", pin}, exitUsage, "give --server or set VOUCH_SERVER"},
		{[]string{"--server", "https://127.0.0.1:1", "--server-fingerprint", pin, "--tpm", "foo"}, exitUsage, `--tpm: invalid TPM transport "foo"`},
		{[]string{"--server", "https://127.0.0.1:1", "--server-fingerprint", pin, "--tpm", "simulator", "--simulate-boot", filepath.Join(dir, "nonexistent.bin")}, exitUnreadable, "--simulate-boot: open "},
		{[]string{"--server", "https://127.0.0.1:1", "--server-fingerprint", pin, "--tpm", "simulator", "--simulate-boot", bootLog, "--eventlog", bootLog}, exitUsage, "--simulate-boot and --eventlog both name the event log"},
		{[]string{"--server", "https://127.0.0.1:1/vouch", "--server-fingerprint", pin}, exitUsage, "without a path"},
	} {
		args := append([]string{"agent", "--name", "e1", "--state-dir", stateDir}, tc.args...)
		out, code := runVouchTimeout(t, 30*time.Second, args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("agent %s: exit %d, want %d with %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	// A rejected flag leaves no state directory behind.
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("state directory after rejected flags: %v", err)
	}
}

// TestAgentRejectsLookAlikeName checks that an agent that has not
// enrolled yet stops on a name the verifier would reject, instead of
// retrying its enrollment.
func TestAgentRejectsLookAlikeName(t *testing.T) {
	needSimulator(t)
	dir := t.TempDir()
	bootLog := demoLog(t, dir, "rhel8-uefi.bin")
	for name, want := range map[string]string{"WEB1": `use "web1"`, "web1.": `use "web1"`, "bad name": "use 1 to 63 lower-case letters"} {
		out, code := runVouchTimeout(t, 30*time.Second, "agent", "--server", "https://127.0.0.1:1", "--server-fingerprint", strings.Repeat("ab", 32),
			"--name", name, "--state-dir", filepath.Join(dir, "state"), "--tpm", "simulator", "--simulate-boot", bootLog)
		if code != exitUsage || !strings.Contains(out, `--name: invalid machine name "`+name+`"`) || !strings.Contains(out, want) {
			t.Errorf("agent --name %q: exit %d, want %d with %q:\n%s", name, code, exitUsage, want, out)
		}
	}
}

// TestAgentStopsOnWrongPin runs an agent whose pin matches no
// certificate of the server: it stops with exit code 2 at once instead of
// retrying.
func TestAgentStopsOnWrongPin(t *testing.T) {
	needSimulator(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	dir := t.TempDir()
	out, code := runVouchTimeout(t, 30*time.Second, "agent", "--server", srv.URL, "--server-fingerprint", strings.Repeat("00", 32),
		"--name", "e1", "--state-dir", filepath.Join(dir, "state"), "--tpm", "simulator",
		"--simulate-boot", demoLog(t, dir, "rhel8-uefi.bin"), "--min-backoff", "10ms", "--max-backoff", "20ms")
	if code != exitUsage {
		t.Errorf("agent with a wrong pin: exit %d, want %d:\n%s", code, exitUsage, out)
	}
	if !strings.Contains(out, "pinned fingerprint") || !strings.Contains(out, "--server-fingerprint") {
		t.Errorf("agent with a wrong pin: the error does not explain the pin:\n%s", out)
	}
}

// runVouchTimeout runs the CLI like runVouch, and cancels it after
// timeout: a command that does not stop by itself then fails the test
// instead of hanging it.
func runVouchTimeout(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if ctx.Err() != nil {
		t.Fatalf("vouch %s did not stop within %s:\n%s", strings.Join(args, " "), timeout, out.String())
	}
	if err == nil {
		return out.String(), exitOK
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return out.String() + err.Error(), exit.code
	}
	return out.String() + err.Error(), exitUsage
}
