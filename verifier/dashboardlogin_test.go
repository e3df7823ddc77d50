package verifier

import (
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// formClientFrom returns an HTTP client whose connections leave from the
// loopback address ip and that does not follow redirects.
func formClientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	transport := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	return noRedirect(&http.Client{Transport: transport})
}

func TestDashboardLoginFloodLimited(t *testing.T) {
	var lines atomic.Int64
	logger := slog.New(countingHandler{Handler: slog.NewTextHandler(testWriter{t}, nil), prefix: "", n: &lines})
	h := newHarness(t, Config{Logger: logger})
	before := lines.Load()

	attacker := formClientFrom(t, "127.0.0.2")
	const attempts = 300
	statuses := map[int]int{}
	for i := range attempts {
		resp, err := attacker.PostForm(h.http.URL+"/dashboard/login", url.Values{"token": {"vouch_wrong" + strings.Repeat("x", i%7)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Errorf("attempt %d: 429 without Retry-After", i)
		}
	}
	if statuses[http.StatusUnauthorized] != loginBurst {
		t.Errorf("statuses %v, want %d of 401 (the burst) and the rest 429", statuses, loginBurst)
	}
	if statuses[http.StatusTooManyRequests] != attempts-loginBurst {
		t.Errorf("statuses %v, want %d of 429", statuses, attempts-loginBurst)
	}
	if n := lines.Load() - before; n > maxRejectLogsPerMinute {
		t.Errorf("%d log lines for %d failed logins, want at most %d per minute", n, attempts, maxRejectLogsPerMinute)
	}

	// An administrator at another address still logs in.
	resp, err := formClientFrom(t, "127.0.0.3").PostForm(h.http.URL+"/dashboard/login", url.Values{"token": {h.admin.Token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
		t.Errorf("login from another address during the flood: status %d, cookies %v; want 303 with a session cookie", resp.StatusCode, resp.Cookies())
	}
}
