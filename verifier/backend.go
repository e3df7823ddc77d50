package verifier

import (
	"errors"
	"io"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// Backend performs the cryptographic checks the verifier relies on: EK
// certificates, AK attributes, credential activation, quote signatures and
// event log replay. The production back end delegates to the attest and
// eventlog packages; the seam keeps the protocol logic of this package
// independent of their types.
type Backend interface {
	// ParseEK parses the EK's TPMT_PUBLIC and returns its PKIX form.
	ParseEK(publicArea []byte) (EKKey, error)
	// VerifyEKCertificate checks that certDER certifies ek and chains to a
	// configured vendor root at time now.
	VerifyEKCertificate(certDER []byte, ek EKKey, now time.Time) error
	// ParseAK parses the AK's TPMT_PUBLIC and checks that it is a
	// restricted signing key that never left its TPM (fixedTPM,
	// fixedParent, sensitiveDataOrigin).
	ParseAK(publicArea []byte) (AKKey, error)
	// MakeCredential encrypts secret to ek, bound to the AK's name.
	MakeCredential(rand io.Reader, ek EKKey, ak AKKey, secret []byte) (credential, encryptedSecret []byte, err error)
	// VerifyQuote checks the quote's signature by ak, its nonce, its PCR
	// selection (pcrs in every reported bank) and the reported PCR values.
	VerifyQuote(ak AKKey, quote, signature, nonce []byte, pcrs []int, reported []api.PCRBank) (*QuoteResult, error)
	// ReplayEventLog parses log and replays it against the verified PCR
	// values of q, except PCR 10 (IMA's), returning the events it proved.
	ReplayEventLog(log []byte, q *QuoteResult) ([]MeasuredEvent, error)
	// VerifyIMA checks IMA entries (binary list format, starting at entry
	// offset) against PCR 10 of q, continuing from state (nil on a new
	// boot), and returns the state to keep for the next round.
	VerifyIMA(state []byte, offset int64, entries []byte, q *QuoteResult) (*IMAResult, error)
	// PCRAtReset reports whether PCR pcr holds its reset value in every
	// verified bank of q.
	PCRAtReset(q *QuoteResult, pcr int) bool
}

// IMAResult is one round of IMA verification.
type IMAResult struct {
	// State is opaque to the verifier; it is passed back in the next round.
	State []byte
	// Entries is the number of entries verified in this boot so far: the
	// offset of the next round.
	Entries int64
	// Verified and Pending count this round's verified entries and the
	// entries after them that the quote does not cover yet.
	Verified, Pending int
	// Failures are the findings that make the machine untrusted: this
	// round's and, kept in State, those of earlier rounds of the boot.
	Failures []api.Reason
	// Report is the IMA part of the verdict.
	Report *api.IMAReport
}

// EKKey is a parsed endorsement key.
type EKKey struct {
	// PKIX is the DER SubjectPublicKeyInfo; its SHA-256 identifies the TPM.
	PKIX   []byte
	Opaque any
}

// AKKey is a parsed attestation key that passed the attribute checks.
type AKKey struct {
	// Name is the TPM name the credential is bound to.
	Name   []byte
	Opaque any
}

// QuoteResult is a verified quote.
type QuoteResult struct {
	ResetCount   uint32
	RestartCount uint32
	Clock        uint64
	// Banks lists the hash names of the verified banks.
	Banks []string
	// ValuesSHA256 is a digest of every verified PCR value (bank, index
	// and value): two quotes with the same ValuesSHA256 cover the same
	// values, so the replay of one log against them gives the same result.
	ValuesSHA256 string
	Opaque       any
}

// MeasuredEvent is one event of an event log whose replay reproduced the
// quoted PCRs. Only Backend.ReplayEventLog produces these.
type MeasuredEvent struct {
	// Index is the event's position in the log, counted from 0.
	Index int
	PCR   int
	// Type is the TCG event type name, such as EV_EFI_BOOT_SERVICES_APPLICATION.
	Type string
	// Digests maps a bank's hash name (sha1, sha256, ...) to the hex digest.
	Digests map[string]string
	// Summary is a short description of the event data, if decodable.
	Summary string
}

// Failure is a verification failure: the evidence was read and does not
// prove what it claims. Backends return it (or wrap it) for every check
// that fails. Any other error is operational.
type Failure struct {
	Reasons []api.Reason
}

func (f *Failure) Error() string {
	if len(f.Reasons) == 0 {
		return "verification failed"
	}
	msg := f.Reasons[0].Code + ": " + f.Reasons[0].Message
	if len(f.Reasons) > 1 {
		msg += " (and more)"
	}
	return msg
}

// Fail returns a Failure with one reason.
func Fail(code, message string) *Failure {
	return &Failure{Reasons: []api.Reason{{Code: code, Message: message}}}
}

// AsFailure returns the Failure in err's chain, if any.
func AsFailure(err error) (*Failure, bool) {
	var f *Failure
	ok := errors.As(err, &f)
	return f, ok
}
