package attest

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func ekTestCerts(t *testing.T, names ...string) []*x509.Certificate {
	t.Helper()
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join("testdata", "ekcerts", n))
	}
	certs, err := LoadCertificates(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func ekTestDER(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ekcerts", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	return block.Bytes
}

// surveyDate is the date at which the vendor chains in testdata were
// checked. Every certificate used below is valid on that date unless a test
// states otherwise.
var surveyDate = time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)

func TestVerifyEKCertificateVendors(t *testing.T) {
	for _, tc := range []struct {
		name         string
		leaf         string
		roots, inter []string
		manufacturer string
		model        string
		wantQuirks   []Quirk
	}{
		{
			name: "Infineon SLB 9670 RSA", leaf: "infineon-234480e4f236.pem",
			roots: []string{"infineon-optiga-tm-rsa-root-ca.pem"}, inter: []string{"infineon-optiga-tm-rsa-manufacturing-ca-035-6b8b6216.pem"},
			manufacturer: "id:49465800", model: "SLB 9670 TPM2.0", wantQuirks: []Quirk{QuirkCriticalTPMSAN},
		},
		{
			name: "STMicro ST33 ECC", leaf: "stmicro-85f388433b8a.pem",
			roots: []string{"globalsign-trusted-platform-module-ecc-root-ca.pem"}, inter: []string{"stmicro-stm-tpm-ecc-intermediate-ca-01.pem", "stmicro-stm-tpm-ecc-root-ca-01.pem"},
			manufacturer: "id:53544D20", wantQuirks: []Quirk{QuirkCriticalTPMSAN},
		},
		{
			name: "Nuvoton NPCT75x", leaf: "nuvoton-933cdb174526.pem",
			roots:        []string{"nuvoton-tpm-root-ca-2111.pem"},
			manufacturer: "id:4E544300", wantQuirks: []Quirk{QuirkCriticalTPMSAN},
		},
		{
			name: "GCE vTPM", leaf: "gce-af614aee3b3d.pem",
			roots: []string{"google-gce-tpm-ek-v1-cloud-host-root-signer-2018-04-06.pem"}, inter: []string{"google-gce-tpm-ek-v1-cloud-host-signer-2021-10-12.pem"},
			manufacturer: "id:474F4F47", wantQuirks: []Quirk{QuirkCriticalTPMSAN},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := ekTestDER(t, tc.leaf)
			parsed, err := ParseEKCertificate(der)
			if err != nil {
				t.Fatalf("ParseEKCertificate: %v", err)
			}
			c, err := VerifyEKCertificate(der, parsed.PublicKey, EKCertificateOptions{
				Roots:         ekTestCerts(t, tc.roots...),
				Intermediates: ekTestCerts(t, tc.inter...),
				CurrentTime:   surveyDate,
			})
			if err != nil {
				t.Fatalf("VerifyEKCertificate: %v", err)
			}
			if c.Manufacturer != tc.manufacturer {
				t.Errorf("manufacturer %q, want %q", c.Manufacturer, tc.manufacturer)
			}
			if tc.model != "" && c.Model != tc.model {
				t.Errorf("model %q, want %q", c.Model, tc.model)
			}
			if !slices.Equal(c.Quirks, tc.wantQuirks) {
				t.Errorf("quirks %v, want %v", c.Quirks, tc.wantQuirks)
			}
			if want := len(tc.inter) + 2; len(c.Chain) != want {
				t.Errorf("chain of %d certificates, want %d", len(c.Chain), want)
			}
		})
	}
}

