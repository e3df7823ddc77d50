package verifier

import (
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
)

// The dashboard is a read-only view of the fleet for a browser. A browser
// cannot attach the admin bearer token to page loads, so the login form
// takes the token once and sets a session cookie derived from it. The
// cookie is HttpOnly, SameSite=Strict and, over TLS, Secure with the
// __Host- prefix. It authorizes only the dashboard's GET pages, never the
// /v1 API, so a cross-site request can change nothing.

//go:embed dashboard
var dashboardFiles embed.FS

var dashboardTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"join": strings.Join,
	"deref": func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	},
}).ParseFS(dashboardFiles, "dashboard/*.html"))

// dashboardSessionTTL is how long a dashboard login lasts.
const dashboardSessionTTL = 12 * time.Hour

// dashboardHistory is the number of history entries and verdicts a
// machine's page shows.
const dashboardHistory = 50

const (
	sessionCookieTLS   = "__Host-vouch_session"
	sessionCookiePlain = "vouch_session"
	sessionVersion     = "v1"
	// maxLoginBytes bounds the login form's body.
	maxLoginBytes = 4 << 10
	// loginRate and loginBurst set each request source's token bucket of
	// login attempts: loginBurst at once, then one every 6 seconds. The
	// admin token is too long to guess, so the limit bounds the work and
	// the log lines of a client that keeps trying.
	loginRate  = 1.0 / 6
	loginBurst = 10
)

// dashboardSecurityHeaders forbid scripts and styles from anywhere but
// the dashboard's own files, framing, and caching of the pages.
var dashboardSecurityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"Cache-Control":           "no-store",
	"X-Frame-Options":         "DENY",
}

// dashboardRoutes adds the dashboard's pages to mux.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	static, err := fs.Sub(dashboardFiles, "dashboard/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	pages := []struct {
		pattern string
		handler http.HandlerFunc
	}{
		{"GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
		}},
		{"GET /dashboard", s.dashboardAuth(s.handleDashboardMachines)},
		{"GET /dashboard/machines/{name}", s.dashboardAuth(s.handleDashboardMachine)},
		{"GET /dashboard/login", s.handleDashboardLoginForm},
		{"POST /dashboard/login", s.handleDashboardLogin},
		{"POST /dashboard/logout", s.handleDashboardLogout},
		{"GET /dashboard/static/", http.StripPrefix("/dashboard/static/", http.FileServerFS(static)).ServeHTTP},
	}
	for _, p := range pages {
		mux.Handle(p.pattern, s.observe(p.pattern, withSecurityHeaders(p.handler)))
	}
}

func withSecurityHeaders(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range dashboardSecurityHeaders {
			w.Header().Set(k, v)
		}
		h(w, r)
	}
}

// sessionKey derives the key of dashboard session cookies from the admin
// token, so rotating the token ends every session.
func (ts *tokenStore) sessionKey() []byte {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	mac := hmac.New(sha256.New, ts.hash[:])
	mac.Write([]byte("vouch dashboard session " + sessionVersion))
	return mac.Sum(nil)
}

// newSession returns a cookie value that is valid until expires:
// "v1.<expiry in Unix seconds>.<base64url HMAC-SHA256 of both>".
func (s *Server) newSession(expires time.Time) string {
	payload := sessionVersion + "." + strconv.FormatInt(expires.Unix(), 10)
	mac := hmac.New(sha256.New, s.tokens.sessionKey())
	mac.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// validSession checks a cookie value made by newSession with the current
// token, and its expiry.
func (s *Server) validSession(value string) bool {
	payload, sig, ok := cutLast(value, ".")
	if !ok {
		return false
	}
	version, expiry, ok := strings.Cut(payload, ".")
	if !ok || version != sessionVersion {
		return false
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, s.tokens.sessionKey())
	mac.Write([]byte(payload))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return false
	}
	unix, err := strconv.ParseInt(expiry, 10, 64)
	return err == nil && s.now().Before(time.Unix(unix, 0))
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func sessionCookieName(r *http.Request) string {
	if r.TLS != nil {
		return sessionCookieTLS
	}
	return sessionCookiePlain
}

// dashboardAuth lets a request through with a valid session cookie or
// the admin bearer token, and sends a browser without either to the
// login form.
func (s *Server) dashboardAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokens.check(tok) {
			h(w, r)
			return
		}
		if c, err := r.Cookie(sessionCookieName(r)); err == nil && s.validSession(c.Value) {
			h(w, r)
			return
		}
		http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
	}
}

