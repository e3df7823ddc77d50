package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Quirk names a deviation from RFC 5280 or the TCG EK Credential Profile
// that EK certificates of real TPMs show and that the EK certificate
// functions accept. Each accepted quirk is reported so an operator can see
// what was tolerated.
type Quirk string

// Quirks the EK certificate functions handle.
const (
	// QuirkTrailingBytes: bytes follow the certificate's DER (TPMs pad
	// the NV index); they are cut off.
	QuirkTrailingBytes Quirk = "trailing_bytes"
	// QuirkCriticalTPMSAN: the subjectAltName is critical and holds only a
	// directoryName with TPM manufacturer, model and version, as the TCG
	// profile prescribes; Go's verifier does not know it, so it is marked
	// handled after it parsed.
	QuirkCriticalTPMSAN Quirk = "critical_san_tpm_attributes"
	// QuirkRSAESOAEPKey: the subject public key algorithm is
	// id-RSAES-OAEP (TPM 1.2-era certificates); the RSA key is read from
	// it.
	QuirkRSAESOAEPKey Quirk = "rsaes_oaep_public_key"
	// QuirkSHA1Signature: a certificate in the chain is signed with SHA-1;
	// accepted only with EKCertificateOptions.InsecureAllowSHA1.
	QuirkSHA1Signature Quirk = "sha1_signature"
	// QuirkIssuerNameEncoding: a certificate's issuer name equals its
	// issuer's subject name only after comparing the attribute values as
	// text, because the two use different string types (STMicro ECC
	// intermediates 02 and 03 write UTF8String where their root writes
	// PrintableString). RFC 5280 treats such names as equal; Go's
	// verifier requires identical bytes.
	QuirkIssuerNameEncoding Quirk = "issuer_name_encoding"
)

// OIDs of the TCG EK Credential Profile and RFC 5280.
var (
	oidSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidRSAESOAEP       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
)

// EKCertificate is a parsed EK certificate with the TPM attributes of its
// subjectAltName. Parsing alone does not make it trusted: see
// VerifyEKCertificate.
type EKCertificate struct {
	*x509.Certificate
	// PublicKey is the EK public key (*rsa.PublicKey or
	// *ecdsa.PublicKey), also for RSAES-OAEP certificates where
	// Certificate.PublicKey is nil.
	PublicKey crypto.PublicKey
	// TPM manufacturer (such as "id:49465800"), model and firmware
	// version from the subjectAltName directoryName.
	Manufacturer, Model, Version string
	// Quirks lists the deviations that were accepted.
	Quirks []Quirk
	// Chain is the verified chain from the certificate to a root, set by
	// VerifyEKCertificate.
	Chain []*x509.Certificate
}

// maxCertificateSize bounds an EK certificate (NV indexes hold a few KiB).
const maxCertificateSize = 16 << 10

// ParseEKCertificate parses an EK certificate as read from NV or sent by an
// agent, accepting the quirks listed in Quirks.
func ParseEKCertificate(der []byte) (*EKCertificate, error) {
	if len(der) > maxCertificateSize {
		return nil, fmt.Errorf("EK certificate of %d bytes exceeds the maximum of %d", len(der), maxCertificateSize)
	}
	var quirks []Quirk
	var outer asn1.RawValue
	rest, err := asn1.Unmarshal(der, &outer)
	if err != nil {
		return nil, fmt.Errorf("parsing EK certificate: %w", err)
	}
	if len(rest) > 0 {
		der = der[:len(der)-len(rest)]
		quirks = append(quirks, QuirkTrailingBytes)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing EK certificate: %w", err)
	}
	ek := &EKCertificate{Certificate: cert, PublicKey: cert.PublicKey}

	if ek.PublicKey == nil {
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil {
			return nil, fmt.Errorf("parsing EK certificate public key: %w", err)
		}
		if !spki.Algorithm.Algorithm.Equal(oidRSAESOAEP) {
			return nil, fmt.Errorf("EK certificate public key algorithm %s is not supported", spki.Algorithm.Algorithm)
		}
		key, err := x509.ParsePKCS1PublicKey(spki.PublicKey.RightAlign())
		if err != nil {
			return nil, fmt.Errorf("parsing EK certificate RSAES-OAEP public key: %w", err)
		}
		ek.PublicKey = key
		quirks = append(quirks, QuirkRSAESOAEPKey)
	}

	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		onlyTPM, err := ek.parseTPMSAN(ext.Value)
		if err != nil {
			return nil, fmt.Errorf("parsing EK certificate subjectAltName: %w", err)
		}
		if ext.Critical && onlyTPM {
			quirks = append(quirks, QuirkCriticalTPMSAN)
		}
	}
	ek.Quirks = quirks
	return ek, nil
}

