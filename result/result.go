// Package result signs and verifies attestation results: the verifier's
// statement of a machine's state at a point in time, which a relying party
// can check offline with the verifier's public key instead of calling its
// API. A result is a DSSE envelope, like a reference value bundle, with its
// own payload type, so a signature made for one never verifies as the
// other.
package result

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/internal/strictjson"
)

// PayloadType is the DSSE payload type of a version 1 attestation result.
const PayloadType = "application/vnd.vouch.result.v1+json"

// MaxSize bounds the encoded envelope Verify accepts.
const MaxSize = 64 << 10

// StateTrusted is the state of a machine whose last boot met its policy.
const StateTrusted = "trusted"

// Result is one machine's attestation result.
type Result struct {
	// Machine is the name the machine enrolled under.
	Machine string `json:"machine"`
	// State is pending, trusted, untrusted or unreachable.
	State string `json:"state"`
	// Reasons are the machine-readable reason codes of the verdict.
	Reasons []string `json:"reasons,omitempty"`
	// EKSHA256 is the hex SHA-256 of the EK's PKIX public key: the TPM.
	EKSHA256 string `json:"ek_sha256"`
	// AKSHA256 is the hex SHA-256 of the AK's TPMT_PUBLIC area.
	AKSHA256 string `json:"ak_sha256"`
	// BootCount counts the boots the verifier has seen, and ResetCount
	// is the TPM's resetCount of the attested boot.
	BootCount  int64  `json:"boot_count"`
	ResetCount uint32 `json:"reset_count"`
	// VerifiedAt is when the verifier last judged evidence of the machine.
	VerifiedAt time.Time `json:"verified_at"`
	// IssuedAt is when the result was signed. ExpiresAt is when the
	// machine would be reported unreachable had it stopped attesting:
	// a relying party must not use the result after it.
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Verifier is the key id of the signing key (see bundle.KeyID).
	Verifier string `json:"verifier"`
}

// Trusted reports whether the result's state is trusted.
func (r *Result) Trusted() bool { return r.State == StateTrusted }

// Sign returns the envelope of r signed by key, as indented JSON. It sets
// r.Verifier to the key's id. ECDSA keys draw randomness from rand.
func Sign(r *Result, key *bundle.PrivateKey, rand io.Reader) ([]byte, error) {
	r.Verifier = key.KeyID()
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("sign result: %w", err)
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("sign result: %w", err)
	}
	env := &bundle.Envelope{PayloadType: PayloadType, Payload: payload}
	if err := env.Sign(key, rand); err != nil {
		return nil, err
	}
	return env.Marshal()
}

// ErrExpired is wrapped by the Verify error for a result whose ExpiresAt
// has passed (or whose IssuedAt is in the future).
var ErrExpired = errors.New("attestation result is not valid at this time")

// ErrSignature is wrapped by the Verify error for an envelope that pub did
// not sign.
var ErrSignature = errors.New("attestation result is not signed by the verifier's key")

// Verify checks that data is a result envelope signed by pub and valid at
// now, and returns the result. It does not judge the state: use Trusted.
// The error wraps ErrSignature or ErrExpired for a genuine envelope that
// fails those checks. Any other error means data is not a result.
func Verify(data []byte, pub crypto.PublicKey, now time.Time) (*Result, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("attestation result is %d bytes, more than the limit of %d: it is not a vouch result", len(data), MaxSize)
	}
	var env bundle.Envelope
	if err := strictjson.Decode(data, &env, strictjson.Options{}); err != nil {
		return nil, fmt.Errorf("decode attestation result envelope: %w", err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("envelope payload type %q is not an attestation result's: expected %q", env.PayloadType, PayloadType)
	}
	if !env.SignedBy(pub) {
		id, _ := bundle.KeyID(pub)
		return nil, fmt.Errorf("%w: no signature verifies with key %s: check that the key is the result key (result-key.pub) of the verifier that issued it", ErrSignature, id)
	}

	var r Result
	if err := strictjson.Decode(env.Payload, &r, strictjson.Options{}); err != nil {
		return nil, fmt.Errorf("decode attestation result: %w", err)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	if now.Before(r.IssuedAt) || !now.Before(r.ExpiresAt) {
		return &r, fmt.Errorf("%w: valid from %s until %s, checked at %s", ErrExpired, r.IssuedAt.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return &r, nil
}

func (r *Result) validate() error {
	switch {
	case r.Machine == "":
		return errors.New("attestation result names no machine")
	case r.State == "":
		return fmt.Errorf("attestation result of %q has no state", r.Machine)
	case r.IssuedAt.IsZero() || r.ExpiresAt.IsZero():
		return fmt.Errorf("attestation result of %q has no validity period", r.Machine)
	case !r.ExpiresAt.After(r.IssuedAt):
		return fmt.Errorf("attestation result of %q expires (%s) before it is issued (%s)", r.Machine, r.ExpiresAt.Format(time.RFC3339), r.IssuedAt.Format(time.RFC3339))
	}
	return nil
}
