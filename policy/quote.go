package policy

import (
	"errors"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
)

// FromQuote replays the log against the PCR values a verified quote covers
// and builds the evidence from the events that replay vouches for. It is
// the usual way into policy for a verifier: attest.VerifyQuote checks the
// quote's signature, nonce and PCR digest, eventlog.Verify checks the log
// against q.Verified, and FromVerifiedLog keeps what matched. Reported PCR
// values outside the quote (q.Unverified) are never used.
//
// The eventlog result is returned with any error, so that the caller can
// record which PCRs did not replay.
func FromQuote(log *eventlog.Log, q *attest.VerifiedQuote, opts eventlog.VerifyOptions) (*Evidence, *eventlog.Result, error) {
	if log == nil || q == nil {
		return nil, nil, errors.New("policy: log or verified quote is missing")
	}
	quoted := make(eventlog.PCRValues, len(q.Verified))
	for alg, bank := range q.Verified {
		values := make(map[int][]byte, len(bank))
		for i, d := range bank {
			values[i] = d
		}
		quoted[eventlog.Algorithm(alg)] = values
	}
	res, err := eventlog.Verify(log, quoted, opts)
	if err != nil {
		return nil, res, err
	}
	ev, err := FromVerifiedLog(log, res)
	return ev, res, err
}
