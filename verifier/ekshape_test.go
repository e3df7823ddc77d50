package verifier

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

func TestPinnedEKRejectsNonEKKeys(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vouch CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
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
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224PKIX, err := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPKIX, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		req  api.PinEKRequest
		want string
	}{
		"CA certificate": {api.PinEKRequest{Certificate: caDER}, "is a CA certificate"},
		"ed25519 key":    {api.PinEKRequest{PublicKey: edPKIX}, "cannot be a TPM EK"},
		"P-224 key":      {api.PinEKRequest{PublicKey: p224PKIX}, "P-224 cannot be a TPM EK"},
	} {
		if _, err := pinnedEK(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: pinnedEK returned %v, want an error with %q", name, err, tc.want)
		}
	}
	if _, err := pinnedEK(api.PinEKRequest{PublicKey: ecPKIX}); err != nil {
		t.Errorf("P-256 key: %v", err)
	}
}

func TestAdminTextRejectsControlCharacters(t *testing.T) {
	for _, value := range []string{"rack 4\x1b[31m", "line\nbreak", strings.Repeat("a", maxAdminTextBytes+1)} {
		if err := checkAdminText("note", value); err == nil {
			t.Errorf("checkAdminText accepted %q", value)
		}
	}
	for _, value := range []string{"", "rack 4, asset tag 0042", "ünïcödé"} {
		if err := checkAdminText("note", value); err != nil {
			t.Errorf("checkAdminText rejected %q: %v", value, err)
		}
	}
}
