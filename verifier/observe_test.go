package verifier

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// recordingNotifier keeps every change it is given.
type recordingNotifier struct {
	mu      sync.Mutex
	changes []api.StateChange
}

func (n *recordingNotifier) Notify(c api.StateChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.changes = append(n.changes, c)
}

func (n *recordingNotifier) all() []api.StateChange {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]api.StateChange(nil), n.changes...)
}

func TestStateChangesNotified(t *testing.T) {
	n := &recordingNotifier{}
	h := newHarness(t, Config{Notifier: n})
	a := h.newAgent(t, "notified", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a) // pending, reference_unapproved: no change
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/notified/approve", nil, nil); err != nil {
		t.Fatal(err)
	}
	h.attest(t, a) // trusted
	h.attest(t, a) // trusted again: no change
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/notified/revoke", api.RevokeRequest{Reason: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.Do(context.Background(), http.MethodDelete, "/v1/machines/notified", nil, nil); err != nil {
		t.Fatal(err)
	}

	want := []struct{ kind, from, to, reason string }{
		{"enrolled", "", "pending", ReasonAwaitingAttestation},
		{"state", "pending", "trusted", ""},
		{"revoked", "trusted", "untrusted", ReasonRevoked},
		{"forgotten", "untrusted", "", ReasonRevoked},
	}
	got := n.all()
	if len(got) != len(want) {
		t.Fatalf("%d changes notified, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		c := got[i]
		if c.Kind != w.kind || c.OldState != w.from || c.NewState != w.to || c.Machine != "notified" || c.Type != api.StateChangeType {
			t.Errorf("change %d = %+v, want %s %q -> %q", i, c, w.kind, w.from, w.to)
		}
		if w.reason != "" && (len(c.ReasonCodes) == 0 || c.ReasonCodes[0] != w.reason) {
			t.Errorf("change %d reasons %v, want %s first", i, c.ReasonCodes, w.reason)
		}
		if c.ReasonCodes == nil {
			t.Errorf("change %d has null reason codes, want a list", i)
		}
		if c.Time.IsZero() {
			t.Errorf("change %d has no time", i)
		}
	}
	if got[1].BootCount != 1 {
		t.Errorf("boot count of the trusted change = %d, want 1", got[1].BootCount)
	}
}

func TestUnreachableNotified(t *testing.T) {
	start := time.Now()
	now := start
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	n := &recordingNotifier{}
	h := newHarness(t, Config{Notifier: n, Now: clock, Interval: time.Minute})
	a := h.newAgent(t, "silent", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	if err := h.srv.markUnreachable(start); err != nil {
		t.Fatal(err)
	}
	got := n.all()
	if len(got) != 2 {
		t.Fatalf("%d changes notified, want enrolled and unreachable: %+v", len(got), got)
	}
	if c := got[1]; c.OldState != "pending" || c.NewState != "unreachable" || c.Kind != "state" || c.ReasonCodes[0] != ReasonUnreachable {
		t.Errorf("second change = %+v, want pending -> unreachable", c)
	}
}

func TestStateChangeSchemaMatchesType(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Required   []string                   `json:"required"`
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
		Webhooks map[string]json.RawMessage `json:"webhooks"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Webhooks["machineStateChanged"]; !ok {
		t.Error("openapi.json documents no machineStateChanged webhook")
	}
	schema, ok := doc.Components.Schemas["StateChange"]
	if !ok {
		t.Fatal("openapi.json has no StateChange schema")
	}

	encoded, err := json.Marshal(api.StateChange{Detail: "set so that omitempty keeps it"})
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(encoded, &fields); err != nil {
		t.Fatal(err)
	}

	for name := range fields {
		if _, ok := schema.Properties[name]; !ok {
			t.Errorf("field %s of api.StateChange is not in the schema", name)
		}
	}
	for name := range schema.Properties {
		if _, ok := fields[name]; !ok {
			t.Errorf("schema property %s is not a field of api.StateChange", name)
		}
	}
	for _, name := range schema.Required {
		if _, ok := fields[name]; !ok {
			t.Errorf("required property %s is not a field of api.StateChange", name)
		}
	}
}
