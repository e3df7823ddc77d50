package verifier

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
	"unicode"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/internal/strictjson"
	"github.com/vouch-attest/vouch/store"
)

// enrollmentTTL bounds the time between an enrollment request and its
// activation.
const enrollmentTTL = 2 * time.Minute

// Limits on enrollment requests, which need no credential. A source is a
// client's IP address, or its /64 prefix for IPv6 (requestSource).
const (
	// maxPendingEnrollments bounds the unactivated enrollments held in
	// memory.
	maxPendingEnrollments = 10000
	// maxPendingPerSource bounds those of one source, so that one client
	// cannot fill the table. Machines behind one NAT address share it; an
	// agent over the limit gets 429 and retries.
	maxPendingPerSource = 32
	// enrollRate and enrollBurst set each source's token bucket of
	// enrollment requests: enrollBurst at once, then enrollRate per second.
	enrollRate  = 2
	enrollBurst = 20
	// maxTrackedSources bounds the token buckets held in memory.
	maxTrackedSources = 65536
	// reservedPendingEnrollments of the table are kept for sources whose
	// widest prefix (pendingLimits) has no enrollment in progress, so that
	// a client that holds many prefixes still leaves room for other sites.
	reservedPendingEnrollments = maxPendingEnrollments / 10
	// maxRejectLogsPerMinute bounds the log lines about rejected
	// enrollment and evidence requests.
	maxRejectLogsPerMinute = 30
	// maxEnrollLogsPerMinute bounds the log lines about enrollment
	// challenges sent, which any client can ask for.
	maxEnrollLogsPerMinute = 60
)

type enrollment struct {
	// source is the request source that asked for the enrollment, and
	// limits the prefixes it is counted under (pendingLimits).
	source   string
	limits   []pendingLimit
	name     string
	ek       EKKey
	ekHash   string
	ekCert   []byte
	ekTrust  string
	akPublic []byte
	facts    api.Facts
	secret   []byte
	expires  time.Time
}

// EKHash returns the hex SHA-256 of a PKIX public key, the identifier of a TPM.
func EKHash(pkix []byte) string {
	sum := sha256.Sum256(pkix)
	return hex.EncodeToString(sum[:])
}

