package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClientRejectsAmbiguousResponse(t *testing.T) {
	body := map[string]string{
		"/dup":     `{"id":"first","nonce":"AAAA","id":"second"}`,
		"/case":    `{"id":"real","ID":"other"}`,
		"/variant": `{"ID":"only"}`,
		"/newer":   `{"id":"ok","added_by_a_newer_server":true}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body[r.URL.Path]))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	for path, member := range map[string]string{"/dup": `"id"`, "/case": `"ID"`, "/variant": `"ID"`} {
		var ch Challenge
		_, err := c.Do(context.Background(), http.MethodGet, path, nil, &ch)
		if err == nil || !strings.Contains(err.Error(), member) {
			t.Errorf("%s: %v (decoded id %q), want an error naming %s", path, err, ch.ID, member)
		}
	}
	var ch Challenge
	if _, err := c.Do(context.Background(), http.MethodGet, "/newer", nil, &ch); err != nil || ch.ID != "ok" {
		t.Errorf("response with a member this client does not know: %v %q", err, ch.ID)
	}
}

func TestDecodeRejectsDuplicateMembers(t *testing.T) {
	for body, member := range map[string]string{
		`{"challenge_id":"a","challenge_id":"b"}`: `duplicate member "challenge_id"`,
		`{"challenge_id":"a","Challenge_ID":"b"}`: `member "Challenge_ID" at byte 34 repeats member "challenge_id"`,
		`{"Challenge_ID":"a"}`:                    `member "Challenge_ID" must be spelled "challenge_id"`,
		`{"ima":{"offset":1,"OFFSET":2}}`:         `member "OFFSET"`,
	} {
		var ev Evidence
		err := Decode(strings.NewReader(body), MaxEvidenceBytes, &ev)
		if err == nil || !strings.Contains(err.Error(), member) {
			t.Errorf("Decode(%s) = %v, want an error containing %s", body, err, member)
		}
	}
}

func TestCheckNewMachineNameSuggestion(t *testing.T) {
	for name, want := range map[string]string{"Web1": `use "web1"`, "web1.": `use "web1"`, "web1..": `use "web1"`} {
		if err := CheckNewMachineName(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckNewMachineName(%q) = %v, want a suggestion %s", name, err, want)
		}
	}
	if err := CheckNewMachineName("web1"); err != nil {
		t.Errorf("CheckNewMachineName(web1) = %v", err)
	}
}
