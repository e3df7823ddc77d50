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
	"net/http"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
)

// enrollmentTTL bounds the time between an enrollment request and its
// activation.
const enrollmentTTL = 2 * time.Minute

// maxPendingEnrollments bounds the unactivated enrollments held in memory.
const maxPendingEnrollments = 10000

type enrollment struct {
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
	var req api.EnrollRequest
	if !decode(w, r, api.MaxRequestBytes, &req) {
		return
	}
	log := s.log.With("machine", req.Name, "remote", r.RemoteAddr)
	if !validName(req.Name) {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("invalid machine name %q: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", req.Name))
		return
	}
	ek, err := s.be.ParseEK(req.EKPublicArea)
	if err != nil {
		log.Warn("enrollment rejected: invalid EK", "err", err)
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
		log.Warn("enrollment rejected: EK revoked")
		writeError(w, http.StatusForbidden, api.CodeEKRevoked, fmt.Sprintf("EK %s is revoked and cannot enroll under any name", ekHash))
		return
	}
	if m, err := s.store.MachineByEK(ctx, ekHash); err == nil && m.Name != req.Name {
		log.Warn("enrollment rejected: EK enrolled under another name", "enrolled_as", m.Name)
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
		log.Warn("enrollment rejected: name enrolled with another EK", "enrolled_ek", existing.EKHash)
		writeError(w, http.StatusConflict, api.CodeConflict, fmt.Sprintf("machine %q is enrolled with another EK: an administrator must forget it before a new TPM can take the name", req.Name))
		return
	case !bytes.Equal(existing.AKPublic, req.AKPublic):
		log.Warn("enrollment rejected: second AK for an enrolled EK")
		writeError(w, http.StatusConflict, api.CodeConflict, fmt.Sprintf("machine %q is enrolled with another AK: an administrator must forget it to re-enroll", req.Name))
		return
	}

	trust, err := s.trustEK(req, ek, known)
	if err != nil {
		log.Warn("enrollment rejected: EK not trusted", "err", err)
		writeError(w, http.StatusForbidden, api.CodeEKUntrusted, err.Error())
		return
	}
	ak, err := s.be.ParseAK(req.AKPublic)
	if err != nil {
		log.Warn("enrollment rejected: invalid AK", "err", err)
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
		log.Warn("enrollment rejected: make credential failed", "err", err)
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
		name: req.Name, ek: ek, ekHash: ekHash, ekCert: req.EKCertificate, ekTrust: trust,
		akPublic: req.AKPublic, facts: req.Facts, secret: secret, expires: now.Add(enrollmentTTL),
	}
	s.mu.Lock()
	for k, old := range s.enrollments {
		if now.After(old.expires) {
			delete(s.enrollments, k)
		}
	}
	full := len(s.enrollments) >= maxPendingEnrollments
	if !full {
		s.enrollments[id] = e
	}
	s.mu.Unlock()
	if full {
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "too many enrollments in progress: retry in a minute")
		return
	}
	log.Info("enrollment challenge sent", "ek_trust", trust)
	writeJSON(w, http.StatusOK, api.EnrollChallenge{
		EnrollmentID: id, Credential: cred, EncryptedSecret: encSecret, ExpiresAt: e.expires,
	})
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
		delete(s.enrollments, id)
	}
	s.mu.Unlock()
	if !ok || s.now().After(e.expires) {
		writeError(w, http.StatusNotFound, api.CodeActivation, "unknown or expired enrollment: start again with POST /v1/enroll")
		return
	}
	log := s.log.With("machine", e.name, "ek_sha256", e.ekHash)
	if len(req.Secret) != len(e.secret) || subtle.ConstantTimeCompare(req.Secret, e.secret) != 1 {
		log.Warn("activation failed: wrong secret")
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
