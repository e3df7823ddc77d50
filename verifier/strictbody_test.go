package verifier

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
)

// sendRaw sends body to path and returns the status and the error body.
func (h *harness) sendRaw(t *testing.T, method, path, token, body string) (int, api.Error) {
	t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

func TestRequestBodyDuplicateMembers(t *testing.T) {
	h := newHarness(t, Config{AutoApproveReference: true})
	a := h.newAgent(t, "dup", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch := h.challenge(t, "dup")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	// Each body adds a member to the agent's real evidence, so only the
	// member makes it invalid.
	withMember := func(member string) string {
		return "{" + member + "," + string(valid[1:])
	}
	for name, tc := range map[string]struct {
		method, path, admin, body, member string
	}{
		"repeated challenge_id":       {"POST", "/v1/agents/dup/evidence", "", withMember(`"challenge_id":"0000"`), `"challenge_id"`},
		"challenge_id in other case":  {"POST", "/v1/agents/dup/evidence", "", withMember(`"Challenge_ID":"0000"`), `"Challenge_ID"`},
		"nested member repeated":      {"POST", "/v1/agents/dup/evidence", "", withMember(`"ima":{"offset":0,"offset":5}`), `"offset"`},
		"enroll name repeated":        {"POST", "/v1/enroll", "", `{"name":"a","name":"b"}`, `"name"`},
		"enroll member in other case": {"POST", "/v1/enroll", "", `{"NAME":"a"}`, `"NAME"`},
		"activate secret repeated":    {"POST", "/v1/enroll/0000/activate", "", `{"secret":"AAAA","secret":"AAAB"}`, `"secret"`},
		"admin seconds repeated":      {"PUT", "/v1/machines/dup/interval", h.admin.Token, `{"seconds":60,"seconds":0}`, `"seconds"`},
		"admin member in other case":  {"PUT", "/v1/machines/dup/interval", h.admin.Token, `{"Seconds":60}`, `"Seconds"`},
		"admin pin note repeated":     {"POST", "/v1/eks", h.admin.Token, `{"sha256":"00","note":"a","note":"b"}`, `"note"`},
	} {
		status, e := h.sendRaw(t, tc.method, tc.path, tc.admin, tc.body)
		if status != http.StatusBadRequest || e.Code != api.CodeBadRequest || !strings.Contains(e.Message, tc.member) {
			t.Errorf("%s: %d %+v, want 400 %s naming %s", name, status, e, api.CodeBadRequest, tc.member)
		}
	}
	// None of them changed anything: the interval is the default and the
	// agent's evidence, sent unchanged, still uses its challenge.
	if m := h.machine(t, "dup"); m.IntervalS != 0 {
		t.Errorf("interval %d s after rejected requests, want 0", m.IntervalS)
	}
	if v, _, err := h.send("dup", ev); err != nil || v.State != store.StateTrusted {
		t.Errorf("valid evidence after the rejected bodies: %+v %v", v, err)
	}
}
