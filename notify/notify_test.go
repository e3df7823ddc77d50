package notify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vouch-attest/vouch/api"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// received is one request a receiver got.
type received struct {
	body     []byte
	header   http.Header
	change   api.StateChange
	validSig bool
}

// receiver is a webhook endpoint on 127.0.0.1 that records each request
// and responds with the status that respond returns.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []received
	respond func(n int, r *http.Request) int
}

func newReceiver(t *testing.T, tls bool, respond func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: read body: %v", err)
			return
		}
		rec := received{body: body, header: r.Header.Clone(), validSig: Verify(testSecret, body, r.Header.Get(HeaderSignature))}
		if err := json.Unmarshal(body, &rec.change); err != nil {
			t.Errorf("receiver: body %q: %v", body, err)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, rec)
		n := len(rc.got)
		rc.mu.Unlock()
		status := http.StatusNoContent
		if rc.respond != nil {
			status = rc.respond(n, r)
		}
		w.WriteHeader(status)
	})
	if tls {
		rc.srv = httptest.NewTLSServer(h)
	} else {
		rc.srv = httptest.NewServer(h)
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestDispatcher(t *testing.T, cfg Config) (*Dispatcher, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 5 * time.Millisecond
		cfg.MaxBackoff = 20 * time.Millisecond
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		d.Close(ctx)
	})
	return d, reg, logs
}

// metricValue returns the value of the sample of name whose labels
// include labels, or -1 when there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	found := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
			found++
		}
	}
	return found == len(labels)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func change(machine, from, to string, seq int) api.StateChange {
	return api.StateChange{
		Time: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), Machine: machine, OldState: from, NewState: to,
		Kind: "state", ReasonCodes: []string{"event_unexpected"}, Detail: fmt.Sprint(seq), BootCount: 3,
	}
}

func TestDeliverySignedOverHTTPS(t *testing.T) {
	rc := newReceiver(t, true, nil)
	pool := x509.NewCertPool()
	pool.AddCert(rc.srv.Certificate())
	d, reg, _ := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL + "/hook"}, RootCAs: pool})

	sent := change("web1", "trusted", "untrusted", 1)
	d.Notify(sent)
	waitFor(t, "the delivery", func() bool { return len(rc.requests()) == 1 })

	got := rc.requests()[0]
	if !got.validSig {
		t.Errorf("signature %q does not verify", got.header.Get(HeaderSignature))
	}
	if Verify([]byte("another secret of enough bytes"), got.body, got.header.Get(HeaderSignature)) {
		t.Error("signature verifies with another secret")
	}
	c := got.change
	if c.Type != api.StateChangeType || c.Machine != "web1" || c.OldState != "trusted" || c.NewState != "untrusted" ||
		c.BootCount != 3 || len(c.ReasonCodes) != 1 || !c.Time.Equal(sent.Time) {
		t.Errorf("received change = %+v, want the one sent", c)
	}
	if len(c.DeliveryID) != 32 || got.header.Get(HeaderDelivery) != c.DeliveryID {
		t.Errorf("delivery ID %q, header %q: want the same 32 hex digits", c.DeliveryID, got.header.Get(HeaderDelivery))
	}
	if got.header.Get(HeaderEvent) != api.StateChangeType || got.header.Get(HeaderAttempt) != "1" {
		t.Errorf("headers %v", got.header)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	waitFor(t, "the delivered count", func() bool {
		return metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"webhook": "0", "result": "delivered"}) == 1
	})
}

func TestRetriesServerErrors(t *testing.T) {
	rc := newReceiver(t, false, func(n int, r *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	d, reg, logs := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL}})
	d.Notify(change("m1", "pending", "trusted", 1))
	waitFor(t, "three attempts", func() bool { return len(rc.requests()) == 3 })

	reqs := rc.requests()
	for i, r := range reqs {
		if !bytes.Equal(r.body, reqs[0].body) {
			t.Errorf("attempt %d body differs from the first", i+1)
		}
		if got := r.header.Get(HeaderAttempt); got != fmt.Sprint(i+1) {
			t.Errorf("attempt %d has %s %q", i+1, HeaderAttempt, got)
		}
	}
	waitFor(t, "the delivered count", func() bool {
		return metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "delivered"}) == 1
	})
	if got := metricValue(t, reg, "vouch_webhook_attempts_total", map[string]string{"status": "5xx"}); got != 2 {
		t.Errorf("5xx attempts = %v, want 2", got)
	}
	if !strings.Contains(logs.String(), "webhook attempt failed, retrying") {
		t.Errorf("no retry logged:\n%s", logs)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rc.requests()); n != 3 {
		t.Errorf("%d requests after a success, want 3", n)
	}
}

