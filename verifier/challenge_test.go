package verifier

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
)

func TestChallengePollerCannotStarveAgent(t *testing.T) {
	// Strangers poll the machine's challenges and send evidence the AK did
	// not sign for each, outnumbering the agent four to one.
	// Every poller gets the outstanding challenge and garbage does not use
	// it, so the agent still attests every interval.
	h := newHarness(t, Config{Interval: 300 * time.Millisecond, UnreachableAfter: 10, ChallengeTTL: 5 * time.Second, AutoApproveReference: true})
	a := h.newAgent(t, "busy", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	stolen, seen := 0, map[string]bool{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var ch api.Challenge
				status, err := h.anon.Do(ctx, http.MethodGet, "/v1/agents/busy/challenge?wait=5", nil, &ch)
				if err != nil || status != http.StatusOK {
					continue
				}
				mu.Lock()
				stolen++
				seen[ch.ID] = true
				mu.Unlock()
				garbage := api.Evidence{ChallengeID: ch.ID, Quote: []byte("AAAA"), Signature: []byte("AAAA"), EventLogMissing: "x"}
				h.anon.Do(ctx, http.MethodPost, "/v1/agents/busy/evidence", garbage, nil)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(ctx) }()

	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	<-agentDone

	verdicts, err := h.store.Verdicts(context.Background(), "busy", 1000)
	if err != nil {
		t.Fatal(err)
	}
	// 3 s at 300 ms (±10%) gives about 9 attestations on an idle machine.
	// Whatever the load, the agent uses every challenge but the one
	// outstanding at the end. Strangers that took its turns would leave
	// it fewer.
	if len(verdicts) < 4 {
		t.Errorf("agent attested %d times in 3 s at a 300 ms interval, want at least 4", len(verdicts))
	}
	if len(verdicts) < len(seen)-1 {
		t.Errorf("agent attested %d times but strangers received %d distinct challenges: they took its turns", len(verdicts), len(seen))
	}
	for _, v := range verdicts {
		if v.State != store.StateTrusted {
			t.Errorf("verdict at %s: %s %v, want trusted", v.At, v.State, v.Reasons)
		}
	}
	hist, err := h.store.History(context.Background(), "busy", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		if e.To == store.StateUnreachable || e.To == store.StateUntrusted {
			t.Errorf("history entry %s %s -> %s: %s", e.Kind, e.From, e.To, e.Detail)
		}
	}
	t.Logf("strangers received %d challenges, %d distinct; agent attested %d times", stolen, len(seen), len(verdicts))
}

func TestStrangerPollDoesNotHideOutage(t *testing.T) {
	// The agent is gone. A stranger keeps a challenge request open for the
	// machine at all times, which does not count as activity: the machine
	// becomes unreachable on schedule.
	h := newHarness(t, Config{Interval: 200 * time.Millisecond, UnreachableAfter: 2, ChallengeTTL: 300 * time.Millisecond, AutoApproveReference: true})
	a := h.newAgent(t, "offline", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	last := h.machine(t, "offline").LastVerdictAt

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			h.anon.Do(ctx, http.MethodGet, "/v1/agents/offline/challenge?wait=5", nil, nil)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := h.machine(t, "offline"); m.State == store.StateUnreachable {
			if late := m.StateSince.Sub(last); late > 2*time.Second {
				t.Errorf("unreachable %s after the last verdict, want at most 2 s (2 intervals of 200 ms)", late)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("machine never became unreachable while a stranger polled its challenges")
}
