// Package totp computes time-based one-time passwords (TOTP, RFC 6238) on
// top of HMAC-based one-time passwords (HOTP, RFC 4226), and reads and writes
// the otpauth:// URIs that authenticator apps import from a QR code.
//
// The package takes the time as an argument and the randomness as an
// io.Reader, so callers and tests control both.
package totp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

// Algorithm is the HMAC hash function of a key. RFC 6238 allows SHA-1,
// SHA-256 and SHA-512. Most authenticator apps support only SHA-1, which
// remains secure for HMAC.
type Algorithm string

// Algorithms named as in otpauth URIs.
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

func (a Algorithm) newHash() (func() hash.Hash, error) {
	switch a {
	case SHA1:
		return sha1.New, nil
	case SHA256:
		return sha256.New, nil
	case SHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("unsupported totp algorithm %q: use SHA1, SHA256 or SHA512", string(a))
}

// Defaults that every authenticator app accepts.
const (
	DefaultDigits     = 6
	DefaultPeriod     = 30 * time.Second
	DefaultSecretSize = 20 // bytes, the output size of HMAC-SHA1 as RFC 4226 recommends
)

// Limits on key parameters. RFC 4226 requires at least 16 bytes of secret
// (128 bits) and at least 6 digits; 10 digits exceed the 31-bit truncated value.
const (
	MinSecretSize = 16
	MaxSecretSize = 64
	MinDigits     = 6
	MaxDigits     = 10
)

// Secret is the shared key of a TOTP generator. String and GoString return
// a placeholder and MarshalText fails, so that the key does not end up in
// logs or JSON by accident. Use Bytes or Key.URI where the secret is meant
// to leave the process.
type Secret struct {
	b []byte
}

// NewSecret copies b into a Secret.
func NewSecret(b []byte) Secret {
	return Secret{b: append([]byte(nil), b...)}
}

// GenerateSecret reads size random bytes from rand.
func GenerateSecret(rand io.Reader, size int) (Secret, error) {
	if size < MinSecretSize || size > MaxSecretSize {
		return Secret{}, fmt.Errorf("totp secret size %d out of range: use %d to %d bytes", size, MinSecretSize, MaxSecretSize)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(rand, b); err != nil {
		return Secret{}, fmt.Errorf("read %d random bytes for totp secret: %w", size, err)
	}
	return Secret{b: b}, nil
}

// Bytes returns a copy of the secret.
func (s Secret) Bytes() []byte { return append([]byte(nil), s.b...) }

// Len returns the secret's length in bytes.
func (s Secret) Len() int { return len(s.b) }

// String returns a placeholder, never the secret.
func (s Secret) String() string { return "totp.Secret(REDACTED)" }

// GoString returns a placeholder, never the secret.
func (s Secret) GoString() string { return s.String() }

// MarshalText fails, so that encoding/json and similar refuse to write the secret.
func (s Secret) MarshalText() ([]byte, error) {
	return nil, errors.New("totp secret is not marshalled: write it sealed or as an otpauth URI on purpose")
}

// Wipe overwrites the secret's bytes with zeros. Copies made by Bytes are
// not affected.
func (s Secret) Wipe() { clear(s.b) }

// Key is a TOTP generator: a secret and the parameters an authenticator app
// needs to produce the same codes.
type Key struct {
	Secret    Secret
	Issuer    string // shown by the app above the code, e.g. "Vouch"
	Account   string // shown by the app, e.g. the host name
	Algorithm Algorithm
	Digits    int
	Period    time.Duration // time step X of RFC 6238; whole seconds
}

// NewKey returns a key with the default parameters that authenticator apps
// expect: SHA-1, 6 digits, 30 seconds.
func NewKey(secret Secret, issuer, account string) Key {
	return Key{Secret: secret, Issuer: issuer, Account: account, Algorithm: SHA1, Digits: DefaultDigits, Period: DefaultPeriod}
}

// Validate checks the key's parameters.
func (k Key) Validate() error {
	if n := k.Secret.Len(); n < MinSecretSize || n > MaxSecretSize {
		return fmt.Errorf("totp secret is %d bytes: use %d to %d bytes", n, MinSecretSize, MaxSecretSize)
	}
	if _, err := k.Algorithm.newHash(); err != nil {
		return err
	}
	if k.Digits < MinDigits || k.Digits > MaxDigits {
		return fmt.Errorf("totp digits %d out of range: use %d to %d", k.Digits, MinDigits, MaxDigits)
	}
	if k.Period < time.Second || k.Period%time.Second != 0 {
		return fmt.Errorf("totp period %v is not a whole number of seconds of at least 1s", k.Period)
	}
	return nil
}

// Counter returns the RFC 6238 time step counter T = floor(unix(t) / period).
// Times before the Unix epoch map to counter 0.
func (k Key) Counter(t time.Time) uint64 {
	secs := t.Unix()
	if secs < 0 {
		return 0
	}
	return uint64(secs) / uint64(k.Period/time.Second)
}

// StepStart returns the start of the time step that contains t, which is
// the time a code for t is based on.
func (k Key) StepStart(t time.Time) time.Time {
	return time.Unix(int64(k.Counter(t)*uint64(k.Period/time.Second)), 0).In(t.Location())
}

// Code returns the TOTP code for time t, zero-padded to k.Digits digits.
func (k Key) Code(t time.Time) (string, error) {
	return k.HOTP(k.Counter(t))
}

// HOTP returns the RFC 4226 HOTP value for counter c.
func (k Key) HOTP(c uint64) (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	newHash, _ := k.Algorithm.newHash()

	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], c)
	mac := hmac.New(newHash, k.Secret.b)
	mac.Write(msg[:])
	sum := mac.Sum(nil)

	// Dynamic truncation (RFC 4226 section 5.3): the low nibble of the last
	// byte picks 4 bytes, whose top bit is cleared.
	offset := sum[len(sum)-1] & 0x0f
	value := binary.BigEndian.Uint32(sum[offset:offset+4]) & 0x7fffffff

	mod := uint64(1)
	for range k.Digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", k.Digits, uint64(value)%mod), nil
}

// Verify reports whether code matches the code for time t or for up to skew
// time steps before or after it. It compares in constant time.
func (k Key) Verify(code string, t time.Time, skew uint) (bool, error) {
	c := k.Counter(t)
	ok := 0
	for d := -int64(skew); d <= int64(skew); d++ {
		step := int64(c) + d
		if step < 0 {
			continue
		}
		want, err := k.HOTP(uint64(step))
		if err != nil {
			return false, err
		}
		ok |= subtle.ConstantTimeCompare([]byte(want), []byte(code))
	}
	return ok == 1, nil
}

// base32NoPad is the alphabet of otpauth URIs: RFC 4648 base32, upper case,
// with the padding left out.
var base32NoPad = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret returns the secret in the base32 form authenticator apps
// accept for manual entry.
func EncodeSecret(s Secret) string {
	return base32NoPad.EncodeToString(s.b)
}

// DecodeSecret parses a base32 secret as typed by a person: case, spaces,
// dashes and padding are ignored.
func DecodeSecret(text string) (Secret, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '=':
			return -1
		}
		return r
	}, strings.ToUpper(text))
	b, err := base32NoPad.DecodeString(clean)
	if err != nil {
		return Secret{}, fmt.Errorf("totp secret is not valid base32: %w", err)
	}
	return Secret{b: b}, nil
}
