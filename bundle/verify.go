package bundle

import (
	"crypto"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Reason classifies why [Verify] rejected a bundle.
type Reason int

// Reasons for rejecting a bundle.
const (
	// ReasonUnsigned: the envelope carries no signature.
	ReasonUnsigned Reason = iota + 1
	// ReasonUntrustedPublisher: no signature names or verifies with a key
	// configured for any publisher.
	ReasonUntrustedPublisher
	// ReasonBadSignature: a signature names a configured key but does not
	// verify, because the payload was changed or the signature is forged.
	ReasonBadSignature
	// ReasonPublisherMismatch: the key that signed belongs to another
	// publisher than the bundle's "publisher" member names.
	ReasonPublisherMismatch
	// ReasonInvalidPayload: the signed payload is not a valid bundle.
	ReasonInvalidPayload
	// ReasonNotYetValid: the time of verification is before not_before.
	ReasonNotYetValid
	// ReasonExpired: the time of verification is after not_after.
	ReasonExpired
)

var reasonNames = map[Reason]string{
	ReasonUnsigned:           "unsigned",
	ReasonUntrustedPublisher: "untrusted-publisher",
	ReasonBadSignature:       "bad-signature",
	ReasonPublisherMismatch:  "publisher-mismatch",
	ReasonInvalidPayload:     "invalid-payload",
	ReasonNotYetValid:        "not-yet-valid",
	ReasonExpired:            "expired",
}

// String returns the reason's stable name, as used in logs and the API.
func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// VerificationError is returned when a bundle was read but must not be
// trusted. Operational failures (a file that cannot be read, a server that
// cannot be reached, JSON that does not parse) are plain errors instead.
type VerificationError struct {
	Reason Reason
	Detail string
}

func (e *VerificationError) Error() string {
	return "bundle rejected (" + e.Reason.String() + "): " + e.Detail
}

func reject(r Reason, format string, args ...any) error {
	return &VerificationError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// RejectionReason returns the reason of the first VerificationError in
// err's chain, or 0 when err is not a verification failure.
func RejectionReason(err error) Reason {
	var v *VerificationError
	if errors.As(err, &v) {
		return v.Reason
	}
	return 0
}

// TrustStore holds the publisher keys a verifier trusts. The zero value is
// not usable: call [NewTrustStore]. Verify may run concurrently, but Add must
// not run while anything verifies: build a new store to change the keys.
type TrustStore struct {
	keys map[string]trustedKey // by key id
}

type trustedKey struct {
	publisher string
	pub       crypto.PublicKey
}

// NewTrustStore returns an empty trust store.
func NewTrustStore() *TrustStore {
	return &TrustStore{keys: make(map[string]trustedKey)}
}

// Add trusts pub to sign bundles whose "publisher" member is publisher. A
// key may belong to one publisher only, but a publisher may have several
// keys.
func (t *TrustStore) Add(publisher string, pub crypto.PublicKey) error {
	if err := checkName(publisher); err != nil {
		return fmt.Errorf("publisher name: %w", err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return err
	}
	if prev, ok := t.keys[id]; ok && prev.publisher != publisher {
		return fmt.Errorf("key %s is already trusted for publisher %q: a key may sign for one publisher only", id, prev.publisher)
	}
	t.keys[id] = trustedKey{publisher: publisher, pub: pub}
	return nil
}

// Len returns the number of trusted keys.
func (t *TrustStore) Len() int { return len(t.keys) }

// Publishers returns the names of the trusted publishers, sorted.
func (t *TrustStore) Publishers() []string {
	seen := make(map[string]bool)
	var names []string
	for _, k := range t.keys {
		if !seen[k.publisher] {
			seen[k.publisher] = true
			names = append(names, k.publisher)
		}
	}
	sort.Strings(names)
	return names
}

// Verified is a bundle that [Verify] accepted. Its fields are set only by
// Verify, so a Verified value from elsewhere is the zero value and carries
// no bundle.
type Verified struct {
	bundle    *Bundle
	keyID     string
	publisher string
	source    string
}

// Bundle returns the verified bundle. Callers must not modify it.
func (v *Verified) Bundle() *Bundle { return v.bundle }

// KeyID returns the id of the publisher key whose signature verified.
func (v *Verified) KeyID() string { return v.keyID }

// Publisher returns the publisher the verifying key is trusted for.
func (v *Verified) Publisher() string { return v.publisher }

// Source returns where the bundle was loaded from, when a loader set it.
func (v *Verified) Source() string { return v.source }

// Verify checks an envelope against the trusted publisher keys at the time
// now and returns the bundle it carries. It checks, in this order:
//
//  1. the payload type is PayloadType;
//  2. the envelope carries at least one signature (else ReasonUnsigned);
//  3. some signature verifies over PAE(payload type, payload) with a key in
//     trust: a signature that names a trusted key and does not verify is
//     ReasonBadSignature, and signatures by keys not in trust only are
//     ReasonUntrustedPublisher;
//  4. the signed payload is a valid bundle (ReasonInvalidPayload);
//  5. the bundle's publisher is the one the key is trusted for
//     (ReasonPublisherMismatch);
//  6. now is within [not_before, not_after] (ReasonNotYetValid,
//     ReasonExpired).
//
// Failures of these checks are *VerificationError. Verify does not check
// revocation of publisher keys: remove a revoked key from the trust store.
func Verify(env *Envelope, trust *TrustStore, now time.Time) (*Verified, error) {
	if trust == nil || len(trust.keys) == 0 {
		return nil, errors.New("no publisher keys are configured: add at least one trusted publisher key")
	}

	// 1. Payload type.
	if env.PayloadType != PayloadType {
		return nil, reject(ReasonInvalidPayload, "payload type %q is not a bundle's: expected %q", env.PayloadType, PayloadType)
	}

	// 2. Some signature.
	if len(env.Signatures) == 0 {
		return nil, reject(ReasonUnsigned, "the envelope has no signature: sign it with vouch bundle sign")
	}
	if len(env.Signatures) > MaxSignatures {
		return nil, reject(ReasonInvalidPayload, "the envelope has %d signatures, more than the limit of %d", len(env.Signatures), MaxSignatures)
	}

	// 3. A signature by a trusted key.
	msg := PAE(env.PayloadType, env.Payload)
	var signer *trustedKey
	var signerID string
	var badIDs, unknownIDs []string
	for i, s := range env.Signatures {
		if s.KeyID != "" {
			k, ok := trust.keys[s.KeyID]
			if !ok {
				unknownIDs = append(unknownIDs, s.KeyID)
				continue
			}
			if verifySignature(k.pub, msg, s.Sig) {
				signer, signerID = &k, s.KeyID
				break
			}
			badIDs = append(badIDs, s.KeyID)
			continue
		}
		// A signature without a key id is tried against every trusted
		// key, in key id order so that the outcome is deterministic.
		found := false
		for _, id := range sortedKeyIDs(trust) {
			k := trust.keys[id]
			if verifySignature(k.pub, msg, s.Sig) {
				signer, signerID = &k, id
				found = true
				break
			}
		}
		if found {
			break
		}
		unknownIDs = append(unknownIDs, fmt.Sprintf("(signature %d, no key id)", i))
	}
	if signer == nil {
		if len(badIDs) > 0 {
			return nil, reject(ReasonBadSignature,
				"the signature by trusted key %s does not verify: the bundle was modified after signing or the signature is corrupt", badIDs[0])
		}
		return nil, reject(ReasonUntrustedPublisher,
			"no signature is by a trusted publisher key (signed by %v; trusted publishers: %v): add the publisher's public key if you trust it",
			unknownIDs, trust.Publishers())
	}

	// 4. The payload.
	b, err := Parse(env.Payload)
	if err != nil {
		return nil, reject(ReasonInvalidPayload, "signed by key %s of publisher %q, but the payload is invalid: %v", signerID, signer.publisher, err)
	}

	// 5. The publisher.
	if b.Publisher != signer.publisher {
		return nil, reject(ReasonPublisherMismatch,
			"bundle %s names publisher %q but was signed by key %s of publisher %q",
			b.ID(), b.Publisher, signerID, signer.publisher)
	}

	// 6. The validity period.
	if now.Before(b.NotBefore) {
		return nil, reject(ReasonNotYetValid, "bundle %s is valid from %s, after the time of verification %s",
			b.ID(), b.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(b.NotAfter) {
		return nil, reject(ReasonExpired, "bundle %s expired at %s, before the time of verification %s: fetch a newer bundle from %s",
			b.ID(), b.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), b.Publisher)
	}

	return &Verified{bundle: b, keyID: signerID, publisher: signer.publisher}, nil
}

func sortedKeyIDs(t *TrustStore) []string {
	ids := make([]string, 0, len(t.keys))
	for id := range t.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
