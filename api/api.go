// Package api defines the JSON messages that vouch agents, the vouch server
// and its administrators exchange under /v1. Byte fields travel as base64
// (encoding/json's []byte encoding). Every field an agent sends is
// untrusted until the server has verified it.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Body size limits. A request larger than its limit is rejected before it
// is decoded.
const (
	// MaxRequestBytes bounds every request without an event log.
	MaxRequestBytes = 256 << 10
	// MaxEvidenceBytes bounds an evidence request: an event log of a few
	// hundred KiB and an IMA chunk, base64-encoded.
	MaxEvidenceBytes = 32 << 20
	// MaxIMAEntriesBytes bounds the raw IMA chunk of one evidence request.
	MaxIMAEntriesBytes = 16 << 20
	// MaxEventLogBytes bounds the raw event log of one evidence request.
	MaxEventLogBytes = 8 << 20
	// NonceSize is the size of every challenge nonce.
	NonceSize = 32
)

// Machine states.
const (
	StatePending     = "pending"
	StateTrusted     = "trusted"
	StateUntrusted   = "untrusted"
	StateUnreachable = "unreachable"
)

// Error is the body of every non-2xx response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes.
const (
	CodeBadRequest    = "bad_request"
	CodeUnauthorized  = "unauthorized"
	CodeNotFound      = "not_found"
	CodeConflict      = "conflict"
	CodeEKUntrusted   = "ek_untrusted"
	CodeEKRevoked     = "ek_revoked"
	CodeAKInvalid     = "ak_invalid"
	CodeActivation    = "activation_failed"
	CodeChallenge     = "challenge_invalid"
	CodeEvidence      = "evidence_rejected"
	CodeTooLarge      = "request_too_large"
	CodeInternal      = "internal"
	CodeUnavailable   = "unavailable"
	CodeNotEnrolled   = "not_enrolled"
	CodePendingEnroll = "enrollment_pending"
	CodeNoAgent       = "agent_not_connected"
)

// Facts are what the agent reports about its host. They are shown to
// administrators and never used for a trust decision.
type Facts struct {
	Hostname     string `json:"hostname,omitempty"`
	OS           string `json:"os,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	TPM          string `json:"tpm,omitempty"`
}

// EnrollRequest starts enrollment.
type EnrollRequest struct {
	Name string `json:"name"`
	// EKPublic is the EK's public key, PKIX DER (optional; the server
	// derives it from EKPublicArea and rejects a mismatch).
	EKPublic []byte `json:"ek_public"`
	// EKCertificate is the EK certificate from the TPM's NV index (DER), if any.
	EKCertificate []byte `json:"ek_certificate,omitempty"`
	// EKPublicArea is the EK's TPMT_PUBLIC, needed for MakeCredential's name algorithm and symmetric scheme.
	EKPublicArea []byte `json:"ek_public_area"`
	// AKPublic is the AK's TPMT_PUBLIC.
	AKPublic []byte `json:"ak_public"`
	Facts    Facts  `json:"facts"`
}

// EnrollChallenge is the server's MakeCredential response to an EnrollRequest.
type EnrollChallenge struct {
	EnrollmentID string `json:"enrollment_id"`
	// Credential is the TPM2B_ID_OBJECT and EncryptedSecret the
	// TPM2B_ENCRYPTED_SECRET for TPM2_ActivateCredential.
	Credential      []byte    `json:"credential"`
	EncryptedSecret []byte    `json:"encrypted_secret"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// ActivateRequest carries the secret recovered by TPM2_ActivateCredential.
type ActivateRequest struct {
	Secret []byte `json:"secret"`
}

// Challenge is a request for evidence, sent to an agent.
type Challenge struct {
	ID        string    `json:"id"`
	Nonce     []byte    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
	// PCRs lists the PCR indexes to quote in every active bank.
	PCRs []int `json:"pcrs"`
	// EventLogSHA256 is the digest of the event log the server verified in
	// the current boot; the agent may omit an unchanged log.
	EventLogSHA256 string `json:"eventlog_sha256,omitempty"`
	// IMAOffset is the number of IMA entries already verified in the
	// current boot; the agent sends entries from there.
	IMAOffset int64 `json:"ima_offset"`
}

// PCRBank is one bank of PCR values read from the TPM.
type PCRBank struct {
	// Alg is the TPM_ALG_ID of the bank's hash (0x0004 SHA-1, 0x000B SHA-256, ...).
	Alg    uint16         `json:"alg"`
	Values map[int][]byte `json:"values"`
}

// Evidence is an agent's response to a Challenge.
type Evidence struct {
	ChallengeID string `json:"challenge_id"`
	// Quote is the TPMS_ATTEST and Signature the TPMT_SIGNATURE from TPM2_Quote.
	Quote     []byte    `json:"quote"`
	Signature []byte    `json:"signature"`
	PCRs      []PCRBank `json:"pcrs"`
	// EventLog is the TCG event log, omitted when EventLogSHA256 equals the
	// challenge's value.
	EventLog       []byte `json:"eventlog,omitempty"`
	EventLogSHA256 string `json:"eventlog_sha256"`
	// EventLogMissing explains why the agent has no event log (for example
	// no securityfs file); EventLog and EventLogSHA256 are empty then.
	EventLogMissing string `json:"eventlog_missing,omitempty"`
	// IMA carries IMA entries from the challenge's offset, when the agent reads an IMA log.
	IMA *IMAEvidence `json:"ima,omitempty"`
}

// IMAEvidence is a chunk of the binary IMA measurement list.
type IMAEvidence struct {
	Offset  int64  `json:"offset"`
	Entries []byte `json:"entries"`
	Missing string `json:"missing,omitempty"`
}

// Reason is one machine-readable finding of a verdict.
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	PCR     *int   `json:"pcr,omitempty"`
	// Event is the event's index in the log (0-based), when the finding is about one event.
	// For an IMA finding it is the entry's index in the IMA list.
	Event    *int     `json:"event,omitempty"`
	Type     string   `json:"event_type,omitempty"`
	Bank     string   `json:"bank,omitempty"`
	Digest   string   `json:"digest,omitempty"`
	Expected []string `json:"expected,omitempty"`
	// Action is "warn" for a finding reported without making the machine
	// untrusted; empty for one that counts.
	Action string `json:"action,omitempty"`
	// File names the logged file of an IMA finding. Rule names the policy
	// rule of an IMA finding or of a failed boot policy rule.
	File string `json:"file,omitempty"`
	Rule string `json:"rule,omitempty"`
}

