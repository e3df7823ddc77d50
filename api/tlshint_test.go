package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestUnknownAuthorityNamesThePin(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	cfg, err := TLSConfig("", "")
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{BaseURL: srv.URL, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
	_, err = c.Do(context.Background(), http.MethodGet, "/v1/machines", nil, nil)
	if err == nil {
		t.Fatal("a server signed by an unknown CA was accepted")
	}
	for _, want := range []string{"unknown authority", "--server-fingerprint", "VOUCH_SERVER_FINGERPRINT", "--ca"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
