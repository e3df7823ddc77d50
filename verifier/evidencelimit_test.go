package verifier

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestEvidenceWithoutChallengeRejected(t *testing.T) {
	h := newHarness(t, Config{EKMode: EKModeTOFU})

	resp, err := http.Post(h.http.URL+"/v1/agents/nobody/evidence", "application/json",
		strings.NewReader(`{"challenge_id":"x","eventlog":"AAAA"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	msg, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(msg), "no challenge was issued to machine nobody") {
		t.Errorf("response %q does not name the machine and the missing challenge", msg)
	}
}

func TestEvidenceSlotsBounded(t *testing.T) {
	h := newHarness(t, Config{EKMode: EKModeTOFU})
	for range maxConcurrentEvidence {
		if _, ok := h.srv.acquireEvidenceSlot(context.Background()); !ok {
			t.Fatal("a free evidence slot was not granted")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := h.srv.acquireEvidenceSlot(ctx); ok {
		t.Errorf("slot %d granted beyond the limit of %d", maxConcurrentEvidence+1, maxConcurrentEvidence)
	}
}