func (s *Server) randomID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// handleEnroll checks, in order:
//  1. the machine name is valid;
//  2. the EK public area parses and, when a certificate is sent, the
//     certificate certifies that key;
//  3. the EK is not revoked;
//  4. the EK is not enrolled under another name and the name is not
//     enrolled with another EK or another AK;
//  5. the EK is trusted: pinned by an administrator, certified by a vendor
//     root (vendor-roots mode) or first seen (tofu mode);
//  6. the AK is a restricted signing key bound to its TPM.
//
// It then responds with a MakeCredential challenge that only the TPM
// holding both the EK and the AK can open.
func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	source := requestSource(r)
	if ok, wait := s.enrollLimiter.allow(source, s.now()); !ok {
		s.logRejected(s.log, "enrollment rejected: rate limit", "source", source, "remote", r.RemoteAddr)
		writeRetryAfter(w, wait)
		writeError(w, http.StatusTooManyRequests, api.CodeRateLimited, fmt.Sprintf("too many enrollment requests from %s: retry in %s", source, retrySeconds(wait)))
		return
	}
	var req api.EnrollRequest
	if !decode(w, r, api.MaxRequestBytes, &req) {
		return
	}
	log := s.log.With("machine", req.Name, "remote", r.RemoteAddr)
	if err := api.CheckNewMachineName(req.Name); err != nil {
		s.logRejected(log, "enrollment rejected: invalid machine name", "err", err)
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	if err := checkFacts(req.Facts); err != nil {
		s.logRejected(log, "enrollment rejected: invalid facts", "err", err)
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	ek, err := s.be.ParseEK(req.EKPublicArea)
	if err != nil {
		s.logRejected(log, "enrollment rejected: invalid EK", "err", err)
		writeError(w, http.StatusBadRequest, api.CodeEKUntrusted, "invalid EK public area: "+err.Error())
		return
	}
	ekHash := EKHash(ek.PKIX)
	log = log.With("ek_sha256", ekHash)
	if len(req.EKPublic) > 0 && !bytes.Equal(req.EKPublic, ek.PKIX) {
		writeError(w, http.StatusBadRequest, api.CodeEKUntrusted, "ek_public does not match the key in ek_public_area")
		return
	}

	ctx := r.Context()
	known, err := s.store.EK(ctx, ekHash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	if known.Status == store.EKRevoked {
		s.logRejected(log, "enrollment rejected: EK revoked")
		writeError(w, http.StatusForbidden, api.CodeEKRevoked, fmt.Sprintf("EK %s is revoked and cannot enroll under any name", ekHash))
		return
	}
	if m, err := s.store.MachineByEK(ctx, ekHash); err == nil && m.Name != req.Name {
		s.logRejected(log, "enrollment rejected: EK enrolled under another name", "enrolled_as", m.Name)
		writeError(w, http.StatusConflict, api.CodeConflict, fmt.Sprintf("EK %s is already enrolled as %q: an administrator must forget that machine first", ekHash, m.Name))
		return
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	existing, err := s.store.Machine(ctx, req.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.internalError(w, r, err)
		return
	case existing.EKHash != ekHash:
		s.logRejected(log, "enrollment rejected: name enrolled with another EK", "enrolled_ek", existing.EKHash)
		writeError(w, http.StatusConflict, api.CodeConflict, fmt.Sprintf("machine %q is enrolled with another EK: give this machine another --name, or have an administrator run 'vouch hosts forget %s' so that a new TPM can take the name", req.Name, req.Name))
		return
	case !bytes.Equal(existing.AKPublic, req.AKPublic):
		s.logRejected(log, "enrollment rejected: second AK for an enrolled EK")
		writeError(w, http.StatusConflict, api.CodeConflict, fmt.Sprintf("machine %q is enrolled with another AK: an administrator must forget it to re-enroll", req.Name))
		return
	}

	trust, err := s.trustEK(req, ek, known)
	if err != nil {
		s.logRejected(log, "enrollment rejected: EK not trusted", "err", err)
		writeError(w, http.StatusForbidden, api.CodeEKUntrusted, err.Error())
		return
	}
	ak, err := s.be.ParseAK(req.AKPublic)
	if err != nil {
		s.logRejected(log, "enrollment rejected: invalid AK", "err", err)
		writeError(w, http.StatusBadRequest, api.CodeAKInvalid, "invalid AK: "+err.Error())
		return
	}
	secret := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, secret); err != nil {
		s.internalError(w, r, err)
		return
	}
	cred, encSecret, err := s.be.MakeCredential(s.rand, ek, ak, secret)
	if err != nil {
		s.logRejected(log, "enrollment rejected: make credential failed", "err", err)
		writeError(w, http.StatusBadRequest, api.CodeEKUntrusted, "cannot encrypt a credential to this EK: "+err.Error())
		return
	}
	id, err := s.randomID()
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	now := s.now()
	e := &enrollment{
		source: source, limits: pendingLimits(r.RemoteAddr), name: req.Name, ek: ek, ekHash: ekHash, ekCert: req.EKCertificate, ekTrust: trust,
		akPublic: req.AKPublic, facts: req.Facts, secret: secret, expires: now.Add(enrollmentTTL),
	}
	s.mu.Lock()
	replaced, err := s.addEnrollmentLocked(id, e, now)
	s.mu.Unlock()
	var full *prefixFullError
	switch {
	case errors.As(err, &full):
		s.logRejected(log, "enrollment rejected: too many pending enrollments from one source", "source", source, "prefix", full.key, "limit", full.max)
		writeRetryAfter(w, enrollmentTTL/4)
		writeError(w, http.StatusTooManyRequests, api.CodeRateLimited, fmt.Sprintf("%d enrollments from %s are in progress: retry in a minute", full.max, full.key))
		return
	case errors.Is(err, errTableFull):
		s.logRejected(log, "enrollment rejected: too many pending enrollments", "limit", maxPendingEnrollments)
		writeRetryAfter(w, enrollmentTTL/2)
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "too many enrollments in progress: retry in a minute")
		return
	}
	s.enrollLog.log(log, now, slog.LevelInfo, "enrollment challenge sent", "ek_trust", trust, "replaced", replaced)
	writeJSON(w, http.StatusOK, api.EnrollChallenge{
		EnrollmentID: id, Credential: cred, EncryptedSecret: encSecret, ExpiresAt: e.expires,
	})
}

var errTableFull = errors.New("too many pending enrollments")

// prefixFullError reports that the enrollments in progress from a prefix
// reached its cap.
type prefixFullError struct {
	key string
	max int
}

func (e *prefixFullError) Error() string {
	return fmt.Sprintf("%d enrollments from %s are in progress", e.max, e.key)
}

// addEnrollmentLocked stores e under id after dropping expired
// enrollments. An enrollment of the same source for the same EK or the same
// name is replaced (an agent that retries), and replaced counts those.
// Enrollments of other sources stay: a client that names another machine,
// or sends another machine's public EK, cannot cancel its enrollment. It
// fails with a *prefixFullError at the cap of one of e.limits, and with
// errTableFull when the table is full, or when only its reserved part is
// left and e's widest prefix already has an enrollment in progress.
func (s *Server) addEnrollmentLocked(id string, e *enrollment, now time.Time) (replaced int, err error) {
	for k, old := range s.enrollments {
		switch {
		case now.After(old.expires):
			s.removeEnrollmentLocked(k)
		case old.source == e.source && (old.ekHash == e.ekHash || old.name == e.name):
			s.removeEnrollmentLocked(k)
			replaced++
		}
	}
	for _, l := range e.limits {
		if s.pendingBySource[l.key] >= l.max {
			return replaced, &prefixFullError{key: l.key, max: l.max}
		}
	}
	if len(s.enrollments) >= maxPendingEnrollments {
		return replaced, errTableFull
	}
	widest := e.limits[len(e.limits)-1].key
	if len(s.enrollments) >= maxPendingEnrollments-reservedPendingEnrollments && s.pendingBySource[widest] > 0 {
		return replaced, errTableFull
	}
	s.enrollments[id] = e
	for _, l := range e.limits {
		s.pendingBySource[l.key]++
	}
	return replaced, nil
}

func (s *Server) removeEnrollmentLocked(id string) {
	e, ok := s.enrollments[id]
	if !ok {
		return
	}
	delete(s.enrollments, id)
	for _, l := range e.limits {
		if s.pendingBySource[l.key]--; s.pendingBySource[l.key] <= 0 {
			delete(s.pendingBySource, l.key)
		}
	}
}

// trustEK decides whether the EK may enroll and returns how it is trusted.
func (s *Server) trustEK(req api.EnrollRequest, ek EKKey, known store.EK) (string, error) {
	if known.Status == store.EKPinned || known.Status == store.EKEnrolled {
		return "pinned", nil
	}
	switch s.cfg.EKMode {
	case EKModeTOFU:
		return "first-use", nil
	case EKModePinned:
		return "", fmt.Errorf("EK %s is not pinned: an administrator must run 'vouch ek pin' with its certificate or public key first", EKHash(ek.PKIX))
	default:
		if len(req.EKCertificate) == 0 {
			return "", fmt.Errorf("EK %s has no certificate to check against the vendor roots: pin it with 'vouch ek pin' instead, or, for a lab or a simulated TPM (which makes a new EK at each start), run the server with --ek-mode tofu", EKHash(ek.PKIX))
		}
		if err := s.be.VerifyEKCertificate(req.EKCertificate, ek, s.now()); err != nil {
			return "", fmt.Errorf("EK certificate does not chain to a configured vendor root: %w", err)
		}
		return "vendor-root", nil
	}
}

// handleActivate completes an enrollment: the secret the agent recovered
// with TPM2_ActivateCredential must equal the one the server encrypted.
func (s *Server) handleActivate(w http.ResponseWriter, r *http.Request) {
	var req api.ActivateRequest
	if !decode(w, r, api.MaxRequestBytes, &req) {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	e, ok := s.enrollments[id]
	if ok {
		// One try per challenge: a wrong activated secret needs a new
		// enrollment.
		s.removeEnrollmentLocked(id)
	}
	s.mu.Unlock()
	if !ok || s.now().After(e.expires) {
		writeError(w, http.StatusNotFound, api.CodeActivation, "unknown or expired enrollment: start again with POST /v1/enroll")
		return
	}
	log := s.log.With("machine", e.name, "ek_sha256", e.ekHash)
	if len(req.Secret) != len(e.secret) || subtle.ConstantTimeCompare(req.Secret, e.secret) != 1 {
		s.logRejected(log, "activation failed: wrong secret")
		writeError(w, http.StatusForbidden, api.CodeActivation, "the activated secret is wrong: the AK is not in the TPM that holds this EK")
		return
	}

	ctx := r.Context()
	m, err := s.store.Machine(ctx, e.name)
	if err == nil && m.EKHash == e.ekHash && bytes.Equal(m.AKPublic, e.akPublic) {
		// The same TPM and AK enrolled before (an agent that lost its
		// state file): nothing changes.
		log.Info("enrollment repeated by an enrolled machine")
		writeJSON(w, http.StatusOK, api.EnrollResult{Machine: toAPIMachine(m)})
		return
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	facts, _ := json.Marshal(e.facts)
	now := s.now()
	m = store.Machine{
		Name:       e.name,
		EKHash:     e.ekHash,
		AKPublic:   e.akPublic,
		Approved:   !s.cfg.RequireApproval,
		State:      store.StatePending,
		Reasons:    []string{ReasonAwaitingAttestation},
		StateSince: now,
		LastSeenAt: now,
		Facts:      facts,
		CreatedAt:  now,
	}
	if !m.Approved {
		m.Reasons = []string{ReasonAwaitingApproval}
	}
	ek := store.EK{Hash: e.ekHash, PublicDER: e.ek.PKIX, CertDER: e.ekCert, Note: "trusted by " + e.ekTrust}
	enrolled := store.Event{
		Machine: e.name, Kind: "enrolled", To: store.StatePending,
		Detail: fmt.Sprintf("EK %s trusted by %s; AK bound by credential activation", e.ekHash, e.ekTrust),
	}
	err = s.store.CreateMachine(ctx, m, ek, enrolled)
	if errors.Is(err, store.ErrConflict) {
		writeError(w, http.StatusConflict, api.CodeConflict, err.Error())
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.stateChanged("", m, enrolled, now)
	log.Info("machine enrolled", "ek_trust", e.ekTrust, "approved", m.Approved)
	s.kick(e.name)
	writeJSON(w, http.StatusOK, api.EnrollResult{Machine: toAPIMachine(m)})
}

func toAPIMachine(m store.Machine) api.Machine {
	var facts api.Facts
	json.Unmarshal(m.Facts, &facts)
	return api.Machine{
		Name:              m.Name,
		State:             m.State,
		Since:             m.StateSince,
		ReasonCodes:       m.Reasons,
		LastVerdictAt:     m.LastVerdictAt,
		LastSeenAt:        m.LastSeenAt,
		BootCount:         m.BootCount,
		IMAEntries:        m.IMAOffset,
		IntervalSeconds:   m.IntervalS,
		Approved:          m.Approved,
		ReferenceApproved: m.ReferenceApproved,
		EKSHA256:          m.EKHash,
		Facts:             facts,
	}
}

// checkFacts rejects a fact that a terminal or a log reader could
// misread: longer than api.MaxFactBytes or holding a character that is not
// printable (ESC, CR, a bidirectional override). Invalid UTF-8 cannot
// arrive, because the JSON decoder replaces it with U+FFFD.
func checkFacts(f api.Facts) error {
	for _, fact := range []struct{ name, value string }{
		{"hostname", f.Hostname}, {"os", f.OS}, {"agent_version", f.AgentVersion}, {"tpm", f.TPM},
	} {
		if len(fact.value) > api.MaxFactBytes {
			return fmt.Errorf("invalid facts.%s: %d bytes, the limit is %d", fact.name, len(fact.value), api.MaxFactBytes)
		}
		for i, r := range fact.value {
			if r != ' ' && !unicode.IsPrint(r) {
				return fmt.Errorf("invalid facts.%s %s: character %U at byte %d is not printable; report printable text only", fact.name, strictjson.Quote(fact.value), r, i)
			}
		}
	}
	return nil
}
