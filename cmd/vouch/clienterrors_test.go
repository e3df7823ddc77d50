package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClientErrorsNameNextStep checks that each admin command error names
// what to check next: the server address, the token or the argument.
func TestClientErrorsNameNextStep(t *testing.T) {
	t.Setenv("VOUCH_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("VOUCH_TOKEN", "vouch_wrong")
	t.Setenv("VOUCH_SERVER", "")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"code": "unauthorized", "message": "missing or invalid admin token"}`))
	}))
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	pin := hex.EncodeToString(sum[:])
	t.Setenv("VOUCH_SERVER_FINGERPRINT", pin)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"hosts", "list", "--server", "https://" + freeAddr(t)}, exitUnavailable, "is vouch server running at that address? check --server"},
		{[]string{"hosts", "list", "--server", srv.URL}, exitUsage, "check --token-file or VOUCH_TOKEN"},
		{[]string{"hosts", "list", "--server", srv.URL + "/vouch"}, exitUsage, "without a path"},
		{[]string{"hosts", "approve", "--server", srv.URL}, exitUsage, "missing machine NAME"},
		{[]string{"hosts", "show"}, exitUsage, "missing machine NAME"},
		{[]string{"hosts", "interval", "web1"}, exitUsage, "missing DURATION"},
		{[]string{"hosts", "forget", "web1", "web2"}, exitUsage, `unexpected argument "web2"`},
		{[]string{"ek", "revoke"}, exitUsage, "missing EK SHA256"},
		{[]string{"eventlog", "show"}, exitUsage, "missing event log FILE"},
	} {
		out, code := runVouch(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("vouch %s: exit %d, want %d with %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
}
