package verifier

import (
	"context"
	"net/http"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// Evidence bodies are large (up to api.MaxEvidenceBytes) and arrive before
// their signature can be checked, so the server bounds how many it decodes
// at once and reads none for a machine that the server has issued no
// challenge to.
const (
	maxConcurrentEvidence = 4
	evidenceSlotWait      = 10 * time.Second
)

// hasChallenge reports whether the server holds a challenge issued to the
// machine. Used and expired challenges count, so that the evidence handler
// still reports a replayed nonce or a late response as such.
func (s *Server) hasChallenge(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.challenges {
		if ch.machine == name {
			return true
		}
	}
	return false
}

// acquireEvidenceSlot waits up to evidenceSlotWait for one of the
// maxConcurrentEvidence decoding slots. It returns the function that frees
// the slot, or false when none came free in time.
func (s *Server) acquireEvidenceSlot(ctx context.Context) (func(), bool) {
	timer := time.NewTimer(evidenceSlotWait)
	defer timer.Stop()
	select {
	case s.evidenceSlots <- struct{}{}:
		return func() { <-s.evidenceSlots }, true
	case <-timer.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

// admitEvidence runs the checks that come before reading an evidence body.
// It writes the error response and returns nil when the request must not be
// read. Otherwise it returns the function that frees the decoding slot.
func (s *Server) admitEvidence(w http.ResponseWriter, r *http.Request, name string) func() {
	if !s.hasChallenge(name) {
		s.logRejected(s.log, "evidence rejected before reading: no challenge issued", "machine", name)
		writeError(w, http.StatusBadRequest, api.CodeChallenge, "no challenge was issued to machine "+name+": request a new one")
		return nil
	}
	release, ok := s.acquireEvidenceSlot(r.Context())
	if !ok {
		s.logRejected(s.log, "evidence rejected: too many concurrent evidence requests", "machine", name, "limit", maxConcurrentEvidence)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the verifier is busy decoding other evidence: retry in a few seconds")
		return nil
	}
	return release
}
