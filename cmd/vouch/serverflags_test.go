package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServerFlagValidation(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if out, code := runVouch(t, nil, "bundle", "keygen", "--out", filepath.Join(dir, "acme")); code != exitOK {
		t.Fatalf("bundle keygen: exit %d\n%s", code, out)
	}
	trust := "acme=" + filepath.Join(dir, "acme.pub")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--interval", "0s"}, exitUsage, "invalid --interval 0s: give 1s to 168h0m0s"},
		{[]string{"--interval", "-1s"}, exitUsage, "invalid --interval -1s"},
		{[]string{"--interval", "200h"}, exitUsage, "invalid --interval 200h0m0s"},
		{[]string{"--challenge-ttl", "0s"}, exitUsage, "invalid --challenge-ttl 0s: give 1s to 1h0m0s"},
		{[]string{"--unreachable-after", "0"}, exitUsage, "invalid --unreachable-after 0: give 1 to 1000"},
		{[]string{"--unreachable-after", "-3"}, exitUsage, "invalid --unreachable-after -3"},
		{[]string{"--result-validity", "0s"}, exitUsage, "invalid --result-validity 0s: give at least 1s"},
		{[]string{"--listen", "127.0.0.1:99999"}, exitUsage, "port 99999 is out of range: give 0 to 65535"},
		{[]string{"--listen", "127.0.0.1"}, exitUsage, "give host:port"},
		{[]string{"--listen", "127.0.0.1:nosuchservice"}, exitUsage, `unknown port "nosuchservice"`},
		{[]string{"--listen", "bad_host!:8443"}, exitUsage, `host "bad_host!" is neither`},
		{[]string{"--metrics-listen", "127.0.0.1"}, exitUsage, `invalid --metrics-listen "127.0.0.1": give host:port`},
		{[]string{"--metrics-listen", "127.0.0.1:99999"}, exitUsage, "invalid --metrics-listen \"127.0.0.1:99999\": port 99999 is out of range"},
		{[]string{"--ek-mode", "tofu", "--database", "postgres://vouch@127.0.0.1:1/vouch?connect_timeout=2"}, exitUnavailable, "127.0.0.1:1"},
		{[]string{"--ek-roots", filepath.Join(dir, "nonexistent.pem")}, exitUnreadable, "--ek-roots: read EK root"},
		{[]string{"--ek-intermediates", filepath.Join(dir, "nonexistent.pem")}, exitUnreadable, "--ek-intermediates: read EK root"},
		{[]string{"--ek-mode", "foo"}, exitUsage, `invalid --ek-mode "foo": use vendor-roots, pinned or tofu`},
		{[]string{"--tls-cert", filepath.Join(dir, "cert.pem")}, exitUsage, "--tls-cert needs --tls-key and --tls-ca"},
		{[]string{"--bundles", filepath.Join(dir, "nonexistent"), "--trust", trust}, exitUsage, "no bundle of"},
		{[]string{"--bundles", filepath.Join(dir, "nonexistent"), "--trust", "acme=" + filepath.Join(dir, "nonexistent.pub")}, exitUnreadable, "--trust acme="},
	} {
		args := append([]string{"server", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, tc.args...)
		out, code := runVouch(t, nil, args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("server %s: exit %d, want %d with %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	// A rejected flag leaves no data directory behind.
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data directory after rejected flags: %v", err)
	}
}
