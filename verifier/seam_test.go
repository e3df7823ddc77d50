package verifier

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// scriptedPolicy returns the outcomes it is given, one per round, and
// records what the verifier passed it.
type scriptedPolicy struct {
	mu        sync.Mutex
	outcomes  []*Outcome
	evidence  []int // events in each round's policy evidence
	approvals []string
}

func (p *scriptedPolicy) Learn(boot *Boot) ([]byte, error) { return []byte(`"learned"`), nil }

func (p *scriptedPolicy) Evaluate(reference []byte, boot *Boot) (*Outcome, error) {
	ev, err := boot.Evidence()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evidence = append(p.evidence, len(ev.Events()))
	out := p.outcomes[0]
	if len(p.outcomes) > 1 {
		p.outcomes = p.outcomes[1:]
	}
	return out, nil
}

func (p *scriptedPolicy) ApproveReference(reference []byte, by string, at time.Time) ([]byte, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.approvals = append(p.approvals, string(reference)+" by "+by)
	return []byte(`"approved"`), "scripted values approved", nil
}

// TestPolicySeam drives the verifier with a scripted policy: the policy
// gets quote-verified evidence, warnings keep the machine trusted, a
// revised reference replaces the stored one and needs a new approval.
func TestPolicySeam(t *testing.T) {
	p := &scriptedPolicy{outcomes: []*Outcome{
		{},
		{Warnings: []api.Reason{{Code: "scripted_warning", Message: "only a warning", Action: "warn"}}},
		{Reasons: []api.Reason{{Code: ReasonFirmwareChanged, Message: "firmware changed"}}, Revised: []byte(`"revision 2"`), RevisionNote: "revision 2 awaits approval"},
		{},
	}}
	h := newHarness(t, Config{Policy: p})
	a := h.newAgent(t, "seam", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}

	v := h.attest(t, a)
	if v.State != api.StatePending || v.Reasons[0].Code != ReasonReferenceUnapproved {
		t.Errorf("first round = %+v, want pending with reference_unapproved", v)
	}
	if m := h.machine(t, "seam"); string(m.Reference) != `"learned"` || m.ReferenceApproved {
		t.Errorf("after learning: reference %s, approved %v", m.Reference, m.ReferenceApproved)
	}
	if _, err := h.admin.Do(context.Background(), http.MethodPost, "/v1/machines/seam/approve", nil, nil); err != nil {
		t.Fatal(err)
	}
	if m := h.machine(t, "seam"); string(m.Reference) != `"approved"` || !m.ReferenceApproved {
		t.Errorf("after approval: reference %s, approved %v", m.Reference, m.ReferenceApproved)
	}

	v = h.attest(t, a)
	if v.State != api.StateTrusted || len(v.Reasons) != 1 || v.Reasons[0].Action != "warn" {
		t.Errorf("round with a warning = %+v, want trusted with the warning", v)
	}

	v = h.attest(t, a)
	if v.State != api.StateUntrusted || v.Reasons[0].Code != ReasonFirmwareChanged {
		t.Errorf("round with a revision = %+v, want untrusted with firmware_changed", v)
	}
	if m := h.machine(t, "seam"); string(m.Reference) != `"revision 2"` || m.ReferenceApproved {
		t.Errorf("after the revision: reference %s, approved %v", m.Reference, m.ReferenceApproved)
	}
	v = h.attest(t, a)
	if v.State != api.StatePending || v.Reasons[0].Code != ReasonReferenceUnapproved {
		t.Errorf("round after the revision = %+v, want pending until approval", v)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.approvals) != 1 || p.approvals[0] != `"learned" by administrator` {
		t.Errorf("approvals = %q", p.approvals)
	}
	for i, n := range p.evidence {
		if n == 0 {
			t.Errorf("round %d: the policy evidence has no events", i+1)
		}
	}
	hist, err := h.store.History(context.Background(), "seam", 20)
	if err != nil {
		t.Fatal(err)
	}
	var details []string
	for _, e := range hist {
		details = append(details, e.Kind+": "+e.Detail)
	}
	joined := strings.Join(details, "\n")
	for _, want := range []string{"approved: machine and the reference values of boot 1 approved; scripted values approved", "state: firmware changed"} {
		if !strings.Contains(joined, want) {
			t.Errorf("history lacks %q:\n%s", want, joined)
		}
	}
}
