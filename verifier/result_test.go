package verifier

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
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
	// The harness's interval of an hour makes the unreachable limit
	// 3.3 hours, so the default validity applies.
	if want := m.LastVerdictAt.Add(DefaultResultValidity); !r.ExpiresAt.Equal(want.UTC()) {
		t.Errorf("result expires at %s, want %s (%s after the verdict)", r.ExpiresAt, want, DefaultResultValidity)
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

// fetchResult returns the machine's result from GET
// /v1/machines/{name}/result, verified with the server's key.
func (h *harness) fetchResult(t *testing.T, name string) *result.Result {
	t.Helper()
	var signed []byte
	if _, err := h.admin.Do(context.Background(), http.MethodGet, "/v1/machines/"+name+"/result", nil, (*rawBody)(&signed)); err != nil {
		t.Fatalf("GET result of %s: %v", name, err)
	}
	r, err := result.Verify(signed, h.srv.resultKey.Public(), time.Now())
	if err != nil {
		t.Fatalf("result of %s: %v", name, err)
	}
	return r
}

func TestResultValidityCappedByUnreachableLimit(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true, ResultValidity: 2 * time.Hour})
	a := h.newAgent(t, "capped", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	r := h.fetchResult(t, "capped")
	if got := r.ExpiresAt.Sub(r.VerifiedAt); got != 2*time.Hour {
		t.Errorf("result valid for %s after its verdict, want the configured 2h (under the unreachable limit of 3.3h)", got)
	}

	// A shorter interval for the machine brings its unreachable limit
	// under the configured validity: 3 intervals of 30 minutes plus 10 %.
	body := map[string]int{"seconds": 1800}
	if _, err := h.admin.Do(context.Background(), http.MethodPut, "/v1/machines/capped/interval", body, nil); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	r = h.fetchResult(t, "capped")
	if got, want := r.ExpiresAt.Sub(r.VerifiedAt), 99*time.Minute; got != want {
		t.Errorf("result valid for %s after its verdict, want the unreachable limit %s", got, want)
	}
}

func TestResultOfRevokedAndUntrustedMachines(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	ctx := context.Background()

	// A forgotten machine gets no new result. Forgetting it also lets the
	// simulator's EK enroll again below, under another name.
	b := h.newAgent(t, "gone", "")
	if err := b.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	h.attest(t, b)
	if _, err := h.admin.Do(ctx, http.MethodDelete, "/v1/machines/gone", nil, nil); err != nil {
		t.Fatal(err)
	}
	status, err := h.admin.Do(ctx, http.MethodGet, "/v1/machines/gone/result", nil, nil)
	if status != http.StatusNotFound || api.ErrorCode(err) != api.CodeNotFound {
		t.Errorf("result of a forgotten machine: status %d, %v; want 404 %s", status, err, api.CodeNotFound)
	}

	// A replayed nonce makes the machine untrusted, and its result states it.
	a := h.newAgent(t, "bad", "")
	if err := a.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	ch := h.challenge(t, "bad")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := h.send("bad", ev); err != nil || v.State != api.StateTrusted {
		t.Fatalf("first answer: %+v, %v", v, err)
	}
	h.send("bad", ev)
	r := h.fetchResult(t, "bad")
	if r.State != api.StateUntrusted || r.Trusted() {
		t.Errorf("result after a replay: state %s, trusted %v; want untrusted", r.State, r.Trusted())
	}
	if len(r.Reasons) == 0 || r.Reasons[0] != ReasonNonceReused {
		t.Errorf("result reasons %v, want %s", r.Reasons, ReasonNonceReused)
	}

	// A revoked machine gets no new result.
	if _, err := h.admin.Do(ctx, http.MethodPost, "/v1/machines/bad/revoke", api.RevokeRequest{Reason: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	status, err = h.admin.Do(ctx, http.MethodGet, "/v1/machines/bad/result", nil, nil)
	if status != http.StatusConflict || api.ErrorCode(err) != api.CodeEKRevoked {
		t.Errorf("result of a revoked machine: status %d, %v; want 409 %s", status, err, api.CodeEKRevoked)
	}
}

// rawBody keeps a response body as it is.
type rawBody []byte

func (b *rawBody) UnmarshalJSON(data []byte) error {
	*b = append((*b)[:0], data...)
	return nil
}
