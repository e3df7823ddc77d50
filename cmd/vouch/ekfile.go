package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/verifier"
)

// ekPinRequest reads the EK certificate or public key of 'vouch ek pin'
// from data (PEM or DER) and returns the request carrying its DER. A
// private key is rejected before anything is sent, with exit code 2, and
// so is a CA certificate or a key that cannot be a TPM EK. A DER that
// starts as a certificate but that x509 cannot parse is sent as is, with a
// warning, and the verifier's message names the cause.
func ekPinRequest(path string, data []byte, warn io.Writer) (api.PinEKRequest, error) {
	der, kind, err := ekDER(path, data)
	if err != nil {
		return api.PinEKRequest{}, err
	}
	switch kind {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(der)
		if err != nil && !looksLikeCertificateDER(der) {
			return api.PinEKRequest{}, withExitCode(exitUnreadable, fmt.Errorf("%s: invalid certificate: %w", path, err))
		}
		if err != nil {
			// A DER that starts as a certificate but that Go's parser
			// rejects goes to the verifier, whose message names the cause.
			fmt.Fprintf(warn, "warning: %s: %v; sending it to the verifier as is\n", path, err)
			return api.PinEKRequest{Certificate: der}, nil
		}
		if err := verifier.CheckEKCertificate(cert); err != nil {
			return api.PinEKRequest{}, withExitCode(exitUsage, fmt.Errorf("%s: %w: give the TPM's EK certificate (tpm2_getekcertificate) or EK public key", path, err))
		}
		return api.PinEKRequest{Certificate: der}, nil
	default:
		key, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return api.PinEKRequest{}, withExitCode(exitUnreadable, fmt.Errorf("%s: invalid public key: %w", path, err))
		}
		if err := verifier.CheckEKKey(key); err != nil {
			return api.PinEKRequest{}, withExitCode(exitUsage, fmt.Errorf("%s: %w", path, err))
		}
		return api.PinEKRequest{PublicKey: der}, nil
	}
}

// ekDER returns the DER of the one CERTIFICATE or PUBLIC KEY PEM block of
// data, or data itself when it is DER of either, with that block type. A
// file with several such blocks is rejected, because which EK it names is
// ambiguous.
func ekDER(path string, data []byte) ([]byte, string, error) {
	if strings.Contains(string(data), "-----BEGIN") {
		var found *pem.Block
		rest := data
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			switch {
			case strings.Contains(block.Type, "PRIVATE KEY"):
				return nil, "", withExitCode(exitUsage, fmt.Errorf("%s contains a private key (%s), which was not sent: give the EK certificate or public key", path, block.Type))
			case block.Type != "CERTIFICATE" && block.Type != "PUBLIC KEY":
			case found != nil:
				return nil, "", withExitCode(exitUsage, fmt.Errorf("%s contains more than one certificate or public key: give a file with the one EK to pin", path))
			default:
				found = block
			}
		}
		if found == nil {
			return nil, "", withExitCode(exitUnreadable, fmt.Errorf("%s contains no CERTIFICATE or PUBLIC KEY PEM block", path))
		}
		return found.Bytes, found.Type, nil
	}
	if isPrivateKeyDER(data) {
		return nil, "", withExitCode(exitUsage, fmt.Errorf("%s contains a private key in DER, which was not sent: give the EK certificate or public key", path))
	}
	if _, err := x509.ParsePKIXPublicKey(data); err == nil {
		return data, "PUBLIC KEY", nil
	}
	if _, err := x509.ParseCertificate(data); err == nil || looksLikeCertificateDER(data) {
		return data, "CERTIFICATE", nil
	}
	return nil, "", withExitCode(exitUnreadable, errors.New(path+" is neither a certificate nor a public key, in PEM or DER"))
}

func isPrivateKeyDER(data []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(data); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(data)
	return err == nil
}

// looksLikeCertificateDER reports whether data starts as an X.509
// certificate does: SEQUENCE { SEQUENCE { [0] version ... } ... }, so that
// a certificate Go's parser rejects still reaches the verifier.
func looksLikeCertificateDER(data []byte) bool {
	skip := func(b []byte) []byte {
		// Skips a SEQUENCE's tag and length and returns its contents' start.
		if len(b) < 2 || b[0] != 0x30 {
			return nil
		}
		n := int(b[1])
		switch {
		case n < 0x80:
			return b[2:]
		case n == 0x81 || n == 0x82 || n == 0x83:
			if len(b) < 2+n-0x80 {
				return nil
			}
			return b[2+n-0x80:]
		}
		return nil
	}
	tbs := skip(skip(data))
	return len(tbs) > 0 && tbs[0] == 0xa0
}