// Verdict is the server's judgement of one piece of evidence.
type Verdict struct {
	State     string    `json:"state"`
	Reasons   []Reason  `json:"reasons,omitempty"`
	At        time.Time `json:"at"`
	BootCount int64     `json:"boot_count"`
	// IMA is the IMA part of the verdict, when the evidence was checked
	// against an IMA list (or its absence).
	IMA *IMAReport `json:"ima,omitempty"`
	// Result is the verdict as a signed attestation result (a DSSE
	// envelope, see package result), which the agent stores for relying
	// parties.
	Result json.RawMessage `json:"result,omitempty"`
}

// Machine is an enrolled machine as shown to administrators.
type Machine struct {
	Name          string    `json:"name"`
	State         string    `json:"state"`
	Since         time.Time `json:"since"`
	ReasonCodes   []string  `json:"reason_codes,omitempty"`
	LastVerdictAt time.Time `json:"last_verdict_at,omitzero"`
	LastSeenAt    time.Time `json:"last_seen_at,omitzero"`
	BootCount     int64     `json:"boot_count"`
	// IntervalSeconds is the machine's attestation interval, 0 for the server's default.
	IntervalSeconds int64 `json:"interval_seconds,omitempty"`
	// IMAEntries is the number of IMA entries verified in the current boot.
	IMAEntries        int64  `json:"ima_entries"`
	Approved          bool   `json:"approved"`
	ReferenceApproved bool   `json:"reference_approved"`
	EKSHA256          string `json:"ek_sha256"`
	Facts             Facts  `json:"facts"`
}

// MachineDetail is a machine with its last verdict and recent history.
type MachineDetail struct {
	Machine
	Verdict *Verdict       `json:"verdict,omitempty"`
	History []HistoryEvent `json:"history,omitempty"`
}

// HistoryEvent is one entry of the append-only history.
type HistoryEvent struct {
	At      time.Time `json:"at"`
	Machine string    `json:"machine"`
	Kind    string    `json:"kind"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// EnrollResult is the response to a successful activation.
type EnrollResult struct {
	Machine Machine `json:"machine"`
}

// PinEKRequest registers an EK before its machine first connects. Give
// either the certificate (DER or PEM), the public key (DER or PEM) or the
// hex SHA-256 of the PKIX public key.
type PinEKRequest struct {
	Certificate []byte `json:"certificate,omitempty"`
	PublicKey   []byte `json:"public_key,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	Note        string `json:"note,omitempty"`
}

// EK is an endorsement key known to the server.
type EK struct {
	SHA256  string `json:"sha256"`
	Status  string `json:"status"`
	Machine string `json:"machine,omitempty"`
	Note    string `json:"note,omitempty"`
}

// RevokeRequest revokes a machine; its EK is revoked with it.
type RevokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

// IntervalRequest sets a machine's attestation interval; 0 restores the
// server's default.
type IntervalRequest struct {
	Seconds int64 `json:"seconds"`
}

// TokenResponse carries a newly created admin token.
type TokenResponse struct {
	Token string `json:"token"`
}

// Decode reads one JSON value of at most limit bytes from r into v and
// rejects unknown fields and trailing data.
func Decode(r io.Reader, limit int64, v any) error {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if lr.N <= 0 {
			return ErrTooLarge
		}
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if lr.N <= 0 {
		return ErrTooLarge
	}
	if dec.More() {
		return errors.New("invalid JSON: data after the first value")
	}
	return nil
}

// ErrTooLarge is returned by Decode for a body over its limit.
var ErrTooLarge = errors.New("request body too large")
