package verifier

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// scrape fetches the metrics over HTTP and returns each sample's value
// by its name and labels, as the text exposition prints them.
func scrape(t *testing.T, h *harness) map[string]float64 {
	t.Helper()
	ts := httptest.NewServer(h.srv.MetricsHandler())
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

func checkSample(t *testing.T, samples map[string]float64, key string, want float64) {
	t.Helper()
	got, ok := samples[key]
	if !ok {
		t.Errorf("metric %s missing", key)
		return
	}
	if got != want {
		t.Errorf("metric %s = %v, want %v", key, got, want)
	}
}

func TestMetricsFollowAttestations(t *testing.T) {
	h := newHarness(t, Config{MetricsPerMachine: true})
	a := h.newAgent(t, "metrics1", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := scrape(t, h)
	checkSample(t, m, `vouch_enrollments_total{outcome="challenge_sent",step="request"}`, 1)
	checkSample(t, m, `vouch_enrollments_total{outcome="enrolled",step="activate"}`, 1)
	checkSample(t, m, `vouch_machines{state="pending"}`, 1)
	checkSample(t, m, `vouch_machines{state="trusted"}`, 0)
	checkSample(t, m, `vouch_machine_state_changes_total{from="",to="pending"}`, 1)
	checkSample(t, m, `vouch_enrollments_pending`, 0)

	h.attest(t, a)
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/metrics1/approve", nil, nil); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)

	m = scrape(t, h)
	checkSample(t, m, `vouch_attestations_total{result="pending"}`, 1)
	checkSample(t, m, `vouch_attestations_total{result="trusted"}`, 1)
	checkSample(t, m, `vouch_attestation_reasons_total{code="reference_unapproved"}`, 1)
	checkSample(t, m, `vouch_attestation_duration_seconds_count`, 2)
	checkSample(t, m, `vouch_challenges_issued_total`, 2)
	checkSample(t, m, `vouch_challenges_outstanding`, 0)
	checkSample(t, m, `vouch_machines{state="pending"}`, 0)
	checkSample(t, m, `vouch_machines{state="trusted"}`, 1)
	checkSample(t, m, `vouch_machine_state_changes_total{from="pending",to="trusted"}`, 1)
	checkSample(t, m, `vouch_machine_state{machine="metrics1",state="trusted"}`, 1)
	checkSample(t, m, `vouch_machine_boot_count{machine="metrics1"}`, 1)
	checkSample(t, m, `vouch_http_requests_total{code="200",route="POST /v1/machines/{name}/approve"}`, 1)
	if _, ok := m[`vouch_machine_last_verdict_timestamp_seconds{machine="metrics1"}`]; !ok {
		t.Error("per-machine last verdict time missing")
	}
}

func TestMetricsPerMachineOffByDefault(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	a := h.newAgent(t, "quiet", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	for key := range scrape(t, h) {
		if strings.Contains(key, "quiet") {
			t.Errorf("metric %s names the machine without per-machine metrics", key)
		}
	}
}

func TestMetricsCountRejections(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := newHarness(t, Config{Now: clock, ChallengeTTL: 10 * time.Second, AutoApproveReference: true})
	a := h.newAgent(t, "rejects", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}

	// An invalid machine name is rejected at the enrollment request.
	bad := api.EnrollRequest{Name: "-bad"}
	if _, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll", bad, nil); api.ErrorCode(err) != api.CodeBadRequest {
		t.Fatalf("enrollment with an invalid name: %v", err)
	}

	// Evidence for an unknown challenge, then a replay of accepted evidence.
	ch := h.challenge(t, "rejects")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	unknown := *ev
	unknown.ChallengeID = "0000"
	if _, _, err := h.send("rejects", &unknown); api.ErrorCode(err) != api.CodeChallenge {
		t.Fatalf("evidence for an unknown challenge: %v", err)
	}
	if _, _, err := h.send("rejects", ev); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.send("rejects", ev); api.ErrorCode(err) != api.CodeChallenge {
		t.Fatalf("replayed evidence: %v", err)
	}

	// A challenge left unanswered past its time to live expires.
	h.challenge(t, "rejects")
	m := scrape(t, h)
	checkSample(t, m, `vouch_challenges_outstanding`, 1)
	checkSample(t, m, `vouch_challenges_expired_total`, 0)
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()

	m = scrape(t, h)
	checkSample(t, m, `vouch_enrollments_total{outcome="bad_request",step="request"}`, 1)
	checkSample(t, m, `vouch_attestations_total{result="challenge_invalid"}`, 1)
	checkSample(t, m, `vouch_attestations_total{result="trusted"}`, 1)
	checkSample(t, m, `vouch_attestations_total{result="nonce_reused"}`, 1)
	checkSample(t, m, `vouch_attestation_reasons_total{code="nonce_reused"}`, 1)
	checkSample(t, m, `vouch_challenges_outstanding`, 0)
	checkSample(t, m, `vouch_challenges_expired_total`, 1)
	checkSample(t, m, `vouch_machine_state_changes_total{from="trusted",to="untrusted"}`, 1)
	// A second scrape does not count the same challenge again.
	checkSample(t, scrape(t, h), `vouch_challenges_expired_total`, 1)
}

func TestMetricsQuoteRejectedCounted(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	victim := h.newAgent(t, "qvictim", "")
	if err := victim.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	other := h.newAgent(t, "qother", "")
	ev, err := other.Evidence(h.challenge(t, "qvictim"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.send("qvictim", ev); api.ErrorCode(err) != api.CodeEvidence {
		t.Fatalf("evidence signed by another AK: %v", err)
	}
	m := scrape(t, h)
	checkSample(t, m, `vouch_attestations_total{result="quote_rejected"}`, 1)
	checkSample(t, m, `vouch_attestation_duration_seconds_count`, 1)
}
