package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/policy"
)

// Reason codes of the bundle policy, besides policy.ReasonEventUnmatched
// and policy.ReasonRuleFailed.
const (
	// ReasonFirmwareChanged: the firmware values differ from the approved
	// revision; the new revision waits for approval.
	ReasonFirmwareChanged = "firmware_changed"
	// ReasonEvidenceUnusable: the policy evidence could not be built.
	ReasonEvidenceUnusable = "evidence_unusable"
)

// BundlePolicy judges boots with a policy.Engine, which holds the signed
// bundles for what the operating system measures and the rules. Each
// machine adds its firmware values (PCRs 0-3 and 5-7, as
// policy.LearnBaseline selects them), learned from its first verified boot
// and approved by an administrator.
//
// A machine's stored reference values hold the approved firmware revision
// and, while one waits for approval, the next revision with its
// difference from the approved one. A boot whose firmware values differ
// from the approved revision is judged against the approved revision (so
// it is untrusted) and records the new revision for approval.
type BundlePolicy struct {
	Engine *policy.Engine
}

// bundleReference is the per-machine record BundlePolicy stores.
type bundleReference struct {
	// Approved is the approved policy.Baseline, absent until the first
	// approval.
	Approved json.RawMessage `json:"approved,omitempty"`
	// Pending is the next policy.Baseline revision, awaiting approval.
	Pending json.RawMessage `json:"pending,omitempty"`
	// Diff lists the changes from Approved to Pending (policy.Diff).
	Diff []string `json:"diff,omitempty"`
}

func parseBundleReference(data []byte) (*bundleReference, error) {
	var r bundleReference
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read stored firmware values: %w", err)
	}
	if r.Approved == nil && r.Pending == nil {
		return nil, errors.New("read stored firmware values: neither an approved nor a pending revision: forget and re-enroll the machine")
	}
	return &r, nil
}

// Learn implements Policy: the boot's firmware values become revision 1,
// pending approval.
func (p *BundlePolicy) Learn(boot *Boot) ([]byte, error) {
	ev, err := boot.Evidence()
	if err != nil {
		return nil, fmt.Errorf("learn firmware values: %w", err)
	}
	pending, err := p.Engine.Learn(boot.Machine, ev, nil, boot.At, "")
	if err != nil {
		return nil, err
	}
	return json.Marshal(bundleReference{Pending: pending})
}

// ApproveReference implements ReferenceApprover: the pending revision
// becomes the approved one.
func (p *BundlePolicy) ApproveReference(reference []byte, by string, at time.Time) ([]byte, string, error) {
	r, err := parseBundleReference(reference)
	if err != nil {
		return nil, "", err
	}
	if r.Pending == nil {
		return reference, "", nil
	}
	approved, err := policy.Approve(r.Pending, by, at, "")
	if err != nil {
		return nil, "", err
	}
	b, err := policy.ParseBaseline(approved)
	if err != nil {
		return nil, "", err
	}
	note := fmt.Sprintf("firmware values revision %d approved", b.Revision)
	if len(r.Diff) > 0 {
		note += " (" + strings.Join(r.Diff, "; ") + ")"
	}
	out, err := json.Marshal(bundleReference{Approved: approved})
	return out, note, err
}

// RequiredPCRs implements PCRSelector: the PCRs of the bundles, the rules
// and the machine's firmware revision (the approved one, or the pending
// one before the first approval).
func (p *BundlePolicy) RequiredPCRs(reference []byte) ([]int, error) {
	if len(reference) == 0 {
		return p.Engine.RequiredPCRs(nil)
	}
	r, err := parseBundleReference(reference)
	if err != nil {
		pcrs, _ := p.Engine.RequiredPCRs(nil)
		return pcrs, err
	}
	baseline := r.Approved
	if baseline == nil {
		baseline = r.Pending
	}
	return p.Engine.RequiredPCRs(baseline)
}

