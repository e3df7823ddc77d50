package verifier

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// tokenStore stores the admin bearer token. Only its SHA-256 is kept in
// memory. The file in the data directory (mode 0600) contains the token
// itself, so an administrator on the server machine can read it.
type tokenStore struct {
	path string
	mu   sync.RWMutex
	hash [32]byte
}

// loadOrCreateToken reads the admin token file in dataDir, creating it with
// a new random token on first start. created reports whether it did.
func loadOrCreateToken(dataDir string) (ts *tokenStore, created bool, err error) {
	ts = &tokenStore{path: filepath.Join(dataDir, tokenFile)}
	data, err := os.ReadFile(ts.path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := ts.rotate(); err != nil {
			return nil, false, err
		}
		return ts, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read admin token: %w", err)
	}
	if fi, err := os.Stat(ts.path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("admin token file %s is readable by group or others (mode %v): chmod 600 it", ts.path, fi.Mode().Perm())
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 16 {
		return nil, false, fmt.Errorf("admin token file %s holds fewer than 16 characters: delete it to create a new token", ts.path)
	}
	ts.hash = sha256.Sum256([]byte(tok))
	return ts, false, nil
}

// rotate replaces the token with a new random one and returns it.
func (ts *tokenStore) rotate() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := "vouch_" + base64.RawURLEncoding.EncodeToString(raw[:])
	if err := writeFileAtomic(ts.path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store admin token: %w", err)
	}
	ts.mu.Lock()
	ts.hash = sha256.Sum256([]byte(tok))
	ts.mu.Unlock()
	return tok, nil
}

// check compares a presented token with the current one in constant time.
func (ts *tokenStore) check(presented string) bool {
	h := sha256.Sum256([]byte(presented))
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return subtle.ConstantTimeCompare(h[:], ts.hash[:]) == 1
}
