package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/agent"
	"github.com/vouch-attest/vouch/api"
)

// clientFrom returns an API client for h whose connections leave from the
// loopback address ip, so the server counts it as another source.
func (h *harness) clientFrom(t *testing.T, ip string) *api.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	transport := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	return &api.Client{BaseURL: h.http.URL, HTTP: &http.Client{Transport: transport}}
}

// randomECCEK returns the TPMT_PUBLIC of an ECC EK (the TCG default
// template) with a fresh P-256 key, as a flooding client would make them.
func randomECCEK(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.ECCEKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: key.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: key.Y.FillBytes(make([]byte, 32))},
	})
	return tpm2.Marshal(pub)
}

// countingHandler counts the log records whose message starts with prefix.
type countingHandler struct {
	slog.Handler
	prefix string
	n      *atomic.Int64
}

func (c countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, c.prefix) {
		c.n.Add(1)
	}
	return c.Handler.Handle(ctx, r)
}

// WithAttrs and WithGroup keep counting the records of loggers derived
// with Logger.With.
func (c countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return countingHandler{Handler: c.Handler.WithAttrs(attrs), prefix: c.prefix, n: c.n}
}

func (c countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{Handler: c.Handler.WithGroup(name), prefix: c.prefix, n: c.n}
}

func TestEnrollmentFloodDoesNotBlockAgent(t *testing.T) {
	var rejections atomic.Int64
	logger := slog.New(countingHandler{Handler: slog.NewTextHandler(testWriter{t}, nil), prefix: "enrollment rejected", n: &rejections})
	h := newHarness(t, Config{Logger: logger})
	flood := h.clientFrom(t, "127.0.0.2")
	ak := newSoftwareAK(t)

	// Enough requests to fill the table of pending enrollments when nothing
	// limits one source, as a few public EK certificates allow in
	// vendor-roots mode.
	const requests = maxPendingEnrollments + 50
	eks := make([][]byte, 64)
	for i := range eks {
		eks[i] = randomECCEK(t)
	}
	statuses := map[int]int{}
	for i := range requests {
		req := api.EnrollRequest{Name: fmt.Sprintf("flood%d", i), EKPublicArea: eks[i%len(eks)], AKPublic: ak.public}
		status, err := flood.Do(context.Background(), http.MethodPost, "/v1/enroll", req, nil)
		statuses[status]++
		if status == http.StatusTooManyRequests && api.ErrorCode(err) != api.CodeRateLimited {
			t.Errorf("request %d: 429 with %v, want %s", i, err, api.CodeRateLimited)
		}
	}
	if statuses[http.StatusOK] > maxPendingPerSource {
		t.Errorf("flood got %d enrollment challenges, want at most %d", statuses[http.StatusOK], maxPendingPerSource)
	}
	if statuses[http.StatusTooManyRequests] < requests-maxPendingPerSource {
		t.Errorf("flood statuses %v, want at least %d of 429", statuses, requests-maxPendingPerSource)
	}
	resp, err := flood.HTTP.Post(h.http.URL+"/v1/enroll", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("rate-limited response: %d with Retry-After %q, want 429 with a Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	h.srv.mu.Lock()
	pending := len(h.srv.enrollments)
	h.srv.mu.Unlock()
	if pending > maxPendingPerSource {
		t.Errorf("%d pending enrollments after the flood, want at most %d", pending, maxPendingPerSource)
	}
	if n := rejections.Load(); n > maxRejectLogsPerMinute {
		t.Errorf("%d log lines for rejected enrollments, want at most %d per minute", n, maxRejectLogsPerMinute)
	}

	// A real agent on another address enrolls at once.
	a := h.newAgent(t, "legit", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatalf("agent enrollment after the flood: %v", err)
	}
}

func TestEnrollmentCapPerSource(t *testing.T) {
	// The clock moves 1 s between requests, so the rate limit never
	// applies and the cap on pending enrollments per source does.
	clock := newTestClock()
	h := newHarness(t, Config{Now: clock.Now})
	flood := h.clientFrom(t, "127.0.0.2")
	ak := newSoftwareAK(t)
	for i := range maxPendingPerSource + 3 {
		clock.Advance(time.Second)
		req := api.EnrollRequest{Name: fmt.Sprintf("cap%d", i), EKPublicArea: randomECCEK(t), AKPublic: ak.public}
		status, err := flood.Do(context.Background(), http.MethodPost, "/v1/enroll", req, nil)
		switch {
		case i < maxPendingPerSource && err != nil:
			t.Fatalf("request %d: %d %v", i, status, err)
		case i >= maxPendingPerSource && (status != http.StatusTooManyRequests || !strings.Contains(err.Error(), "in progress")):
			t.Errorf("request %d over the cap: %d %v, want 429 naming the enrollments in progress", i, status, err)
		}
	}
	// The cap is per source: another address still enrolls.
	other := h.clientFrom(t, "127.0.0.3")
	req := api.EnrollRequest{Name: "elsewhere", EKPublicArea: randomECCEK(t), AKPublic: ak.public}
	if status, err := other.Do(context.Background(), http.MethodPost, "/v1/enroll", req, nil); err != nil {
		t.Errorf("enrollment from another source: %d %v", status, err)
	}
	// Once the pending enrollments expire, the source may enroll again.
	clock.Advance(enrollmentTTL)
	req = api.EnrollRequest{Name: "later", EKPublicArea: randomECCEK(t), AKPublic: ak.public}
	if status, err := flood.Do(context.Background(), http.MethodPost, "/v1/enroll", req, nil); err != nil {
		t.Errorf("enrollment after the pending ones expired: %d %v", status, err)
	}
}

func TestEnrollmentReplacement(t *testing.T) {
	h := newHarness(t, Config{})
	dev, err := agent.NewDeviceTPM(simulator(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ekPub, _, err := dev.EK()
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(c *api.Client, req api.EnrollRequest) api.EnrollChallenge {
		t.Helper()
		var ch api.EnrollChallenge
		if _, err := c.Do(context.Background(), http.MethodPost, "/v1/enroll", req, &ch); err != nil {
			t.Fatalf("enroll %s: %v", req.Name, err)
		}
		return ch
	}
	real := api.EnrollRequest{Name: "target", EKPublicArea: ekPub, AKPublic: dev.AKPublic()}

	// The same source asking again for the same EK replaces its first
	// enrollment, which can no longer be activated.
	first := enroll(h.anon, real)
	second := enroll(h.anon, real)
	h.srv.mu.Lock()
	pending := h.srv.pendingBySource["127.0.0.1"]
	h.srv.mu.Unlock()
	if pending != 1 {
		t.Errorf("%d pending enrollments of 127.0.0.1 after a repeated request, want 1", pending)
	}
	secret, err := dev.ActivateCredential(first.Credential, first.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll/"+first.EnrollmentID+"/activate", api.ActivateRequest{Secret: secret}, nil); api.ErrorCode(err) != api.CodeActivation {
		t.Errorf("activation of a replaced enrollment: %v, want %s", err, api.CodeActivation)
	}

	// Another source sends enrollments for the same name with its own EK,
	// and for the same EK (public, so anyone may copy it) under its own
	// AK. Neither cancels the real agent's enrollment.
	stranger := h.clientFrom(t, "127.0.0.2")
	enroll(stranger, api.EnrollRequest{Name: "target", EKPublicArea: randomECCEK(t), AKPublic: newSoftwareAK(t).public})
	enroll(stranger, api.EnrollRequest{Name: "copycat", EKPublicArea: ekPub, AKPublic: newSoftwareAK(t).public})
	secret, err = dev.ActivateCredential(second.Credential, second.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	var res api.EnrollResult
	if _, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/enroll/"+second.EnrollmentID+"/activate", api.ActivateRequest{Secret: secret}, &res); err != nil {
		t.Fatalf("activation after a stranger's requests for the same name and EK: %v", err)
	}
	if res.Machine.Name != "target" {
		t.Errorf("enrolled %q, want target", res.Machine.Name)
	}
}

func TestRequestSource(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:51000":                 "192.0.2.7",
		"[::ffff:192.0.2.7]:51000":        "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":      "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1%eth0]:443": "2001:db8:1:2::/64",
		"not-an-address":                  "not-an-address",
	} {
		r := &http.Request{RemoteAddr: remote}
		if got := requestSource(r); got != want {
			t.Errorf("requestSource(%q) = %q, want %q", remote, got, want)
		}
	}
}

func TestSourceLimiterRefillsAndBoundsSources(t *testing.T) {
	now := time.Now()
	l := newSourceLimiter(2, 3, 2)
	for i := range 3 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("request %d of the burst of 3 rejected", i)
		}
	}
	ok, wait := l.allow("a", now)
	if ok || wait != 500*time.Millisecond {
		t.Errorf("request over the burst: allowed %v, wait %s; want rejected with 500ms to the next token", ok, wait)
	}
	if ok, _ := l.allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Error("request after one token refilled rejected")
	}

	// The table holds two sources. "b" is idle long enough to be full,
	// so a third source replaces it. With "a" and "c" both busy, a fourth
	// is let through untracked.
	l.allow("b", now)
	later := now.Add(10 * time.Second)
	l.allow("a", later)
	if ok, _ := l.allow("c", later); !ok {
		t.Error("new source rejected when an idle bucket could be dropped")
	}
	if _, tracked := l.buckets["b"]; tracked {
		t.Error("idle source b still tracked")
	}
	l.allow("c", later)
	l.allow("c", later)
	if ok, _ := l.allow("d", later); !ok {
		t.Error("new source rejected when the table is full of busy sources")
	}
	if len(l.buckets) > 2 {
		t.Errorf("%d sources tracked, want at most 2", len(l.buckets))
	}
}
