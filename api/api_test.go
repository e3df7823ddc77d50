package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestDecodeLimits(t *testing.T) {
	var v EnrollRequest
	if err := Decode(strings.NewReader(`{"name":"a"}`), 100, &v); err != nil || v.Name != "a" {
		t.Errorf("valid body: %v %q", err, v.Name)
	}
	if err := Decode(strings.NewReader(`{"name":"`+strings.Repeat("a", 200)+`"}`), 100, &v); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized body: %v", err)
	}
	if err := Decode(strings.NewReader(`{"name":"a","x":1}`), 100, &v); err == nil {
		t.Error("unknown field accepted")
	}
	if err := Decode(strings.NewReader(`{"name":"a"} {}`), 100, &v); err == nil {
		t.Error("trailing value accepted")
	}
}

func selfSigned(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: ca, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key, der
}

func TestPinnedVerification(t *testing.T) {
	ca, caKey, caDER := selfSigned(t, nil, nil, true)
	_, _, leafDER := selfSigned(t, ca, caKey, false)
	_, _, otherCADER := selfSigned(t, nil, nil, true)
	pin := sha256.Sum256(caDER)

	if err := verifyPinned([][]byte{leafDER, caDER}, pin[:]); err != nil {
		t.Errorf("chain with the pinned CA: %v", err)
	}
	if err := verifyPinned([][]byte{leafDER, otherCADER}, pin[:]); err == nil {
		t.Error("chain without the pinned CA accepted")
	}
	// The pinned CA sent along with a leaf it did not sign.
	_, _, strayLeaf := selfSigned(t, nil, nil, false)
	if err := verifyPinned([][]byte{strayLeaf, caDER}, pin[:]); err == nil {
		t.Error("leaf not signed by the pinned CA accepted")
	}
	leafPin := sha256.Sum256(leafDER)
	if err := verifyPinned([][]byte{leafDER}, leafPin[:]); err != nil {
		t.Errorf("pinned leaf: %v", err)
	}
	if _, err := TLSConfig("zz", ""); err == nil {
		t.Error("invalid fingerprint accepted")
	}
	if _, err := TLSConfig(hex.EncodeToString(pin[:]), ""); err != nil {
		t.Errorf("valid fingerprint: %v", err)
	}
}
