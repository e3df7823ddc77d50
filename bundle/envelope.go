package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// PayloadType is the DSSE payload type of a version 1 bundle. The signature
// covers it, so a signature made for another kind of document never
// verifies as a bundle's.
const PayloadType = "application/vnd.vouch.bundle.v1+json"

// MaxSignatures bounds the signatures an envelope may carry.
const MaxSignatures = 16

// Envelope is a DSSE envelope (github.com/secure-systems-lab/dsse,
// protocol version 1) carrying a bundle. Every field is untrusted until
// [Verify] returns.
type Envelope struct {
	PayloadType string `json:"payloadType"`
	// Payload is the bundle's JSON, base64-encoded in the envelope.
	Payload    []byte      `json:"payload"`
	Signatures []Signature `json:"signatures"`
}

// Signature is one DSSE signature over PAE(PayloadType, Payload).
type Signature struct {
	// KeyID is a hint naming the key: the hexadecimal SHA-256 of its
	// PKIX (SubjectPublicKeyInfo) DER encoding. See [KeyID].
	KeyID string `json:"keyid,omitempty"`
	Sig   []byte `json:"sig"`
}

// PAE returns DSSE's pre-authentication encoding of a payload, the bytes a
// signature covers: "DSSEv1 <len(type)> <type> <len(payload)> <payload>".
func PAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(payloadType) + len(payload) + 32)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// NewEnvelope returns an unsigned envelope carrying b's canonical encoding.
func NewEnvelope(b *Bundle) (*Envelope, error) {
	payload, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	return &Envelope{PayloadType: PayloadType, Payload: payload}, nil
}

// ParseEnvelope decodes an envelope's JSON within the size limits. It checks
// the payload type but neither the signatures nor the payload: see [Verify].
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("envelope is %d bytes, more than the limit of %d", len(data), MaxEnvelopeSize)
	}
	var env Envelope
	if err := decodeStrict(data, &env, false); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("envelope payload type %q is not a bundle's: expected %q", env.PayloadType, PayloadType)
	}
	if len(env.Payload) == 0 {
		return nil, errors.New("envelope has an empty payload")
	}
	if len(env.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("envelope has %d signatures, more than the limit of %d", len(env.Signatures), MaxSignatures)
	}
	for i, s := range env.Signatures {
		if len(s.Sig) == 0 {
			return nil, fmt.Errorf("envelope signature %d is empty", i)
		}
		if len(s.KeyID) > 128 {
			return nil, fmt.Errorf("envelope signature %d key id is %d bytes, more than 128", i, len(s.KeyID))
		}
	}
	return &env, nil
}

// Marshal encodes the envelope as indented JSON.
func (e *Envelope) Marshal() ([]byte, error) {
	out, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return append(out, '\n'), nil
}

// Unverified parses the payload without checking any signature, for
// display. Nothing it returns may be trusted.
func (e *Envelope) Unverified() (*Bundle, error) {
	return Parse(e.Payload)
}

// IsEnvelope reports whether data looks like a DSSE envelope rather than a
// bare bundle, by the presence of a top-level "payloadType" member.
func IsEnvelope(data []byte) bool {
	var probe struct {
		PayloadType *string `json:"payloadType"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.PayloadType != nil
}
