package ima

import (
	"errors"
	"fmt"
)

// Reason classifies a verification failure: the evidence was read and
// shows the machine is not in a trusted state.
type Reason string

// Verification failure reasons.
const (
	// ReasonPCRMismatch: no prefix of the list replays to the quoted PCRs.
	ReasonPCRMismatch Reason = "pcr-mismatch"
	// ReasonHistoryChanged: a resent list differs from the part verified
	// earlier in the same boot.
	ReasonHistoryChanged Reason = "history-changed"
	// ReasonNoProgress: quotes stopped covering the pending entries for
	// several rounds in a row.
	ReasonNoProgress Reason = "no-forward-progress"
	// ReasonTemplateHash: an entry's template data does not hash to its
	// logged template hash.
	ReasonTemplateHash Reason = "template-hash-mismatch"
	// ReasonPCRNotQuoted: entries extend a PCR that the quote does not
	// cover, so they cannot be verified.
	ReasonPCRNotQuoted Reason = "pcr-not-quoted"
	// ReasonBootAggregate: the boot_aggregate entry does not match the
	// quoted boot PCRs, or is missing.
	ReasonBootAggregate Reason = "boot-aggregate-mismatch"
	// ReasonBootAggregateZero: the boot_aggregate is all zeros (IMA found
	// no TPM at boot) although the machine has a TPM.
	ReasonBootAggregateZero Reason = "boot-aggregate-zero"
)

// VerificationError reports that the measurement list does not verify.
// Operational failures (a list that does not parse, a quote without the
// PCRs needed) are plain errors instead.
type VerificationError struct {
	Reason Reason
	// Entry is the index of the entry at fault, or -1.
	Entry  int
	Detail string
}

func (e *VerificationError) Error() string {
	if e.Entry >= 0 {
		return fmt.Sprintf("ima: %s at entry %d: %s", e.Reason, e.Entry, e.Detail)
	}
	return fmt.Sprintf("ima: %s: %s", e.Reason, e.Detail)
}

func asVerificationError(err error, target **VerificationError) bool {
	return errors.As(err, target)
}

// IsVerificationError reports whether err is, or wraps, a
// *VerificationError.
func IsVerificationError(err error) bool {
	var ve *VerificationError
	return errors.As(err, &ve)
}
