package verifier

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/result"
	"github.com/vouch-attest/vouch/store"
)

// Files of the result signing key in the data directory.
const (
	resultKeyFile    = "result-key.pem"
	resultPubKeyFile = "result-key.pub"
)

// loadOrCreateResultKey reads the key that signs attestation results from
// dataDir, creating an Ed25519 key on first start. created reports
// whether it did. The public key is also written beside it, for relying
// parties.
func loadOrCreateResultKey(dataDir string) (key *bundle.PrivateKey, created bool, err error) {
	path := filepath.Join(dataDir, resultKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createResultKey(dataDir)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read result signing key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("result signing key %s is readable by group or others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	key, err = bundle.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, false, fmt.Errorf("result signing key %s: %w: delete it to create a new key, and give relying parties the new %s", path, err, resultPubKeyFile)
	}
	return key, false, nil
}

func createResultKey(dataDir string) (*bundle.PrivateKey, bool, error) {
	key, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		return nil, false, err
	}
	priv, err := bundle.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, false, err
	}
	pub, err := bundle.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(filepath.Join(dataDir, resultKeyFile), priv, 0o600); err != nil {
		return nil, false, fmt.Errorf("store result signing key: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dataDir, resultPubKeyFile), pub, 0o644); err != nil {
		return nil, false, fmt.Errorf("store result public key: %w", err)
	}
	return key, true, nil
}

// DefaultResultValidity is the default of Config.ResultValidity. At the
// default interval of 60 s the unreachable limit (198 s) is shorter, so a
// result then stays valid through two missed attestations. For machines
// with long intervals it bounds how long a result outlives a revocation.
const DefaultResultValidity = 10 * time.Minute

// resultValidity returns how long m's results stay valid after its verdict:
// Config.ResultValidity, or less when m's unreachable limit is shorter.
func (s *Server) resultValidity(m store.Machine) time.Duration {
	return min(s.cfg.ResultValidity, s.unreachableLimit(m))
}

// signedResult returns the machine's current state as a signed attestation
// result, valid for resultValidity after its verdict. It returns nil for a
// machine without a verdict yet.
func (s *Server) signedResult(m store.Machine) ([]byte, error) {
	if m.LastVerdictAt.IsZero() {
		return nil, nil
	}
	ak := sha256.Sum256(m.AKPublic)
	r := &result.Result{
		Machine: m.Name, State: m.State, Reasons: m.Reasons, EKSHA256: m.EKHash, AKSHA256: hex.EncodeToString(ak[:]),
		BootCount: m.BootCount, ResetCount: m.ResetCount, VerifiedAt: m.LastVerdictAt.UTC(),
		IssuedAt: s.now().UTC(), ExpiresAt: m.LastVerdictAt.Add(s.resultValidity(m)).UTC(),
	}
	if !r.ExpiresAt.After(r.IssuedAt) {
		// The verdict is older than the validity: the result expires as it
		// is issued.
		r.ExpiresAt = r.IssuedAt.Add(1)
	}
	return result.Sign(r, s.resultKey, s.rand)
}

// handleResult returns the machine's signed attestation result.
func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m, err := s.store.Machine(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("machine %q is not enrolled", name))
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}

	ek, err := s.store.EK(r.Context(), m.EKHash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	if revoked(m) || ek.Status == store.EKRevoked {
		writeError(w, http.StatusConflict, api.CodeEKRevoked, fmt.Sprintf("machine %q is revoked: the server issues no attestation results for it", name))
		return
	}

	signed, err := s.signedResult(m)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if signed == nil {
		writeError(w, http.StatusConflict, api.CodeConflict, fmt.Sprintf("machine %q has no verdict yet: wait for its first attestation", name))
		return
	}

	w.Header().Set("Content-Type", "application/json")
	w.Write(signed)
}

// handleResultKey returns the public key that verifies attestation results.
func (s *Server) handleResultKey(w http.ResponseWriter, r *http.Request) {
	pub, err := bundle.MarshalPublicKeyPEM(s.resultKey.Public())
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(pub)
}
