package attest

import "fmt"

// Reason classifies why evidence did not verify. Callers switch on it to
// report a stable reason code; the error text carries the details.
type Reason int

// Reasons for a VerificationError. The numbering is stable: new reasons are
// appended.
const (
	ReasonUnknown Reason = iota
	// ReasonMalformedAttest: the TPMS_ATTEST bytes do not parse.
	ReasonMalformedAttest
	// ReasonBadMagic: the magic is not TPM_GENERATED_VALUE, so the TPM did
	// not produce the structure from its own data.
	ReasonBadMagic
	// ReasonNotQuote: the structure is another attestation type (certify,
	// NV certify, ...) presented as a quote.
	ReasonNotQuote
	// ReasonNonceMismatch: extraData differs from the verifier's nonce.
	ReasonNonceMismatch
	// ReasonSelectionMismatch: the signed PCR selection differs from the
	// one requested.
	ReasonSelectionMismatch
	// ReasonMissingPCR: a selected PCR has no value, or a value of the
	// wrong size, among the PCR values supplied with the quote.
	ReasonMissingPCR
	// ReasonPCRDigestMismatch: the supplied PCR values do not hash to the
	// signed pcrDigest.
	ReasonPCRDigestMismatch
	// ReasonMalformedSignature: the TPMT_SIGNATURE bytes do not parse.
	ReasonMalformedSignature
	// ReasonSignatureScheme: the signature's scheme (the TPMU_SIGNATURE
	// member that is set) or hash does not fit the attestation key.
	ReasonSignatureScheme
	// ReasonWeakHash: the signature uses SHA-1 and the caller did not
	// allow it.
	ReasonWeakHash
	// ReasonBadSignature: the signature does not verify under the
	// attestation key.
	ReasonBadSignature
	// ReasonMalformedPublic: a TPMT_PUBLIC does not parse or is not
	// canonically encoded.
	ReasonMalformedPublic
	// ReasonAKAttributes: the key lacks an attribute an attestation key
	// must have (restricted, sign, fixedTPM, fixedParent,
	// sensitiveDataOrigin) or has decrypt set.
	ReasonAKAttributes
	// ReasonAKKey: the key's type, size or curve is not accepted.
	ReasonAKKey
	// ReasonClockRollback: the TPM clock went backwards without a reset, or
	// the reset or restart counter decreased.
	ReasonClockRollback
	// ReasonCredentialMismatch: the activated credential differs from the
	// secret of the challenge.
	ReasonCredentialMismatch
	// ReasonEKCertificate: the EK certificate does not chain to a
	// configured root or does not match the EK.
	ReasonEKCertificate
)

var reasonNames = map[Reason]string{
	ReasonUnknown:            "unknown",
	ReasonMalformedAttest:    "malformed_attest",
	ReasonBadMagic:           "bad_magic",
	ReasonNotQuote:           "not_quote",
	ReasonNonceMismatch:      "nonce_mismatch",
	ReasonSelectionMismatch:  "selection_mismatch",
	ReasonMissingPCR:         "missing_pcr",
	ReasonPCRDigestMismatch:  "pcr_digest_mismatch",
	ReasonMalformedSignature: "malformed_signature",
	ReasonSignatureScheme:    "signature_scheme",
	ReasonWeakHash:           "weak_hash",
	ReasonBadSignature:       "bad_signature",
	ReasonMalformedPublic:    "malformed_public",
	ReasonAKAttributes:       "ak_attributes",
	ReasonAKKey:              "ak_key",
	ReasonClockRollback:      "clock_rollback",
	ReasonCredentialMismatch: "credential_mismatch",
	ReasonEKCertificate:      "ek_certificate",
}

// String returns the reason's stable snake_case code.
func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// VerificationError reports evidence that was read and did not verify. It
// is distinct from operational errors (invalid arguments, unreadable
// files), which are returned as plain errors.
type VerificationError struct {
	Reason Reason
	// Detail names the value that failed and how.
	Detail string
	// Err is the underlying cause, if any.
	Err error
}

func (e *VerificationError) Error() string {
	msg := "verification failed (" + e.Reason.String() + "): " + e.Detail
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *VerificationError) Unwrap() error { return e.Err }

func verifyErr(r Reason, format string, args ...any) *VerificationError {
	return &VerificationError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

func verifyErrWrap(r Reason, err error, format string, args ...any) *VerificationError {
	return &VerificationError{Reason: r, Detail: fmt.Sprintf(format, args...), Err: err}
}