// parseTPMSAN reads the TPM attributes of a subjectAltName and reports
// whether it holds nothing but directoryNames.
func (ek *EKCertificate) parseTPMSAN(value []byte) (bool, error) {
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(value, &names); err != nil || len(rest) > 0 {
		return false, fmt.Errorf("not a GeneralNames sequence: %v", err)
	}
	onlyDirectoryNames := true
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || n.Tag != 4 {
			onlyDirectoryNames = false
			continue
		}
		var rdns pkix.RDNSequence
		if rest, err := asn1.Unmarshal(n.Bytes, &rdns); err != nil || len(rest) > 0 {
			return false, fmt.Errorf("invalid directoryName: %v", err)
		}
		for _, rdn := range rdns {
			for _, atv := range rdn {
				s, _ := atv.Value.(string)
				switch {
				case atv.Type.Equal(oidTPMManufacturer):
					ek.Manufacturer = s
				case atv.Type.Equal(oidTPMModel):
					ek.Model = s
				case atv.Type.Equal(oidTPMVersion):
					ek.Version = s
				}
			}
		}
	}
	return onlyDirectoryNames, nil
}

// EKCertificateOptions configures VerifyEKCertificate.
type EKCertificateOptions struct {
	// Roots are the trusted vendor CA certificates, configured
	// explicitly (no system directory is searched).
	Roots []*x509.Certificate
	// Intermediates are untrusted CA certificates that may complete a
	// chain.
	Intermediates []*x509.Certificate
	// CurrentTime is the time at which validity periods are checked.
	CurrentTime time.Time
	// InsecureAllowSHA1 accepts SHA-1 signatures in the chain, which TPM
	// 1.2-era and some Infineon and Nuvoton CAs use.
	InsecureAllowSHA1 bool
}

