package verifier

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/result"
)

// TestSignedResults follows one machine's attestation results: none before
// its first verdict, then one with every verdict, matching the machine's
// state and verifiable with the key the server publishes.
func TestSignedResults(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.newAgent(t, "r1", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if status, err := h.admin.Do(ctx, http.MethodGet, "/v1/machines/r1/result", nil, nil); status != http.StatusConflict {
		t.Errorf("result before the first verdict: status %d, %v; want 409", status, err)
	}

	resp, err := http.Get(h.http.URL + "/v1/result-key")
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pub, err := bundle.ParsePublicKeyPEM(pem)
	if err != nil {
		t.Fatalf("GET /v1/result-key: %v", err)
	}

	v := h.attest(t, a)
	r, err := result.Verify(v.Result, pub, time.Now())
	if err != nil {
		t.Fatalf("result in the verdict: %v", err)
	}
	m := h.machine(t, "r1")
	if r.Machine != "r1" || r.State != m.State || r.BootCount != m.BootCount || r.EKSHA256 != m.EKHash || r.Trusted() {
		t.Errorf("result %+v does not match machine %s %s boot %d", r, m.Name, m.State, m.BootCount)
	}
	if want := m.LastVerdictAt.Add(h.srv.unreachableLimit(m)); !r.ExpiresAt.Equal(want.UTC()) {
		t.Errorf("result expires at %s, want %s (when the machine would become unreachable)", r.ExpiresAt, want)
	}

	if _, err := h.admin.Do(ctx, http.MethodPost, "/v1/machines/r1/approve", nil, nil); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	var signed []byte
	if _, err := h.admin.Do(ctx, http.MethodGet, "/v1/machines/r1/result", nil, (*rawBody)(&signed)); err != nil {
		t.Fatal(err)
	}
	if r, err := result.Verify(signed, pub, time.Now()); err != nil || !r.Trusted() {
		t.Errorf("result after approval: %+v, %v; want trusted", r, err)
	}
	if status, _ := h.anon.Do(ctx, http.MethodGet, "/v1/machines/r1/result", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("result without the admin token: status %d, want 401", status)
	}
}

// rawBody keeps a response body as it is.
type rawBody []byte

func (b *rawBody) UnmarshalJSON(data []byte) error {
	*b = append((*b)[:0], data...)
	return nil
}