func (s *Server) handleDashboardLoginForm(w http.ResponseWriter, r *http.Request) {
	s.renderDashboard(w, r, http.StatusOK, "login.html", loginPage{})
}

type loginPage struct {
	Error string
}

func (s *Server) handleDashboardLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBytes)
	if err := r.ParseForm(); err != nil {
		s.renderDashboard(w, r, http.StatusBadRequest, "login.html", loginPage{Error: "The login form could not be read: send it again."})
		return
	}
	source := requestSource(r)
	if ok, wait := s.loginLimiter.allow(source, s.now()); !ok {
		s.logRejected(s.log, "dashboard login rejected: rate limit", "source", source, "remote", r.RemoteAddr)
		writeRetryAfter(w, wait)
		s.renderDashboard(w, r, http.StatusTooManyRequests, "login.html", loginPage{Error: fmt.Sprintf("Too many login attempts from %s: retry in %s.", source, retrySeconds(wait))})
		return
	}
	if !s.tokens.check(strings.TrimSpace(r.PostForm.Get("token"))) {
		s.logRejected(s.log, "rejected dashboard login with an invalid token", "remote", r.RemoteAddr)
		s.renderDashboard(w, r, http.StatusUnauthorized, "login.html", loginPage{Error: "Invalid admin token. The token is in the admin-token file of the server's data directory."})
		return
	}
	expires := s.now().Add(dashboardSessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookieName(r),
		Value:    s.newSession(expires),
		Path:     "/",
		Expires:  expires,
		MaxAge:   int(dashboardSessionTTL / time.Second),
		Secure:   r.TLS != nil,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
}

// handleDashboardLogout clears the session cookie. The cookie itself
// stays valid until it expires, because sessions are not stored: rotate
// the admin token to end every session at once.
func (s *Server) handleDashboardLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookieName(r), Value: "", Path: "/", MaxAge: -1,
		Secure: r.TLS != nil, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
}