func TestVerifyEKCertificateFailures(t *testing.T) {
	infineon := ekTestDER(t, "infineon-234480e4f236.pem")
	infineonOpts := EKCertificateOptions{
		Roots:         ekTestCerts(t, "infineon-optiga-tm-rsa-root-ca.pem"),
		Intermediates: ekTestCerts(t, "infineon-optiga-tm-rsa-manufacturing-ca-035-6b8b6216.pem"),
		CurrentTime:   surveyDate,
	}

	t.Run("root of another vendor", func(t *testing.T) {
		opts := infineonOpts
		opts.Roots = ekTestCerts(t, "nuvoton-tpm-root-ca-2111.pem")
		_, err := VerifyEKCertificate(infineon, nil, opts)
		wantReason(t, err, ReasonEKCertificate)
	})
	t.Run("expired", func(t *testing.T) {
		opts := infineonOpts
		opts.CurrentTime = time.Date(2034, 1, 1, 0, 0, 0, 0, time.UTC)
		_, err := VerifyEKCertificate(infineon, nil, opts)
		wantReason(t, err, ReasonEKCertificate)
	})
	t.Run("certificate of another key", func(t *testing.T) {
		other, err := ParseEKCertificate(ekTestDER(t, "gce-af614aee3b3d.pem"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = VerifyEKCertificate(infineon, other.PublicKey, infineonOpts)
		wantReason(t, err, ReasonEKCertificate)
	})
	t.Run("no roots configured", func(t *testing.T) {
		opts := infineonOpts
		opts.Roots = nil
		_, err := VerifyEKCertificate(infineon, nil, opts)
		var verr *VerificationError
		if err == nil || errors.As(err, &verr) {
			t.Fatalf("got %v, want an operational error", err)
		}
	})
}

// A TPM 1.2-era STMicro certificate: RSAES-OAEP key, SHA-1 signatures,
// expired in 2024.
func TestVerifyEKCertificateSHA1OAEP(t *testing.T) {
	der := ekTestDER(t, "stmicro-07d685f93943.pem")
	opts := EKCertificateOptions{
		Roots:         ekTestCerts(t, "globalsign-trusted-platform-module-root-ca.pem"),
		Intermediates: ekTestCerts(t, "stmicro-stm-tpm-ek-intermediate-ca-02.pem", "stmicro-stm-tpm-ek-root-ca.pem"),
		CurrentTime:   time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	parsed, err := ParseEKCertificate(der)
	if err != nil {
		t.Fatalf("ParseEKCertificate: %v", err)
	}
	if !slices.Contains(parsed.Quirks, QuirkRSAESOAEPKey) || parsed.PublicKey == nil {
		t.Fatalf("quirks %v, key %T: want the RSAES-OAEP key read", parsed.Quirks, parsed.PublicKey)
	}
	_, err = VerifyEKCertificate(der, parsed.PublicKey, opts)
	wantReason(t, err, ReasonEKCertificate)

	opts.InsecureAllowSHA1 = true
	c, err := VerifyEKCertificate(der, parsed.PublicKey, opts)
	if err != nil {
		t.Fatalf("VerifyEKCertificate with InsecureAllowSHA1: %v", err)
	}
	if !slices.Contains(c.Quirks, QuirkSHA1Signature) {
		t.Errorf("quirks %v lack %s", c.Quirks, QuirkSHA1Signature)
	}
	if len(c.Chain) != 4 {
		t.Errorf("chain of %d certificates, want 4", len(c.Chain))
	}

	// The fallback still checks validity periods.
	opts.CurrentTime = surveyDate
	_, err = VerifyEKCertificate(der, parsed.PublicKey, opts)
	wantReason(t, err, ReasonEKCertificate)
}

func TestParseEKCertificatePadding(t *testing.T) {
	der := ekTestDER(t, "nuvoton-933cdb174526.pem")
	padded := append(append([]byte(nil), der...), 0xff, 0xff, 0xff, 0xff)
	c, err := ParseEKCertificate(padded)
	if err != nil {
		t.Fatalf("ParseEKCertificate: %v", err)
	}
	if !slices.Contains(c.Quirks, QuirkTrailingBytes) {
		t.Errorf("quirks %v lack %s", c.Quirks, QuirkTrailingBytes)
	}
	if len(c.Raw) != len(der) {
		t.Errorf("certificate of %d bytes, want %d", len(c.Raw), len(der))
	}
}

// STMicro's ECC intermediate CA 02 names its issuer with UTF8String where
// the root's subject uses PrintableString: Go's verifier finds no issuer,
// the hand-built chain accepts and reports the quirk.
func TestVerifyEKCertificateIssuerNameEncoding(t *testing.T) {
	inter := ekTestCerts(t, "stmicro-stm-tpm-ecc-intermediate-ca-02.pem")[0]
	roots := ekTestCerts(t, "stmicro-stm-tpm-ecc-root-ca-01.pem")

	pool := x509.NewCertPool()
	pool.AddCert(roots[0])
	if _, err := inter.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: surveyDate, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("Go's verifier chains the intermediate: the quirk this test covers is gone")
	}

	c, err := VerifyEKCertificate(inter.Raw, nil, EKCertificateOptions{Roots: roots, CurrentTime: surveyDate})
	if err != nil {
		t.Fatalf("VerifyEKCertificate: %v", err)
	}
	if !slices.Contains(c.Quirks, QuirkIssuerNameEncoding) {
		t.Errorf("quirks %v lack %s", c.Quirks, QuirkIssuerNameEncoding)
	}
	if len(c.Chain) != 2 {
		t.Errorf("chain of %d certificates, want 2", len(c.Chain))
	}

	// A root that did not issue the certificate is rejected.
	other := ekTestCerts(t, "globalsign-trusted-platform-module-ecc-root-ca.pem")
	_, err = VerifyEKCertificate(inter.Raw, nil, EKCertificateOptions{Roots: other, CurrentTime: surveyDate})
	wantReason(t, err, ReasonEKCertificate)
}

func TestNamesEqualAsText(t *testing.T) {
	inter := ekTestCerts(t, "stmicro-stm-tpm-ecc-intermediate-ca-02.pem")[0]
	root := ekTestCerts(t, "stmicro-stm-tpm-ecc-root-ca-01.pem")[0]
	if !namesEqualAsText(inter.RawIssuer, root.RawSubject) {
		t.Error("issuer and root subject differ as text")
	}
	if namesEqualAsText(inter.RawSubject, root.RawSubject) {
		t.Error("intermediate and root subjects compare equal")
	}
	if namesEqualAsText([]byte{0x30, 0x80}, root.RawSubject) {
		t.Error("malformed DER compares equal")
	}
}
