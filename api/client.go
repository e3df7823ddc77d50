package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vouch-attest/vouch/internal/strictjson"
)

// Client calls the vouch server's API. Token is sent as a bearer token
// when set (admin calls); agents leave it empty.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// maxResponseBytes bounds every response the client reads.
const maxResponseBytes = 8 << 20

// Do sends in (when not nil) as JSON and decodes a 2xx response into out
// (when not nil). A non-2xx response becomes an *Error; a 204 leaves out
// untouched and returns the status.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("%w: pin the verifier with --server-fingerprint (or VOUCH_SERVER_FINGERPRINT) as vouch server prints it, or give its CA with --ca", err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read response of %s %s: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			e = Error{Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(data))}
		}
		return resp.StatusCode, &e
	}
	if resp.StatusCode == http.StatusNoContent || out == nil {
		return resp.StatusCode, nil
	}
	// Members a newer server adds are ignored, but a repeated member or one
	// spelled in another case is rejected, as the server rejects them in
	// requests.
	if err := strictjson.DecodeLarge(data, out, strictjson.Options{AllowUnknown: true}); err != nil {
		return resp.StatusCode, fmt.Errorf("invalid response of %s %s: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

// ErrorCode returns the API error code in err's chain, or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TLSConfig returns a client TLS configuration for the vouch server.
// With a fingerprint (hex SHA-256 of a certificate's DER, as vouch server
// prints it), the server's chain must contain that certificate and the
// leaf must chain to it. Host names are not checked, because the pin
// identifies the server. With caFile, the chain must verify against that
// CA as usual. With neither, the system roots are used.
func TLSConfig(fingerprint, caFile string) (*tls.Config, error) {
	switch {
	case fingerprint != "":
		want, err := hex.DecodeString(strings.ReplaceAll(strings.ToLower(fingerprint), ":", ""))
		if err != nil || len(want) != sha256.Size {
			return nil, fmt.Errorf("invalid server fingerprint %q: give the 64 hex digits vouch server prints", fingerprint)
		}
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			// Verification happens in VerifyPeerCertificate against the pin.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				return verifyPinned(raw, want)
			},
		}, nil
	case caFile != "":
		data, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read server CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("server CA file %s contains no PEM certificate: give the ca.pem that vouch server wrote", caFile)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
	default:
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
}

func verifyPinned(raw [][]byte, want []byte) error {
	if len(raw) == 0 {
		return errors.New("server sent no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("server certificate %d: %w", i, err)
		}
		certs = append(certs, c)
	}
	for i, der := range raw {
		sum := sha256.Sum256(der)
		if subtle.ConstantTimeCompare(sum[:], want) != 1 {
			continue
		}
		if i == 0 {
			return nil
		}
		roots := x509.NewCertPool()
		roots.AddCert(certs[i])
		inter := x509.NewCertPool()
		for _, c := range certs[1:i] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: time.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Errorf("server certificate does not chain to the pinned certificate: %w", err)
		}
		return nil
	}
	return &PinMismatchError{Pinned: want}
}

// PinMismatchError reports a server whose certificate chain contains no
// certificate with the pinned fingerprint: the pin is wrong, or the server
// is another one or uses a new CA.
type PinMismatchError struct {
	Pinned []byte // SHA-256 of the expected certificate's DER
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("no certificate of the server matches the pinned fingerprint %x: check --server-fingerprint against the one vouch server printed", e.Pinned)
}