// VerifyEKCertificate checks an EK certificate. It checks, in order:
//
//  1. the certificate parses (accepting and reporting the quirks above);
//  2. when ek is not nil, the certificate's public key equals ek;
//  3. the certificate chains to one of opts.Roots through opts.Roots and
//     opts.Intermediates, every certificate valid at opts.CurrentTime,
//     with any extended key usage. When Go's verifier finds no issuer, the
//     chain is rebuilt by hand to accept QuirkIssuerNameEncoding and, only
//     with opts.InsecureAllowSHA1, QuirkSHA1Signature.
//
// It does not check revocation, and it does not check that the TPM holding
// the EK is the one an agent talks to: credential activation does that.
// Failures are *VerificationError with ReasonEKCertificate.
func VerifyEKCertificate(der []byte, ek crypto.PublicKey, opts EKCertificateOptions) (*EKCertificate, error) {
	if len(opts.Roots) == 0 {
		return nil, errors.New("verify EK certificate: no vendor roots configured: pass the TPM vendors' CA certificates explicitly")
	}
	if opts.CurrentTime.IsZero() {
		return nil, errors.New("verify EK certificate: CurrentTime is not set")
	}
	// 1.
	c, err := ParseEKCertificate(der)
	if err != nil {
		return nil, verifyErrWrap(ReasonEKCertificate, err, "EK certificate is malformed")
	}
	// 2.
	if ek != nil && !samePublicKey(c.PublicKey, ek) {
		return nil, verifyErr(ReasonEKCertificate, "EK certificate %q certifies another key than the EK", c.Subject)
	}
	// 3.
	leaf := c.Certificate
	if slices.Contains(c.Quirks, QuirkCriticalTPMSAN) {
		copyCert := *leaf
		copyCert.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(leaf.UnhandledCriticalExtensions), func(id asn1.ObjectIdentifier) bool {
			return id.Equal(oidSubjectAltName)
		})
		leaf = &copyCert
	}
	roots := x509.NewCertPool()
	for _, r := range opts.Roots {
		roots.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, i := range opts.Intermediates {
		inter.AddCert(i)
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   opts.CurrentTime,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if verr == nil {
		c.Chain = chains[0]
		return c, nil
	}
	// Go reports both a SHA-1 signature and an issuer name that differs
	// only in its string types as an unknown authority: only then is the
	// chain rebuilt by hand, accepting and reporting those two quirks.
	var unknown x509.UnknownAuthorityError
	if errors.As(verr, &unknown) {
		chain, quirks, err := walkChain(leaf, opts)
		if err == nil {
			c.Quirks = append(c.Quirks, quirks...)
			c.Chain = chain
			return c, nil
		}
		verr = fmt.Errorf("%w; building the chain by hand: %w", verr, err)
	}
	return nil, verifyErrWrap(ReasonEKCertificate, verr, "EK certificate %q (issuer %q) does not chain to a configured vendor root", c.Subject, c.Issuer)
}

// maxChainDepth bounds the chain walk; vendor chains have at most four
// certificates.
const maxChainDepth = 6

// walkChain builds a chain from leaf to a root by issuer name and checks
// each link directly: the signature (SHA-1 only with
// opts.InsecureAllowSHA1), the validity period, and that the issuer is a
// CA allowed to sign certificates. Issuer names match byte for byte or, as
// QuirkIssuerNameEncoding, by their attribute values as text. It returns
// the quirks it needed.
func walkChain(leaf *x509.Certificate, opts EKCertificateOptions) ([]*x509.Certificate, []Quirk, error) {
	chain := []*x509.Certificate{leaf}
	var quirks []Quirk
	addQuirk := func(q Quirk) {
		if !slices.Contains(quirks, q) {
			quirks = append(quirks, q)
		}
	}
	cur := leaf
	for depth := 0; depth < maxChainDepth; depth++ {
		if opts.CurrentTime.Before(cur.NotBefore) || opts.CurrentTime.After(cur.NotAfter) {
			return nil, nil, fmt.Errorf("certificate %q at depth %d is not valid at %s", cur.Subject, depth, opts.CurrentTime.Format(time.RFC3339))
		}
		for _, root := range opts.Roots {
			if root.Equal(cur) {
				return chain, quirks, nil
			}
		}
		var parent *x509.Certificate
		var lastErr error
		for _, cand := range slices.Concat(opts.Roots, opts.Intermediates) {
			exact := bytes.Equal(cand.RawSubject, cur.RawIssuer)
			if !exact && !namesEqualAsText(cand.RawSubject, cur.RawIssuer) {
				continue
			}
			if !cand.IsCA || (cand.KeyUsage != 0 && cand.KeyUsage&x509.KeyUsageCertSign == 0) {
				lastErr = fmt.Errorf("%q is not a CA allowed to sign certificates", cand.Subject)
				continue
			}
			if err := cand.CheckSignature(cur.SignatureAlgorithm, cur.RawTBSCertificate, cur.Signature); err != nil {
				lastErr = err
				continue
			}
			if !exact {
				addQuirk(QuirkIssuerNameEncoding)
			}
			parent = cand
			break
		}
		if parent == nil {
			return nil, nil, fmt.Errorf("no configured CA issued %q at depth %d (%v)", cur.Subject, depth, lastErr)
		}
		switch cur.SignatureAlgorithm {
		case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
			if !opts.InsecureAllowSHA1 {
				return nil, nil, fmt.Errorf("certificate %q at depth %d is signed with SHA-1: allow it explicitly (InsecureAllowSHA1, --insecure-allow-sha1) if this vendor chain must be accepted", cur.Subject, depth)
			}
			addQuirk(QuirkSHA1Signature)
		}
		chain = append(chain, parent)
		cur = parent
	}
	return nil, nil, fmt.Errorf("chain longer than %d certificates", maxChainDepth)
}

// namesEqualAsText compares two DER names attribute by attribute, the
// values as text with surrounding spaces trimmed and case folded, so
// PrintableString and UTF8String encodings of one name are equal.
func namesEqualAsText(a, b []byte) bool {
	var ra, rb pkix.RDNSequence
	if rest, err := asn1.Unmarshal(a, &ra); err != nil || len(rest) > 0 {
		return false
	}
	if rest, err := asn1.Unmarshal(b, &rb); err != nil || len(rest) > 0 {
		return false
	}
	if len(ra) != len(rb) {
		return false
	}
	for i := range ra {
		if len(ra[i]) != len(rb[i]) {
			return false
		}
		for j := range ra[i] {
			va, oka := ra[i][j].Value.(string)
			vb, okb := rb[i][j].Value.(string)
			if !ra[i][j].Type.Equal(rb[i][j].Type) || !oka || !okb ||
				!strings.EqualFold(strings.TrimSpace(va), strings.TrimSpace(vb)) {
				return false
			}
		}
	}
	return true
}

func samePublicKey(a, b crypto.PublicKey) bool {
	switch ka := a.(type) {
	case *rsa.PublicKey:
		kb, ok := b.(*rsa.PublicKey)
		return ok && ka.Equal(kb)
	case *ecdsa.PublicKey:
		kb, ok := b.(*ecdsa.PublicKey)
		return ok && ka.Equal(kb)
	}
	return false
}

// LoadCertificates reads PEM (one or more CERTIFICATE blocks, text before
// them ignored) or DER certificate files at the given paths.
func LoadCertificates(paths ...string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading certificates: %w", err)
		}
		found := false
		for rest := b; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: parsing certificate: %w", p, err)
			}
			out = append(out, c)
			found = true
		}
		if !found {
			c, err := x509.ParseCertificate(bytes.TrimRight(b, "\r\n"))
			if err != nil {
				return nil, fmt.Errorf("%s: neither PEM certificates nor one DER certificate: %w", p, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}
