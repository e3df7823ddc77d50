package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// TestEKPinChecksFileLocally runs 'vouch ek pin' against a server that
// records each request. A private key, a CA certificate or a key that
// cannot be an EK is rejected before anything is sent. An EK-shaped
// certificate or key is sent as DER.
func TestEKPinChecksFileLocally(t *testing.T) {
	var mu sync.Mutex
	var received []api.PinEKRequest
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.PinEKRequest
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		received = append(received, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"sha256": "00", "status": "pinned"}`))
	}))
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	t.Setenv("VOUCH_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("VOUCH_SERVER", srv.URL)
	t.Setenv("VOUCH_SERVER_FINGERPRINT", hex.EncodeToString(sum[:]))
	t.Setenv("VOUCH_TOKEN", "vouch_test")

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemBlock := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPublic, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edPublic, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPKIX, err := x509.MarshalPKIXPublicKey(edPublic)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaSmall, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	certificate := func(isCA bool) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			BasicConstraintsValid: true, IsCA: isCA}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	leaf := certificate(false)

	for _, tc := range []struct {
		name string
		data []byte
		code int
		want string
	}{
		{"key.pem", pemBlock("PRIVATE KEY", pkcs8), exitUsage, "contains a private key (PRIVATE KEY), which was not sent"},
		{"key-and-cert.pem", append(pemBlock("EC PRIVATE KEY", []byte("x")), pemBlock("CERTIFICATE", leaf)...), exitUsage, "contains a private key (EC PRIVATE KEY)"},
		{"key.der", pkcs8, exitUsage, "contains a private key in DER"},
		{"ca.pem", pemBlock("CERTIFICATE", certificate(true)), exitUsage, "is a CA certificate, not an EK certificate"},
		{"ed25519.pem", pemBlock("PUBLIC KEY", edPKIX), exitUsage, "cannot be a TPM EK"},
		{"rsa1024.der", rsaSmall, exitUsage, "an RSA 1024 key cannot be a TPM EK"},
		{"readme.txt", []byte("not a key\n"), exitUnreadable, "neither a certificate nor a public key"},
		{"crl.pem", pemBlock("X509 CRL", []byte("x")), exitUnreadable, "no CERTIFICATE or PUBLIC KEY PEM block"},
		{"two-certs.pem", append(pemBlock("CERTIFICATE", leaf), pemBlock("CERTIFICATE", leaf)...), exitUsage, "more than one certificate or public key"},
		{"key-then-cert.pem", append(pemBlock("PUBLIC KEY", ecPublic), pemBlock("CERTIFICATE", leaf)...), exitUsage, "more than one certificate or public key"},
	} {
		out, code := runVouch(t, nil, "ek", "pin", write(tc.name, tc.data))
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("ek pin %s: exit %d, want %d with %q:\n%s", tc.name, code, tc.code, tc.want, out)
		}
	}
	if len(received) != 0 {
		t.Fatalf("the server received %d pin requests for rejected files", len(received))
	}

	for _, tc := range []struct {
		name      string
		data      []byte
		cert, key []byte
	}{
		{"ek.pem", pemBlock("CERTIFICATE", leaf), leaf, nil},
		{"ek.der", leaf, leaf, nil},
		{"ekpub.pem", pemBlock("PUBLIC KEY", ecPublic), nil, ecPublic},
		{"ekpub.der", ecPublic, nil, ecPublic},
	} {
		received = nil
		out, code := runVouch(t, nil, "ek", "pin", write(tc.name, tc.data))
		if code != exitOK || len(received) != 1 {
			t.Errorf("ek pin %s: exit %d, %d requests:\n%s", tc.name, code, len(received), out)
			continue
		}
		if string(received[0].Certificate) != string(tc.cert) {
			t.Errorf("ek pin %s sent certificate %x, want the DER %x", tc.name, received[0].Certificate, tc.cert)
		}
		if string(received[0].PublicKey) != string(tc.key) {
			t.Errorf("ek pin %s sent public key %x, want the DER %x", tc.name, received[0].PublicKey, tc.key)
		}
	}
}

// FuzzEKPinRequest checks that any file content gets a request or an
// error, and that a file with a PRIVATE KEY PEM block is never sent.
func FuzzEKPinRequest(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pub)
	f.Add(cert)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ekPinRequest("fuzz", data, io.Discard)
		if err != nil {
			return
		}
		if len(req.Certificate) == 0 && len(req.PublicKey) == 0 {
			t.Fatalf("no error and an empty request for %q", data)
		}
		if strings.Contains(string(data), "PRIVATE KEY-----") {
			if block, _ := pem.Decode(data); block != nil && strings.Contains(block.Type, "PRIVATE KEY") {
				t.Fatalf("a file starting with a %s block was accepted", block.Type)
			}
		}
	})
}
