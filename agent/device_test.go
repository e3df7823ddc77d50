package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/tpm"
)

// fakeVerifier serves enrollments. It rejects the EK while reject is set,
// else runs a real MakeCredential and checks the activated secret.
type fakeVerifier struct {
	reject bool
	secret []byte
}

func (f *fakeVerifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/enroll" && f.reject:
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(api.Error{Code: api.CodeEKUntrusted, Message: "EK has no certificate"})
	case r.URL.Path == "/v1/enroll":
		var req api.EnrollRequest
		json.NewDecoder(r.Body).Decode(&req)
		ek, err := attest.ParseEKPublic(req.EKPublicArea)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ak, err := attest.ParseAKPublic(req.AKPublic)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.secret = make([]byte, 32)
		rand.Read(f.secret)
		cred, err := attest.MakeCredential(rand.Reader, ek, ak.Name, f.secret)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(api.EnrollChallenge{EnrollmentID: "e1", Credential: cred.CredentialBlob, EncryptedSecret: cred.EncryptedSecret})
	case r.URL.Path == "/v1/enroll/e1/activate":
		var req api.ActivateRequest
		json.NewDecoder(r.Body).Decode(&req)
		if !bytes.Equal(req.Secret, f.secret) {
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(api.Error{Code: api.CodeActivation, Message: "wrong secret"})
			return
		}
		json.NewEncoder(w).Encode(api.EnrollResult{Machine: api.Machine{Name: "m1"}})
	default:
		http.NotFound(w, r)
	}
}

func openSimulator(t *testing.T) *tpm.TPM {
	t.Helper()
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no TPM simulator (cgo disabled)")
	}
	sim, err := tpm.Open(tpm.Config{Transport: "simulator"})
	if err != nil {
		t.Fatal(err)
	}
	return sim
}

// TestAKKeptOnlyAfterEnrollmentAndCheckedAtStart follows a state
// directory through a rejected enrollment, an accepted one, and a start
// on a fresh simulator, which cannot load the saved AK.
func TestAKKeptOnlyAfterEnrollmentAndCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	akPath := filepath.Join(dir, akFile)
	fake := &fakeVerifier{reject: true}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	sim := openSimulator(t)
	dev, err := NewDeviceTPM(sim, dir)
	if err != nil {
		t.Fatal(err)
	}
	// The command wraps the device for simulated IMA lists; the AK must
	// still be saved through the wrapper.
	wrapped := WithBeforeQuote(dev, func() error { return nil })
	a, err := New(Config{Server: srv.URL, Name: "m1", StateDir: dir, TPM: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	var perm *PermanentError
	if err := a.Run(context.Background()); !errors.As(err, &perm) {
		t.Fatalf("run against a verifier that rejects the EK: %v", err)
	}
	if _, err := os.Stat(akPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a rejected enrollment left %s behind (stat: %v)", akPath, err)
	}

	fake.reject = false
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if _, err := os.Stat(akPath); err != nil {
		t.Fatalf("the enrolled AK was not saved: %v", err)
	}
	sim.Close()

	// A fresh simulator has other seeds: the saved AK is not its own.
	sim = openSimulator(t)
	defer sim.Close()
	_, err = NewDeviceTPM(sim, dir)
	var stale *AKNotInTPMError
	if !errors.As(err, &stale) || !errors.As(err, &perm) {
		t.Fatalf("start with another TPM's AK: %v, want a permanent *AKNotInTPMError", err)
	}
	for _, want := range []string{akPath, "TPM_RC_INTEGRITY", "remove the state directory " + dir, "vouch hosts forget"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