func TestClientErrorNotRetried(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusBadRequest })
	d, reg, logs := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL}})
	d.Notify(change("m1", "pending", "trusted", 1))
	waitFor(t, "the failure", func() bool {
		return metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "failed"}) == 1
	})
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d attempts for a 400, want 1", n)
	}
	if !strings.Contains(logs.String(), "webhook delivery failed") {
		t.Errorf("failure not logged:\n%s", logs)
	}
}

func TestAttemptsBounded(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	d, reg, _ := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL}, MaxAttempts: 3})
	d.Notify(change("m1", "pending", "trusted", 1))
	waitFor(t, "the failure", func() bool {
		return metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "failed"}) == 1
	})
	if n := len(rc.requests()); n != 3 {
		t.Errorf("%d attempts, want MaxAttempts = 3", n)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	target := newReceiver(t, false, nil)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	d, reg, _ := newTestDispatcher(t, Config{URLs: []string{redirector.URL}})
	d.Notify(change("m1", "pending", "trusted", 1))
	waitFor(t, "the failure", func() bool {
		return metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "failed"}) == 1
	})
	if n := len(target.requests()); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
	if got := metricValue(t, reg, "vouch_webhook_attempts_total", map[string]string{"status": "3xx"}); got != 1 {
		t.Errorf("3xx attempts = %v, want 1", got)
	}
}

func TestOrderPerMachine(t *testing.T) {
	// The first attempt of every third change fails, so retries
	// interleave with the other machines' deliveries.
	var mu sync.Mutex
	failedOnce := map[string]bool{}
	rc := newReceiver(t, false, func(n int, r *http.Request) int {
		id := r.Header.Get(HeaderDelivery)
		mu.Lock()
		defer mu.Unlock()
		if n%3 == 0 && !failedOnce[id] {
			failedOnce[id] = true
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	d, reg, _ := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL}, Workers: 3})

	const machines, perMachine = 6, 15
	for seq := range perMachine {
		for m := range machines {
			d.Notify(change(fmt.Sprintf("m%d", m), "trusted", "untrusted", seq))
		}
	}
	waitFor(t, "every delivery", func() bool {
		return metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "delivered"}) == machines*perMachine
	})

	last := map[string]int{}
	for _, r := range rc.requests() {
		if r.header.Get(HeaderAttempt) != "1" && r.header.Get(HeaderAttempt) != "2" {
			t.Fatalf("unexpected attempt %s", r.header.Get(HeaderAttempt))
		}
		var seq int
		fmt.Sscan(r.change.Detail, &seq)
		prev, seen := last[r.change.Machine]
		if seen && seq < prev {
			t.Errorf("machine %s: change %d arrived after change %d", r.change.Machine, seq, prev)
		}
		last[r.change.Machine] = seq
	}

	for m := range machines {
		if got := last[fmt.Sprintf("m%d", m)]; got != perMachine-1 {
			t.Errorf("machine m%d: last change %d, want %d", m, got, perMachine-1)
		}
	}
}

func TestFullQueueDropsOldest(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, false, func(n int, r *http.Request) int {
		if n == 1 {
			<-release
		}
		return http.StatusOK
	})
	d, reg, logs := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL}, Workers: 1, QueueSize: 2})

	d.Notify(change("m1", "a", "b", 0))
	waitFor(t, "the first attempt", func() bool { return len(rc.requests()) == 1 })
	// The worker is held in the first attempt: of changes 1-4, the queue
	// of two keeps 3 and 4.
	for seq := 1; seq <= 4; seq++ {
		d.Notify(change("m1", "a", "b", seq))
	}

	if got := metricValue(t, reg, "vouch_webhook_dropped_total", map[string]string{"webhook": "0"}); got != 2 {
		t.Errorf("dropped = %v, want 2", got)
	}
	if got := metricValue(t, reg, "vouch_webhook_queue_length", map[string]string{"webhook": "0"}); got != 2 {
		t.Errorf("queue length = %v, want 2", got)
	}
	if !strings.Contains(logs.String(), "webhook queue full: dropped the oldest change") {
		t.Errorf("drop not logged:\n%s", logs)
	}

	close(release)
	waitFor(t, "the queued deliveries", func() bool { return len(rc.requests()) == 3 })
	var seqs []string
	for _, r := range rc.requests() {
		seqs = append(seqs, r.change.Detail)
	}
	if strings.Join(seqs, ",") != "0,3,4" {
		t.Errorf("delivered changes %v, want 0,3,4", seqs)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	rc := newReceiver(t, false, func(n int, r *http.Request) int {
		time.Sleep(5 * time.Millisecond)
		if n == 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	d, reg, _ := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL}, Workers: 1})
	for seq := range 10 {
		d.Notify(change("m1", "a", "b", seq))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "delivered"}); got != 10 {
		t.Errorf("delivered before Close returned = %v, want 10", got)
	}
	// A change after Close is dropped and counted.
	d.Notify(change("m1", "a", "b", 11))
	if got := metricValue(t, reg, "vouch_webhook_dropped_total", map[string]string{"webhook": "0"}); got != 1 {
		t.Errorf("dropped after Close = %v, want 1", got)
	}
}

