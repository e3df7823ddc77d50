package verifier

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

func TestAttestNowWithoutAgent(t *testing.T) {
	h := newHarness(t, Config{ChallengeTTL: 300 * time.Millisecond})
	a := h.newAgent(t, "idle", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	attestNow := func() (int, error) {
		return h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/idle/attest", nil, nil)
	}
	// Enrolled, but no agent asks for challenges.
	status, err := attestNow()
	if status != http.StatusConflict || api.ErrorCode(err) != api.CodeNoAgent || !strings.Contains(err.Error(), "no agent") {
		t.Fatalf("attest now without an agent: %d %v", status, err)
	}
	// An agent holding a challenge is connected until it is due.
	var ch api.Challenge
	if status, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/idle/challenge?wait=1", nil, &ch); err != nil || status != http.StatusOK {
		t.Fatalf("challenge: %d %v", status, err)
	}
	if status, err := attestNow(); err != nil || status != http.StatusAccepted {
		t.Errorf("attest now while the agent answers: %d %v", status, err)
	}
	time.Sleep(400 * time.Millisecond)
	if status, err := attestNow(); api.ErrorCode(err) != api.CodeNoAgent {
		t.Errorf("attest now after the agent let its challenge expire: %d %v", status, err)
	}
	// A waiting challenge request is a connected agent: take the challenge
	// the last request made due, let it expire, then wait for the next.
	if _, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/idle/challenge?wait=1", nil, &ch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/idle/challenge?wait=5", nil, nil)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !h.srv.agentConnected("idle") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !h.srv.agentConnected("idle") {
		t.Fatal("an agent waiting for its challenge does not count as connected")
	}
	if status, err := attestNow(); err != nil || status != http.StatusAccepted {
		t.Errorf("attest now with a waiting agent: %d %v", status, err)
	}
	<-done
}
