package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// signaturePrefix names the algorithm in the signature header.
const signaturePrefix = "sha256="

// Sign returns the value of the HeaderSignature header for body:
// "sha256=" and the hex HMAC-SHA256 of body keyed with secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header, the HeaderSignature value a receiver got,
// is the signature of body with secret. It compares in constant time.
// Receivers should verify the raw body before they decode it.
func Verify(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok {
		return false
	}
	gotMAC, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(gotMAC, mac.Sum(nil))
}