func TestCloseReportsUndelivered(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusInternalServerError })
	d, reg, logs := newTestDispatcher(t, Config{
		URLs: []string{rc.srv.URL}, Workers: 1, MinBackoff: time.Hour, MaxBackoff: time.Hour,
	})
	for seq := range 5 {
		d.Notify(change("m1", "a", "b", seq))
	}
	waitFor(t, "the first attempt", func() bool { return len(rc.requests()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := d.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "4 queued changes") {
		t.Fatalf("Close = %v, want an error counting 4 queued changes", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Close took %s after its deadline", elapsed)
	}
	if got := metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "abandoned"}); got != 5 {
		t.Errorf("abandoned = %v, want 5 (4 queued and 1 waiting to retry)", got)
	}
	if !strings.Contains(logs.String(), "webhook delivery abandoned at shutdown") {
		t.Errorf("abandoned retry not logged:\n%s", logs)
	}
}

func TestURLAndSecretChecks(t *testing.T) {
	cases := []struct {
		url       string
		allowHTTP bool
		wantErr   string
	}{
		{"https://alerts.example.net/vouch?token=x", false, ""},
		{"http://127.0.0.1:9000/hook", false, ""},
		{"http://127.8.0.1/hook", false, ""},
		{"http://[::1]:9000/hook", false, ""},
		{"http://localhost/hook", false, ""},
		{"http://alerts.example.net/hook", false, "plain http"},
		{"http://10.0.0.1/hook", false, "plain http"},
		{"http://alerts.example.net/hook", true, ""},
		{"ftp://alerts.example.net/hook", false, "scheme must be https"},
		{"alerts.example.net/hook", false, "invalid webhook URL"},
		{"https:///hook", false, "invalid webhook URL"},
	}
	for _, c := range cases {
		d, err := New(Config{URLs: []string{c.url}, Secret: testSecret, AllowInsecureHTTP: c.allowHTTP})
		if d != nil {
			d.Close(context.Background())
		}
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.url, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", c.url, err, c.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "token=x") {
			t.Errorf("%s: error %q shows the query", c.url, err)
		}
	}
	if _, err := New(Config{URLs: []string{"https://a.example"}, Secret: []byte("short")}); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short secret: %v", err)
	}
	if _, err := New(Config{Secret: testSecret}); err == nil {
		t.Error("no URL accepted")
	}
}

func TestSignatureVectors(t *testing.T) {
	// HMAC-SHA256 test case 2 of RFC 4231: key "Jefe".
	got := Sign([]byte("Jefe"), []byte("what do ya want for nothing?"))
	want := "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	for _, bad := range []string{"", "5bdcc146", "sha256=zz", "sha1=" + want[7:], want[:len(want)-2] + "00"} {
		if Verify([]byte("Jefe"), []byte("what do ya want for nothing?"), bad) {
			t.Errorf("Verify accepted %q", bad)
		}
	}
}

func TestSlowReceiverTimesOut(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	rc := newReceiver(t, false, func(n int, r *http.Request) int {
		if n == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return http.StatusOK
	})
	d, reg, logs := newTestDispatcher(t, Config{URLs: []string{rc.srv.URL}, Timeout: 100 * time.Millisecond})

	d.Notify(change("m1", "a", "b", 1))
	waitFor(t, "the delivery after a timeout", func() bool {
		return metricValue(t, reg, "vouch_webhook_deliveries_total", map[string]string{"result": "delivered"}) == 1
	})

	if got := metricValue(t, reg, "vouch_webhook_attempts_total", map[string]string{"status": "error"}); got != 1 {
		t.Errorf("attempts without a response = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "deadline exceeded") {
		t.Errorf("timeout not logged:\n%s", logs)
	}
}
