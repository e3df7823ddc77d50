package verifier

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
)

//go:embed openapi.json
var openAPIDocument []byte

// Handler returns the HTTP handler of the API under /v1.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPIDocument)
	})
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})

	for _, rt := range s.routes() {
		var h http.Handler = rt.handler
		if rt.admin {
			h = s.admin(rt.handler)
		}
		mux.Handle(rt.pattern, s.observe(rt.pattern, h))
	}
	s.dashboardRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (see /v1/openapi.json)")
	})
	return mux
}

type route struct {
	pattern string
	admin   bool
	handler http.HandlerFunc
}

// routes lists the API's endpoints; openapi.json documents each of them.
func (s *Server) routes() []route {
	return []route{
		// Agent endpoints: enrollment proves the AK by credential
		// activation, evidence by the AK's signature over a fresh nonce.
		{"POST /v1/enroll", false, s.handleEnroll},
		{"GET /v1/result-key", false, s.handleResultKey},
		{"POST /v1/enroll/{id}/activate", false, s.handleActivate},
		{"GET /v1/agents/{name}/challenge", false, s.handleChallenge},
		{"POST /v1/agents/{name}/evidence", false, s.handleEvidence},

		// Admin endpoints need the bearer token.
		{"GET /v1/machines", true, s.handleListMachines},
		{"GET /v1/machines/{name}", true, s.handleShowMachine},
		{"GET /v1/machines/{name}/result", true, s.handleResult},
		{"DELETE /v1/machines/{name}", true, s.handleForget},
		{"POST /v1/machines/{name}/approve", true, s.handleApprove},
		{"POST /v1/machines/{name}/revoke", true, s.handleRevoke},
		{"POST /v1/machines/{name}/attest", true, s.handleAttestNow},
		{"PUT /v1/machines/{name}/interval", true, s.handleSetInterval},
		{"GET /v1/history", true, s.handleHistory},
		{"GET /v1/eks", true, s.handleListEKs},
		{"POST /v1/eks", true, s.handlePinEK},
		{"POST /v1/eks/{hash}/revoke", true, s.handleRevokeEK},
		{"POST /v1/token/rotate", true, s.handleRotateToken},
	}
}

func (s *Server) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || !s.tokens.check(tok) {
			s.logRejected(s.log, "rejected admin request without a valid token", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or invalid admin token: send Authorization: Bearer <token> (the token is in the server's data directory)")
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	setErrorCode(w, code)
	writeJSON(w, status, api.Error{Code: code, Message: message})
}

// decode reads a JSON request body of at most limit bytes, writing the
// error response itself when it fails.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	err := api.DecodeBody(r.Body, r.ContentLength, limit, v)
	if errors.Is(err, api.ErrTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "request body exceeds the limit of "+itoa(limit)+" bytes")
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return false
	}
	return true
}

// internalError logs err and responds 500 without its text, which may name
// internal paths.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, api.CodeInternal, "internal error; the server log has the cause")
}

func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, api.CodeNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, api.CodeConflict, err.Error())
	default:
		s.internalError(w, r, err)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