// renderDashboard executes a page template. Templates escape every value
// for its context, so host facts, reasons and history details, which may
// quote what a machine sent, cannot inject markup.
func (s *Server) renderDashboard(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf strings.Builder
	if err := dashboardTemplates.ExecuteTemplate(&buf, page, data); err != nil {
		s.log.Error("dashboard page failed", "page", page, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error; the server log has the cause", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(buf.String()))
}

// machineRow is one machine in the dashboard's table.
type machineRow struct {
	Name        string
	State       string
	Since       string
	LastVerdict string
	BootCount   int64
	Reasons     []string
	Hostname    string
	Approved    bool
}

type machinesPage struct {
	Now      string
	Counts   []stateCount
	Machines []machineRow
}

type stateCount struct {
	State string
	Count int
}

func (s *Server) handleDashboardMachines(w http.ResponseWriter, r *http.Request) {
	machines, err := s.store.Machines(r.Context())
	if err != nil {
		s.dashboardError(w, r, err)
		return
	}
	now := s.now()
	page := machinesPage{Now: formatTime(now, now)}
	counts := map[string]int{}
	for _, m := range machines {
		counts[m.State]++
		var facts api.Facts
		json.Unmarshal(m.Facts, &facts)
		page.Machines = append(page.Machines, machineRow{
			Name: m.Name, State: m.State, Since: formatTime(m.StateSince, now),
			LastVerdict: formatTime(m.LastVerdictAt, now), BootCount: m.BootCount,
			Reasons: m.Reasons, Hostname: facts.Hostname, Approved: m.Approved,
		})
	}
	slices.SortFunc(page.Machines, func(a, b machineRow) int {
		// Machines that need attention come first.
		if d := stateRank(a.State) - stateRank(b.State); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, st := range []string{store.StateUntrusted, store.StateUnreachable, store.StatePending, store.StateTrusted} {
		page.Counts = append(page.Counts, stateCount{State: st, Count: counts[st]})
	}
	s.renderDashboard(w, r, http.StatusOK, "machines.html", page)
}

func stateRank(state string) int {
	switch state {
	case store.StateUntrusted:
		return 0
	case store.StateUnreachable:
		return 1
	case store.StatePending:
		return 2
	default:
		return 3
	}
}

type machinePage struct {
	Now      string
	Machine  machineRow
	Facts    api.Facts
	EKSHA256 string
	Interval string
	RefOK    bool
	Verdict  *verdictView
	Verdicts []verdictView
	History  []historyView
}

type verdictView struct {
	At        string
	State     string
	BootCount int64
	Reasons   []api.Reason
	Codes     []string
	IMA       *api.IMAReport
	// Unreadable is set when the stored explanation does not decode.
	Unreadable bool
}

type historyView struct {
	At     string
	Kind   string
	From   string
	To     string
	Detail string
}

func (s *Server) handleDashboardMachine(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	m, err := s.store.Machine(ctx, r.PathValue("name"))
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no machine is enrolled under this name", http.StatusNotFound)
		return
	}
	if err != nil {
		s.dashboardError(w, r, err)
		return
	}

	verdicts, err := s.store.Verdicts(ctx, m.Name, dashboardHistory)
	if err != nil {
		s.dashboardError(w, r, err)
		return
	}
	hist, err := s.store.History(ctx, m.Name, dashboardHistory)
	if err != nil {
		s.dashboardError(w, r, err)
		return
	}

	now := s.now()
	page := machinePage{
		Now:      formatTime(now, now),
		EKSHA256: m.EKHash,
		Interval: s.interval(m).String(),
		RefOK:    m.ReferenceApproved,
	}
	json.Unmarshal(m.Facts, &page.Facts)
	page.Machine = machineRow{
		Name: m.Name, State: m.State, Since: formatTime(m.StateSince, now),
		LastVerdict: formatTime(m.LastVerdictAt, now), BootCount: m.BootCount,
		Reasons: m.Reasons, Hostname: page.Facts.Hostname, Approved: m.Approved,
	}

	for i, v := range verdicts {
		view := verdictView{At: formatTime(v.At, now), State: v.State, BootCount: v.BootCount, Codes: v.Reasons}
		if i == 0 {
			// Only the last verdict is explained in full.
			if err := json.Unmarshal(v.Detail, &view.Reasons); err != nil {
				view.Unreadable = true
			}
			if len(v.IMA) > 0 {
				view.IMA = new(api.IMAReport)
				if err := json.Unmarshal(v.IMA, view.IMA); err != nil {
					view.IMA = &api.IMAReport{Missing: "the stored IMA report is unreadable"}
				}
			}
			page.Verdict = &view
		}
		page.Verdicts = append(page.Verdicts, view)
	}

	for _, e := range hist {
		page.History = append(page.History, historyView{At: formatTime(e.At, now), Kind: e.Kind, From: e.From, To: e.To, Detail: e.Detail})
	}
	s.renderDashboard(w, r, http.StatusOK, "machine.html", page)
}

func (s *Server) dashboardError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("dashboard request failed", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error; the server log has the cause", http.StatusInternalServerError)
}

// formatTime shows t in UTC with its distance from now, or "never" for
// the zero time.
func formatTime(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC") + " (" + ago(now.Sub(t)) + ")"
}

func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}
