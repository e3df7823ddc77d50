package verifier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/agent"
	"github.com/vouch-attest/vouch/api"
)

// hostileHostname is a host fact an agent controls: the dashboard must
// show it as text.
const hostileHostname = `<script>alert("owned")</script>`

// newAgentWithFacts enrolls-ready agent on the shared simulator that
// reports facts, talking to server through client.
func newAgentWithFacts(t *testing.T, server string, client *http.Client, name string, facts api.Facts) *agent.Agent {
	t.Helper()
	stateDir := t.TempDir()
	dev, err := agent.NewDeviceTPM(simulator(t), stateDir)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "eventlog.bin")
	if err := os.WriteFile(logPath, readTestLog(t), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Server: server, HTTP: client, Name: name, StateDir: stateDir, EventLogPath: logPath, TPM: dev, Facts: facts,
		Wait: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// noRedirect is a client that returns redirects instead of following them.
func noRedirect(base *http.Client) *http.Client {
	c := *base
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func get(t *testing.T, c *http.Client, u string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

func checkEscaped(t *testing.T, page, body string) {
	t.Helper()
	if strings.Contains(body, "<script>alert") {
		t.Errorf("%s contains the host name unescaped", page)
	}
	if !strings.Contains(body, "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;") {
		t.Errorf("%s does not show the escaped host name", page)
	}
}

func TestDashboardEscapesAndAuthenticates(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := newHarness(t, Config{Now: clock, AutoApproveReference: true})
	a := newAgentWithFacts(t, h.http.URL, nil, "hostile", api.Facts{Hostname: hostileHostname, OS: "<b>os</b>"})
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a)
	c := noRedirect(h.http.Client())

	// Without credentials, pages send the browser to the login form.
	for _, path := range []string{"/dashboard", "/dashboard/machines/hostile"} {
		resp, _ := get(t, c, h.http.URL+path, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login" {
			t.Errorf("GET %s without a session: %d to %q, want 303 to /dashboard/login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, _ := get(t, c, h.http.URL+"/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard" {
		t.Errorf("GET /: %d to %q, want 303 to /dashboard", resp.StatusCode, resp.Header.Get("Location"))
	}

	// With the admin token as a bearer token.
	resp, body := get(t, c, h.http.URL+"/dashboard", bearer(h.admin.Token))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /dashboard: status %d", resp.StatusCode)
	}
	checkEscaped(t, "machine list", body)
	if !strings.Contains(body, `data-machine="hostile" data-state="trusted"`) {
		t.Errorf("machine list lacks the trusted machine:\n%s", body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	resp, body = get(t, c, h.http.URL+"/dashboard/machines/hostile", bearer(h.admin.Token))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET machine page: status %d", resp.StatusCode)
	}
	checkEscaped(t, "machine page", body)
	if strings.Contains(body, "<b>os</b>") || !strings.Contains(body, "&lt;b&gt;os&lt;/b&gt;") {
		t.Error("machine page does not escape the OS fact")
	}
	for _, want := range []string{`id="history"`, "enrolled", `id="verdicts"`, "No reason: every check passed."} {
		if !strings.Contains(body, want) {
			t.Errorf("machine page lacks %q", want)
		}
	}
	if resp, _ := get(t, c, h.http.URL+"/dashboard/machines/nobody", bearer(h.admin.Token)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown machine page: status %d, want 404", resp.StatusCode)
	}

	// A wrong token at the login form sets no cookie.
	resp, err := c.PostForm(h.http.URL+"/dashboard/login", url.Values{"token": {"vouch_wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("login with a wrong token: status %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	// The right token sets a session cookie that opens the pages.
	resp, err = c.PostForm(h.http.URL+"/dashboard/login", url.Values{"token": {h.admin.Token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login: status %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	cookie := resp.Cookies()[0]
	if cookie.Name != sessionCookiePlain || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie over plain HTTP = %+v", cookie)
	}
	withCookie := http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}}
	if resp, _ := get(t, c, h.http.URL+"/dashboard", withCookie); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /dashboard with the session: status %d", resp.StatusCode)
	}
	// The cookie opens no API route.
	if resp, _ := get(t, c, h.http.URL+"/v1/machines", withCookie); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/machines with the session cookie: status %d, want 401", resp.StatusCode)
	}
	// A tampered expiry breaks the signature.
	payload, sig, _ := cutLast(cookie.Value, ".")
	last := payload[len(payload)-1]
	forged := payload[:len(payload)-1] + string('0'+(last-'0'+1)%10) + "." + sig
	if resp, _ := get(t, c, h.http.URL+"/dashboard", http.Header{"Cookie": {cookie.Name + "=" + forged}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /dashboard with a forged expiry: status %d, want 303", resp.StatusCode)
	}

	// The session expires.
	mu.Lock()
	now = now.Add(dashboardSessionTTL + time.Second)
	mu.Unlock()
	if resp, _ := get(t, c, h.http.URL+"/dashboard", withCookie); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /dashboard with an expired session: status %d, want 303", resp.StatusCode)
	}
	mu.Lock()
	now = now.Add(-dashboardSessionTTL)
	mu.Unlock()
	if resp, _ := get(t, c, h.http.URL+"/dashboard", withCookie); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /dashboard within the session: status %d", resp.StatusCode)
	}

	// Rotating the admin token ends the session.
	if _, err := h.srv.RotateToken(); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, c, h.http.URL+"/dashboard", withCookie); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /dashboard after token rotation: status %d, want 303", resp.StatusCode)
	}
}

func TestDashboardOverHTTPS(t *testing.T) {
	h := newHarness(t, Config{})
	cert, fingerprint, err := LoadOrCreateTLS(h.logDir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.srv.ListenAndServe(ctx, ln, &cert) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	})
	base := "https://" + ln.Addr().String()

	// The agent pins the server's CA, as vouch agent does.
	agentTLS, err := api.TLSConfig(fingerprint, "")
	if err != nil {
		t.Fatal(err)
	}
	a := newAgentWithFacts(t, base, &http.Client{Transport: &http.Transport{TLSClientConfig: agentTLS}}, "web1", api.Facts{Hostname: "web1.example"})
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.AttestOnce(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The browser trusts the server's CA and keeps cookies.
	caPEM, err := os.ReadFile(filepath.Join(h.logDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	resp, body := get(t, browser, base+"/dashboard", nil)
	if resp.Request.URL.Path != "/dashboard/login" || !strings.Contains(body, `name="token"`) {
		t.Fatalf("GET /dashboard without a session ended at %s, want the login form", resp.Request.URL)
	}
	login, err := noRedirect(browser).PostForm(base+"/dashboard/login", url.Values{"token": {h.admin.Token}})
	if err != nil {
		t.Fatal(err)
	}
	login.Body.Close()
	setCookie := login.Header.Get("Set-Cookie")
	for _, attr := range []string{sessionCookieTLS + "=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(setCookie, attr) {
			t.Errorf("Set-Cookie %q lacks %s", setCookie, attr)
		}
	}
	if strings.Contains(setCookie, h.admin.Token) {
		t.Error("the session cookie contains the admin token")
	}

	resp, body = get(t, browser, base+"/dashboard", nil)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/dashboard" {
		t.Fatalf("GET /dashboard after login: status %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if !strings.Contains(body, `data-machine="web1" data-state="pending"`) || !strings.Contains(body, "web1.example") {
		t.Errorf("dashboard does not list web1 as pending:\n%s", body)
	}
	if !strings.Contains(body, "reference_unapproved") {
		t.Error("dashboard does not show the reason code")
	}
	resp, body = get(t, browser, base+"/dashboard/machines/web1", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "reference values learned from boot 1") {
		t.Errorf("machine page: status %d, lacks the verdict explanation:\n%s", resp.StatusCode, body)
	}
	resp, _ = get(t, browser, base+"/dashboard/static/dashboard.css", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
