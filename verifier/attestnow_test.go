package verifier

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// testClock is a Config.Now that tests move forward by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestAttestNowWithoutAgent(t *testing.T) {
	clock := newTestClock()
	h := newHarness(t, Config{Now: clock.Now, ChallengeTTL: 10 * time.Second, AutoApproveReference: true})
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
	// An agent holding an outstanding challenge is connected until the
	// challenge expires.
	h.challenge(t, "idle")
	if status, err := attestNow(); err != nil || status != http.StatusAccepted {
		t.Errorf("attest now while the agent answers: %d %v", status, err)
	}
	clock.Advance(11 * time.Second)
	if status, err := attestNow(); api.ErrorCode(err) != api.CodeNoAgent {
		t.Errorf("attest now after the agent let its challenge expire: %d %v", status, err)
	}

	// After verified evidence the agent counts as connected while it
	// reconnects, and then while its next challenge request waits.
	ch := h.challenge(t, "idle")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.send("idle", ev); err != nil {
		t.Fatal(err)
	}
	if status, err := attestNow(); err != nil || status != http.StatusAccepted {
		t.Errorf("attest now right after verified evidence: %d %v", status, err)
	}
	clock.Advance(agentReconnectGrace + time.Second)
	h.srv.mu.Lock()
	h.srv.sessions["idle"].nextDue = clock.Now().Add(time.Hour) // undo attestNow's kick
	h.srv.mu.Unlock()
	if status, err := attestNow(); api.ErrorCode(err) != api.CodeNoAgent {
		t.Errorf("attest now after the agent went away: %d %v", status, err)
	}
	h.srv.mu.Lock()
	h.srv.sessions["idle"].nextDue = clock.Now().Add(time.Hour)
	h.srv.mu.Unlock()
	h.waitingPoll(t, "idle")
	if status, err := attestNow(); err != nil || status != http.StatusAccepted {
		t.Errorf("attest now with a waiting agent: %d %v", status, err)
	}
}

// waitingPoll holds a challenge request for name open until the test ends
// and returns once the server counts it as waiting.
func (h *harness) waitingPoll(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.anon.Do(ctx, http.MethodGet, "/v1/agents/"+name+"/challenge?wait=30", nil, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.srv.mu.Lock()
		sess := h.srv.sessions[name]
		waiting := sess != nil && sess.waiting > 0
		h.srv.mu.Unlock()
		if waiting {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the challenge request for %s never started waiting", name)
}

func TestAttestNowIgnoresStrangerPoll(t *testing.T) {
	// The machine's agent went silent longer ago than the unreachable
	// limit. A client polling its challenges, which anyone can do, gets
	// one but does not make the machine look connected.
	clock := newTestClock()
	h := newHarness(t, Config{Now: clock.Now, Interval: time.Minute, UnreachableAfter: 2, AutoApproveReference: true})
	a := h.newAgent(t, "silent", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	clock.Advance(10 * time.Minute)
	var ch api.Challenge
	if status, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/silent/challenge?wait=1", nil, &ch); err != nil || status != http.StatusOK {
		t.Fatalf("stranger's challenge request: %d %v", status, err)
	}
	status, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/silent/attest", nil, nil)
	if status != http.StatusConflict || api.ErrorCode(err) != api.CodeNoAgent {
		t.Errorf("attest now with only a stranger polling: %d %v, want 409 %s", status, err, api.CodeNoAgent)
	}
}