// Evaluate implements Policy.
func (p *BundlePolicy) Evaluate(reference []byte, boot *Boot) (*Outcome, error) {
	r, err := parseBundleReference(reference)
	if err != nil {
		return nil, err
	}
	ev, err := boot.Evidence()
	if err != nil {
		return &Outcome{Reasons: []api.Reason{{Code: ReasonEvidenceUnusable, Message: "the verified boot cannot be judged: " + err.Error()}}}, nil
	}
	out := &Outcome{}
	var baseline *policy.Baseline
	if r.Approved == nil {
		// Not approved yet: judge the rest of the boot against the pending
		// values as if approved, so the administrator sees every other
		// problem. The verifier keeps the machine pending until approval.
		if baseline, err = policy.ParseBaseline(r.Pending); err != nil {
			return nil, fmt.Errorf("stored firmware values: %w", err)
		}
		if err := baseline.Approve("pending", boot.At, "not approved yet"); err != nil {
			return nil, err
		}
	} else {
		if baseline, err = policy.ParseBaseline(r.Approved); err != nil {
			return nil, fmt.Errorf("stored firmware values: %w", err)
		}
		if err := checkFirmware(r, baseline, ev, boot, out); err != nil {
			return nil, err
		}
	}
	v, err := p.Engine.EvaluateBaseline(baseline, ev)
	if err != nil {
		return nil, err
	}
	for _, pr := range v.Reasons() {
		ar := apiReason(pr)
		if pr.Action == policy.Warn {
			out.Warnings = append(out.Warnings, ar)
		} else {
			out.Reasons = append(out.Reasons, ar)
		}
	}
	return out, nil
}

// checkFirmware compares the boot's firmware values with the approved
// revision. A difference is a reason, and a new pending revision when it
// is not already the one waiting.
func checkFirmware(r *bundleReference, approved *policy.Baseline, ev *policy.Evidence, boot *Boot, out *Outcome) error {
	nb, err := policy.LearnBaseline(boot.Machine, ev, approved, boot.At)
	if err != nil {
		// No firmware event of the approved revision was quoted.
		out.Reasons = append(out.Reasons, api.Reason{Code: ReasonFirmwareChanged,
			Message: fmt.Sprintf("firmware values of approved revision %d are missing from this boot: %v", approved.Revision, err)})
		return nil
	}
	diff := policy.Diff(approved, nb)
	if len(diff) == 0 {
		if r.Pending != nil {
			// The firmware is back to the approved values.
			out.Revised, err = json.Marshal(bundleReference{Approved: r.Approved})
			out.RevisedApproved = true
			out.RevisionNote = fmt.Sprintf("firmware values match approved revision %d again; the pending revision was dropped", approved.Revision)
		}
		return err
	}
	if r.Pending == nil || !slices.Equal(r.Diff, diff) {
		var next []byte
		if next, err = json.Marshal(nb); err != nil {
			return err
		}
		out.Revised, err = json.Marshal(bundleReference{Approved: r.Approved, Pending: next, Diff: diff})
		out.RevisionNote = fmt.Sprintf("firmware values changed, revision %d awaits approval: %s", nb.Revision, strings.Join(diff, "; "))
	}
	out.Reasons = append(out.Reasons, api.Reason{
		Code: ReasonFirmwareChanged,
		Message: fmt.Sprintf("firmware values differ from approved revision %d (%s): approve revision %d with vouch hosts approve %s if the change is expected",
			approved.Revision, strings.Join(diff, "; "), nb.Revision, boot.Machine),
	})
	return err
}

// apiReason converts a policy finding. Rule failures get the code
// rule_failed and name the rule in Rule and in the message.
func apiReason(pr policy.Reason) api.Reason {
	r := api.Reason{
		Code: pr.Code, Message: pr.Message, PCR: pr.PCR, Event: pr.Event, Type: pr.Type,
		Bank: string(pr.Bank), Digest: pr.Digest, Expected: pr.Expected,
	}
	if pr.Rule != "" {
		r.Rule = pr.Rule
		r.Message = "rule " + pr.Rule + ": " + pr.Message
	}
	if pr.Action == policy.Warn {
		r.Action = string(policy.Warn)
	}
	return r
}

// PolicyEvidence implements EvidenceBackend with policy.FromQuote, over
// the quote's verified PCRs less PCR 10 (IMA's, whose events are not in
// the boot log).
func (b *AttestBackend) PolicyEvidence(raw []byte, q *QuoteResult) (*policy.Evidence, error) {
	vq, ok := q.Opaque.(*attest.VerifiedQuote)
	if !ok {
		return nil, errors.New("quote was not verified by this back end")
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("the event log does not parse: %w", err)
	}
	boot := *vq
	boot.Verified = attest.PCRValues{}
	for alg, bank := range vq.Verified {
		for i, v := range bank {
			if i != imaPCR {
				attest.SetPCR(boot.Verified, alg, i, v)
			}
		}
	}
	ev, _, err := policy.FromQuote(log, &boot, eventlog.VerifyOptions{Workarounds: b.Workarounds})
	return ev, err
}

var _ EvidenceBackend = (*AttestBackend)(nil)
