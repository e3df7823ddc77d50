package verifier

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/internal/strictjson"
	"github.com/vouch-attest/vouch/store"
)

func (s *Server) handleListMachines(w http.ResponseWriter, r *http.Request) {
	machines, err := s.store.Machines(r.Context())
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := make([]api.Machine, 0, len(machines))
	for _, m := range machines {
		out = append(out, toAPIMachine(m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleShowMachine(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	m, err := s.store.Machine(ctx, r.PathValue("name"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	detail := api.MachineDetail{Machine: toAPIMachine(m)}
	verdicts, err := s.store.Verdicts(ctx, m.Name, 1)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if len(verdicts) == 1 {
		v := verdicts[0]
		av := &api.Verdict{State: v.State, At: v.At, BootCount: v.BootCount}
		if err := json.Unmarshal(v.Detail, &av.Reasons); err != nil {
			av.Reasons = []api.Reason{{Code: "unreadable", Message: "the stored verdict detail is unreadable"}}
		}
		if len(v.IMA) > 0 {
			av.IMA = new(api.IMAReport)
			if err := json.Unmarshal(v.IMA, av.IMA); err != nil {
				av.IMA = &api.IMAReport{Missing: "the stored IMA report is unreadable"}
			}
		}
		detail.Verdict = av
	}
	hist, err := s.store.History(ctx, m.Name, 20)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	detail.History = toAPIHistory(hist)
	writeJSON(w, http.StatusOK, detail)
}

func toAPIHistory(events []store.Event) []api.HistoryEvent {
	out := make([]api.HistoryEvent, 0, len(events))
	for _, e := range events {
		out = append(out, api.HistoryEvent{At: e.At, Machine: e.Machine, Kind: e.Kind, From: e.From, To: e.To, Detail: e.Detail})
	}
	return out
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("invalid limit %q: give 1 to 10000", v))
			return
		}
		limit = n
	}
	hist, err := s.store.History(r.Context(), r.URL.Query().Get("machine"), limit)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toAPIHistory(hist))
}

// handleApprove approves a machine and the reference values learned from
// its first attested boot (or, before that boot, the values it will
// give), then requests an attestation at once.
func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	defer s.lockMachine(r.PathValue("name"))()
	m, err := s.store.Machine(ctx, r.PathValue("name"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if revoked(m) {
		writeError(w, http.StatusConflict, api.CodeEKRevoked, fmt.Sprintf("machine %q is revoked: forget it and enroll a new TPM", m.Name))
		return
	}
	detail := "machine approved"
	m.Approved = true
	switch {
	case m.Reference == nil:
		// Approved before its first verified boot: the reference values
		// learned from that boot are approved with the machine.
		m.ReferenceApproved = true
		detail = "machine approved, with the reference values its first verified boot will give"
	case !m.ReferenceApproved:
		detail = fmt.Sprintf("machine and the reference values of boot %d approved", m.BootCount)
		note, err := s.approveReference(&m, s.now())
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		if note != "" {
			detail += "; " + note
		}
	}
	if err := s.store.UpdateMachine(ctx, m, store.Event{Machine: m.Name, Kind: "approved", From: m.State, To: m.State, Detail: detail}); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.log.Info("machine approved", "machine", m.Name, "reference_approved", m.ReferenceApproved)
	s.kick(m.Name)
	writeJSON(w, http.StatusOK, toAPIMachine(m))
}

// handleRevoke revokes a machine's EK: the machine is untrusted for good
// and its TPM can never enroll again, under any name.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	var req api.RevokeRequest
	if r.ContentLength != 0 && !decode(w, r, api.MaxRequestBytes, &req) {
		return
	}
	if err := checkAdminText("reason", req.Reason); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	defer s.lockMachine(r.PathValue("name"))()
	m, err := s.store.Machine(ctx, r.PathValue("name"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	ek, err := s.store.EK(ctx, m.EKHash)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	ek.Status = store.EKRevoked
	ek.Machine = m.Name
	ek.Note = "revoked with machine " + m.Name
	if reason := strings.TrimSpace(req.Reason); reason != "" {
		ek.Note += ": " + reason
	}
	if err := s.store.PutEK(ctx, ek, store.Event{Machine: m.Name, Kind: "ek-revoked", Detail: "EK " + ek.Hash}); err != nil {
		s.internalError(w, r, err)
		return
	}
	old := m.State
	m.State = store.StateUntrusted
	m.StateSince = s.now()
	m.Reasons = []string{ReasonRevoked}
	detail := "revoked by an administrator"
	if req.Reason != "" {
		detail += ": " + req.Reason
	}
	ev := store.Event{Machine: m.Name, Kind: "revoked", From: old, To: m.State, Detail: detail}
	if err := s.store.UpdateMachine(ctx, m, ev); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.stateChanged(old, m, ev, m.StateSince)
	s.log.Warn("machine revoked", "machine", m.Name, "ek_sha256", m.EKHash)
	s.kick(m.Name) // release a waiting agent so it learns of the revocation
	writeJSON(w, http.StatusOK, toAPIMachine(m))
}

// handleForget deletes a machine and its verdicts. Its EK may enroll again
// unless it was revoked. The history keeps every entry.
func (s *Server) handleForget(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	defer s.lockMachine(name)()
	m, err := s.store.Machine(r.Context(), name)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	ev := store.Event{Machine: name, Kind: "forgotten", Detail: "removed by an administrator"}
	if err := s.store.DeleteMachine(r.Context(), name, ev); err != nil {
		s.storeError(w, r, err)
		return
	}
	oldState := m.State
	m.State = ""
	s.stateChanged(oldState, m, ev, s.now())
	s.mu.Lock()
	delete(s.logCache, name)
	if sess := s.sessions[name]; sess != nil {
		sess.wakeLocked()
		delete(s.sessions, name)
	}
	s.mu.Unlock()
	s.log.Info("machine forgotten", "machine", name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleAttestNow(w http.ResponseWriter, r *http.Request) {
	m, err := s.store.Machine(r.Context(), r.PathValue("name"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.kick(m.Name)
	if !s.agentConnected(m) {
		last := "never"
		if !m.LastSeenAt.IsZero() {
			last = m.LastSeenAt.Format(time.RFC3339)
		}
		writeError(w, http.StatusConflict, api.CodeNoAgent, fmt.Sprintf("no agent of machine %q is connected (last seen %s): it is attested as soon as its agent connects; check that vouch agent runs there, or, with several verifier replicas, ask the replica its agent is connected to", m.Name, last))
		return
	}
	writeJSON(w, http.StatusAccepted, toAPIMachine(m))
}

// maxIntervalSeconds bounds a machine's attestation interval (one week).
const maxIntervalSeconds = 7 * 24 * 3600

func (s *Server) handleSetInterval(w http.ResponseWriter, r *http.Request) {
	var req api.IntervalRequest
	if !decode(w, r, api.MaxRequestBytes, &req) {
		return
	}
	if req.Seconds < 0 || req.Seconds > maxIntervalSeconds {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("invalid interval of %d seconds: give 1 to %d, or 0 for the server's default", req.Seconds, maxIntervalSeconds))
		return
	}
	ctx := r.Context()
	defer s.lockMachine(r.PathValue("name"))()
	m, err := s.store.Machine(ctx, r.PathValue("name"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	old := m.IntervalS
	m.IntervalS = req.Seconds
	detail := fmt.Sprintf("attestation interval %ds -> %ds (0 is the server's default of %s)", old, m.IntervalS, s.cfg.Interval)
	if err := s.store.UpdateMachine(ctx, m, store.Event{Machine: m.Name, Kind: "interval", Detail: detail}); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.log.Info("attestation interval changed", "machine", m.Name, "seconds", m.IntervalS)
	s.kick(m.Name)
	writeJSON(w, http.StatusOK, toAPIMachine(m))
}

func toAPIEK(ek store.EK) api.EK {
	return api.EK{SHA256: ek.Hash, Status: ek.Status, Machine: ek.Machine, Note: ek.Note}
}

func (s *Server) handleListEKs(w http.ResponseWriter, r *http.Request) {
	eks, err := s.store.EKs(r.Context())
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := make([]api.EK, 0, len(eks))
	for _, ek := range eks {
		out = append(out, toAPIEK(ek))
	}
	writeJSON(w, http.StatusOK, out)
}

// handlePinEK registers an EK so its machine may enroll in any EK mode.
func (s *Server) handlePinEK(w http.ResponseWriter, r *http.Request) {
	var req api.PinEKRequest
	if !decode(w, r, api.MaxRequestBytes, &req) {
		return
	}
	ek, err := pinnedEK(req)
	if err == nil {
		err = checkAdminText("note", req.Note)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	known, err := s.store.EK(ctx, ek.Hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.internalError(w, r, err)
		return
	case known.Status == store.EKRevoked:
		writeError(w, http.StatusConflict, api.CodeEKRevoked, fmt.Sprintf("EK %s is revoked and cannot be pinned again", ek.Hash))
		return
	case known.Status == store.EKEnrolled:
		writeJSON(w, http.StatusOK, toAPIEK(known))
		return
	}
	ek.Status = store.EKPinned
	ek.Note = req.Note
	if err := s.store.PutEK(ctx, ek, store.Event{Kind: "ek-pinned", Detail: "EK " + ek.Hash}); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.log.Info("EK pinned", "ek_sha256", ek.Hash)
	writeJSON(w, http.StatusCreated, toAPIEK(ek))
}

// pinnedEK reads the EK identity from a pin request: a certificate, a
// public key (each DER or PEM) or a hex SHA-256.
func pinnedEK(req api.PinEKRequest) (store.EK, error) {
	given := 0
	for _, set := range []bool{len(req.Certificate) > 0, len(req.PublicKey) > 0, req.SHA256 != ""} {
		if set {
			given++
		}
	}
	if given != 1 {
		return store.EK{}, errors.New("give exactly one of certificate, public_key or sha256")
	}
	switch {
	case len(req.Certificate) > 0:
		der := pemOrDER(req.Certificate, "CERTIFICATE")
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return store.EK{}, fmt.Errorf("invalid EK certificate: %w", err)
		}
		if err := CheckEKCertificate(cert); err != nil {
			return store.EK{}, fmt.Errorf("invalid EK certificate: %w", err)
		}
		pkix, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
		if err != nil {
			return store.EK{}, fmt.Errorf("EK certificate key: %w", err)
		}
		return store.EK{Hash: EKHash(pkix), PublicDER: pkix, CertDER: der}, nil
	case len(req.PublicKey) > 0:
		der := pemOrDER(req.PublicKey, "PUBLIC KEY")
		key, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return store.EK{}, fmt.Errorf("invalid EK public key (want PKIX DER or PEM): %w", err)
		}
		if err := CheckEKKey(key); err != nil {
			return store.EK{}, fmt.Errorf("invalid EK public key: %w", err)
		}
		pkix, err := x509.MarshalPKIXPublicKey(key)
		if err != nil {
			return store.EK{}, err
		}
		return store.EK{Hash: EKHash(pkix), PublicDER: pkix}, nil
	default:
		h := strings.ToLower(strings.TrimSpace(req.SHA256))
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return store.EK{}, fmt.Errorf("invalid sha256 %q: give 64 hex digits", req.SHA256)
		}
		return store.EK{Hash: h}, nil
	}
}

func pemOrDER(b []byte, typ string) []byte {
	if block, _ := pem.Decode(b); block != nil && block.Type == typ {
		return block.Bytes
	}
	return b
}

// handleRevokeEK revokes an EK by hash, enrolled or not.
func (s *Server) handleRevokeEK(w http.ResponseWriter, r *http.Request) {
	hash := strings.ToLower(r.PathValue("hash"))
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("invalid EK hash %q: give 64 hex digits", hash))
		return
	}
	ctx := r.Context()
	if m, err := s.store.MachineByEK(ctx, hash); err == nil {
		r.SetPathValue("name", m.Name)
		s.handleRevoke(w, r)
		return
	}
	ek, err := s.store.EK(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		ek = store.EK{Hash: hash}
	} else if err != nil {
		s.internalError(w, r, err)
		return
	}
	ek.Status = store.EKRevoked
	if err := s.store.PutEK(ctx, ek, store.Event{Kind: "ek-revoked", Detail: "EK " + hash}); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.log.Warn("EK revoked", "ek_sha256", hash)
	writeJSON(w, http.StatusOK, toAPIEK(ek))
}

func (s *Server) handleRotateToken(w http.ResponseWriter, r *http.Request) {
	tok, err := s.tokens.rotate()
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.log.Info("admin token rotated", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, api.TokenResponse{Token: tok})
}

// maxAdminTextBytes bounds an EK note or a revocation reason.
const maxAdminTextBytes = 1024

// checkAdminText rejects an administrator's free text (an EK note, a
// revocation reason) that is too long or contains a character that is
// not printable, as enrollment rejects such host facts: the text is
// shown in terminals and logs.
func checkAdminText(field, value string) error {
	if len(value) > maxAdminTextBytes {
		return fmt.Errorf("invalid %s: %d bytes, the limit is %d", field, len(value), maxAdminTextBytes)
	}
	for i, r := range value {
		if r != ' ' && !unicode.IsPrint(r) {
			return fmt.Errorf("invalid %s %s: character %U at byte %d is not printable: give printable text only", field, strictjson.Quote(value), r, i)
		}
	}
	return nil
}
