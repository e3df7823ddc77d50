package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBundleCLIRoundTrip(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "debian")
	bare := filepath.Join(dir, "bundle.json")
	signed := filepath.Join(dir, "bundle.dsse.json")

	out, code := runVouch(t, nil, "bundle", "keygen", "--alg", "ecdsa-p256", "--out", key)
	if code != exitOK {
		t.Fatalf("keygen: exit %d: %s", code, out)
	}
	info, err := os.Stat(key + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("private key mode = %o, want 600", perm)
	}
	if _, code := runVouch(t, nil, "bundle", "keygen", "--out", key); code == exitOK {
		t.Error("keygen overwrote an existing key")
	}

	out, code = runVouch(t, nil, "bundle", "create", "--publisher", "debian", "--product", "debian", "--version", "12.8",
		"--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z",
		"--components", "../../bundle/testdata/debian-12-shim-grub.json", "--out", bare)
	if code != exitOK {
		t.Fatalf("create: exit %d: %s", code, out)
	}
	out, code = runVouch(t, nil, "bundle", "sign", "--key", key+".key", bare, "--out", signed)
	if code != exitOK {
		t.Fatalf("sign: exit %d: %s", code, out)
	}

	trust := "debian=" + key + ".pub"
	out, code = runVouch(t, nil, "bundle", "verify", "--trust", trust, "--at", "2026-06-01T00:00:00Z", signed)
	if code != exitOK || !strings.Contains(out, "ok "+signed+": bundle debian-12.8 by debian") {
		t.Fatalf("verify: exit %d: %s", code, out)
	}
	out, code = runVouch(t, nil, "bundle", "verify", "--trust", trust, "--at", "2027-06-01T00:00:00Z", signed)
	if code != exitMismatch || !strings.Contains(out, "(expired)") {
		t.Errorf("verify expired: exit %d: %s", code, out)
	}
	out, code = runVouch(t, nil, "bundle", "verify", "--trust", trust, "--at", "2026-06-01T00:00:00Z", bare)
	if code != exitMismatch || !strings.Contains(out, "(unsigned)") {
		t.Errorf("verify bare: exit %d: %s", code, out)
	}

	data, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered.json")
	// Flip one base64 character of the payload.
	i := bytes.Index(data, []byte(`"payload": "`)) + len(`"payload": "`) + 40
	data[i] ^= 'A' ^ 'B'
	if err := os.WriteFile(tampered, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runVouch(t, nil, "bundle", "verify", "--trust", trust, "--at", "2026-06-01T00:00:00Z", tampered)
	if code != exitMismatch || !strings.Contains(out, "(bad-signature)") {
		t.Errorf("verify tampered: exit %d: %s", code, out)
	}

	out, code = runVouch(t, nil, "bundle", "show", signed)
	if code != exitOK || !strings.Contains(out, "grubx64.efi") || !strings.Contains(out, "(unverified)") {
		t.Errorf("show: exit %d: %s", code, out)
	}

	out, code = runVouch(t, nil, "bundle", "verify", signed)
	if code != exitUsage || !strings.Contains(out, "--trust") {
		t.Errorf("verify without keys: exit %d: %s", code, out)
	}
}
