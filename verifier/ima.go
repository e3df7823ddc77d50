package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/ima"
	"github.com/vouch-attest/vouch/store"
)

// imaPCR is the PCR the Linux IMA extends.
const imaPCR = 10

// Reason codes of IMA verification. Each verification failure of package
// ima has its own code; policy findings name the file, its digest and the
// rule.
const (
	ReasonIMAInvalid           = "ima_invalid"
	ReasonIMAMissing           = "ima_missing"
	ReasonIMAPCRMismatch       = "ima_pcr_mismatch"
	ReasonIMAHistoryChanged    = "ima_history_changed"
	ReasonIMANoProgress        = "ima_no_progress"
	ReasonIMATemplateHash      = "ima_template_hash_mismatch"
	ReasonIMAPCRNotQuoted      = "ima_pcr_not_quoted"
	ReasonIMABootAggregate     = "ima_boot_aggregate_mismatch"
	ReasonIMABootAggregateZero = "ima_boot_aggregate_zero"
	ReasonIMAViolation         = "ima_violation"
	ReasonIMAFileNotAllowed    = "ima_file_not_allowed"
	ReasonIMASignatureInvalid  = "ima_signature_invalid"
	ReasonIMAFileUncovered     = "ima_file_uncovered"
	ReasonIMAUndecodedEntry    = "ima_entry_undecoded"
)

const (
	// maxStickyIMAFailures bounds the findings kept for the rest of a boot.
	maxStickyIMAFailures      = 20
	imaPolicyOff, imaPolicyOn = "off", "on"
)

// imaReasonCodes maps package ima's verification failures to reason codes.
var imaReasonCodes = map[ima.Reason]string{
	ima.ReasonPCRMismatch:       ReasonIMAPCRMismatch,
	ima.ReasonHistoryChanged:    ReasonIMAHistoryChanged,
	ima.ReasonNoProgress:        ReasonIMANoProgress,
	ima.ReasonTemplateHash:      ReasonIMATemplateHash,
	ima.ReasonPCRNotQuoted:      ReasonIMAPCRNotQuoted,
	ima.ReasonBootAggregate:     ReasonIMABootAggregate,
	ima.ReasonBootAggregateZero: ReasonIMABootAggregateZero,
}

// SetIMAPolicy replaces the IMA file policy of IMAOptions for the rounds
// that follow, for example after IMA bundles were reloaded. Nil turns the
// file policy off. It is safe to call while the back end verifies.
func (b *AttestBackend) SetIMAPolicy(p *ima.Policy) {
	b.replacedIMAPolicy.Store(&imaPolicyBox{p})
}

// imaPolicy returns the policy SetIMAPolicy set last, or IMAOptions.Policy.
func (b *AttestBackend) imaPolicy() *ima.Policy {
	if box := b.replacedIMAPolicy.Load(); box != nil {
		return box.policy
	}
	return b.IMA.Policy
}

// imaPolicyBox lets SetIMAPolicy store a nil policy.
type imaPolicyBox struct{ policy *ima.Policy }

// IMAOptions configures the IMA checks of the attest back end.
type IMAOptions struct {
	// Policy judges the verified entries. Nil turns the file policy off:
	// entries are still replayed against PCR 10 and checked for
	// consistency across rounds, but not against allowlists or keys.
	Policy *ima.Policy
	// MaxStalledRounds is ima.VerifyOptions.MaxStalledRounds.
	MaxStalledRounds int
	// InsecureSkipBootAggregate skips the boot_aggregate check.
	InsecureSkipBootAggregate bool
}

// imaRecord is the IMA state the verifier stores per machine and boot:
// package ima's State, plus the findings that made the machine untrusted
// earlier in the boot. Those stay in force until the next boot, because
// later rounds only verify new entries. A record written before Failures
// existed is a bare ima.State and reads the same.
type imaRecord struct {
	ima.State
	Failures []api.Reason `json:"failures,omitempty"`
}

// VerifyIMA implements Backend with ima.Verify and the configured file
// policy. Verification and enforced policy failures are returned in
// IMAResult.Failures, with the record to store, so that they stay in force
// for the rest of the boot.
func (b *AttestBackend) VerifyIMA(state []byte, offset int64, entries []byte, q *QuoteResult) (*IMAResult, error) {
	vq, ok := q.Opaque.(*attest.VerifiedQuote)
	if !ok {
		return nil, errors.New("quote was not verified by this back end")
	}
	var rec imaRecord
	var prev *ima.State
	if len(state) > 0 {
		if err := json.Unmarshal(state, &rec); err != nil {
			return nil, fmt.Errorf("stored IMA state: %w", err)
		}
		if rec.ResetCount != q.ResetCount {
			rec = imaRecord{} // a reboot starts over
		} else {
			prev = &rec.State
		}
	}
	// One policy judges the whole round, even when SetIMAPolicy replaces
	// it meanwhile.
	policy := b.imaPolicy()
	policyName := imaPolicyOff
	if policy != nil {
		policyName = imaPolicyOn
	}
	report := &api.IMAReport{Offset: offset, Policy: policyName}
	if prev != nil {
		report.Entries, report.Violations = int64(prev.Entries), prev.Violations
	}
	out := &IMAResult{Report: report, Entries: report.Entries}
	// finish returns the result with this round's failures. Sticky ones
	// stay in the record for the rest of the boot; the others concern
	// only this round's evidence (entries sent from the wrong offset).
	finish := func(sticky bool, fails ...api.Reason) (*IMAResult, error) {
		for _, f := range rec.Failures {
			f.Message = "earlier in this boot: " + f.Message
			out.Failures = append(out.Failures, f)
		}
		out.Failures = append(out.Failures, fails...)
		if sticky {
			rec.Failures = append(rec.Failures, fails...)
		}
		if n := len(rec.Failures); n > maxStickyIMAFailures {
			rec.Failures = rec.Failures[n-maxStickyIMAFailures:]
		}
		if prev == nil && rec.Entries == 0 && len(rec.Failures) > 0 {
			// Nothing verified yet: remember the boot for the failures.
			rec.ResetCount = q.ResetCount
		}
		if rec.Entries == 0 && len(rec.Failures) == 0 && len(rec.Banks) == 0 {
			return out, nil // nothing to keep: the next round starts over
		}
		var err error
		out.State, err = json.Marshal(&rec)
		return out, err
	}

	var list []ima.Entry
	if len(entries) > 0 {
		var err error
		list, err = ima.ParseBinary(entries, ima.ParseOptions{FirstIndex: int(offset)})
		if err != nil {
			return finish(true, api.Reason{Code: ReasonIMAInvalid, Message: fmt.Sprintf("the IMA entries from offset %d do not parse: %v", offset, err)})
		}
	}
	res, err := ima.Verify(prev, ima.Round{ResetCount: q.ResetCount, Offset: int(offset), Entries: list, Quoted: vq.Verified},
		ima.VerifyOptions{MaxStalledRounds: b.IMA.MaxStalledRounds, InsecureSkipBootAggregate: b.IMA.InsecureSkipBootAggregate})
	var ve *ima.VerificationError
	if errors.As(err, &ve) {
		if ve.Reason == ima.ReasonNoProgress && res != nil && res.State != nil {
			rec.State = *res.State // keep counting stalled rounds
		}
		return finish(true, imaVerificationReason(ve))
	}
	if err != nil {
		// Entries from the wrong offset or a quote without PCR 10: the
		// evidence cannot be judged, which is a failure of this round.
		return finish(false, api.Reason{Code: ReasonIMAInvalid, PCR: intPtr(imaPCR), Message: "IMA entries cannot be verified: " + err.Error()})
	}
	rec.State = *res.State
	report.Entries = int64(res.State.Entries)
	report.Verified, report.Pending = len(res.Verified), res.Pending
	report.Violations, report.Restarted = res.State.Violations, res.Restarted
	out.Entries, out.Verified, out.Pending = report.Entries, report.Verified, report.Pending
	report.Schemes = map[string]string{}
	for alg, s := range res.Schemes {
		report.Schemes[alg.String()] = s.String()
	}
	if ba := res.BootAggregate; ba != nil && len(ba.PCRs) > 0 {
		report.BootAggregate = fmt.Sprintf("matches %s PCRs %d-%d", ba.Algorithm, ba.PCRs[0], ba.PCRs[len(ba.PCRs)-1])
	} else if b.IMA.InsecureSkipBootAggregate && res.Restarted {
		report.BootAggregate = "not checked (insecure skip)"
	}
	if policy == nil {
		return finish(true)
	}
	checked := res.Verified
	if len(policy.Rules) == 0 {
		// A policy of violations only: other entries are not judged.
		checked = nil
		for _, i := range res.Violations {
			checked = append(checked, res.Verified[i-res.Verified[0].Index])
		}
	}
	pr := policy.Check(checked)
	report.Checked, report.Accepted, report.Excluded = pr.Checked, pr.Accepted, pr.Excluded
	var fails []api.Reason
	for _, v := range pr.Verdicts {
		r := imaPolicyReason(policy, &v, res.Verified, int(offset))
		if v.Action == ima.Warn {
			report.Warnings = append(report.Warnings, r)
		} else {
			fails = append(fails, r)
		}
	}
	return finish(true, fails...)
}

// imaVerificationReason converts a failure of ima.Verify.
func imaVerificationReason(ve *ima.VerificationError) api.Reason {
	code, ok := imaReasonCodes[ve.Reason]
	if !ok {
		code = ReasonIMAInvalid
	}
	r := api.Reason{Code: code, PCR: intPtr(imaPCR), Message: "IMA: " + ve.Detail}
	if ve.Entry >= 0 {
		r.Event = intPtr(ve.Entry)
		r.Message = fmt.Sprintf("IMA entry %d: %s", ve.Entry, ve.Detail)
	}
	return r
}

// imaPolicyReason explains a policy verdict about one entry.
func imaPolicyReason(p *ima.Policy, v *ima.Verdict, verified []ima.Entry, offset int) api.Reason {
	r := api.Reason{Code: ReasonIMAFileNotAllowed, PCR: intPtr(imaPCR), Event: intPtr(v.Entry),
		File: v.File, Digest: v.Digest, Rule: v.Rule}
	var e *ima.Entry
	if i := v.Entry - verified[0].Index; i >= 0 && i < len(verified) {
		e = &verified[i]
		r.Type = e.TemplateName
	}
	switch {
	case v.Outcome == ima.Violation:
		r.Code = ReasonIMAViolation
		r.Message = fmt.Sprintf("IMA entry %d (%s) is a violation: the file was measured while open for writing, or opened for writing while measured (rule %s, %s)", v.Entry, quoteName(v.File), v.Rule, v.Action)
		return r
	case v.Rule == "uncovered" && v.Digest == "":
		r.Code = ReasonIMAUndecodedEntry
	case v.Rule == "uncovered":
		r.Code = ReasonIMAFileUncovered
	case e != nil && signedUnderKeys(p, e, v.Rule):
		r.Code = ReasonIMASignatureInvalid
	}
	r.Message = fmt.Sprintf("IMA entry %d: file %s with digest %s is not accepted by %s (%s): %s", v.Entry, quoteName(v.File), dash(v.Digest), ruleNames(v.Rule), v.Action, ruleReason(v.Rule, v.Reason))
	return r
}

// ruleNames names the comma-separated rules that judged an entry.
func ruleNames(rules string) string {
	if strings.Contains(rules, ",") {
		return "rules " + rules
	}
	return "rule " + rules
}

// ruleReason drops the "NAME: " prefix the IMA policy puts before the
// reason of a single rule, which the message already names.
func ruleReason(rules, reason string) string {
	if strings.Contains(rules, ",") {
		return reason
	}
	return strings.TrimPrefix(reason, rules+": ")
}

// signedUnderKeys reports whether the entry carries a signature and a rule
// it was judged by has keys: the signature is what failed.
func signedUnderKeys(p *ima.Policy, e *ima.Entry, rules string) bool {
	f, err := e.Fields()
	if err != nil || len(f.Signature) == 0 {
		return false
	}
	names := strings.Split(rules, ",")
	for i := range p.Rules {
		if p.Rules[i].Keys != nil && slices.Contains(names, p.Rules[i].Name) {
			return true
		}
	}
	return false
}

func quoteName(name string) string { return fmt.Sprintf("%q", name) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkIMA verifies the IMA entries of the evidence against PCR 10 and
// advances the machine's IMA record. A machine without an IMA list passes
// only while PCR 10 holds its reset value.
func (s *Server) checkIMA(j *judgement, ev *api.Evidence, q *QuoteResult) ([]api.Reason, error) {
	if ev.IMA == nil || ev.IMA.Missing != "" {
		j.ima = &api.IMAReport{Missing: "the agent sent no IMA list", Policy: imaPolicyOff}
		if ev.IMA != nil {
			j.ima.Missing = ev.IMA.Missing
		}
		if s.be.PCRAtReset(q, imaPCR) {
			return nil, nil
		}
		why := "the agent sent no IMA list"
		if ev.IMA != nil {
			why = "the agent has no IMA list: " + quoteAgentText(ev.IMA.Missing)
		}
		return []api.Reason{{Code: ReasonIMAMissing, PCR: intPtr(imaPCR), Message: why + ", but PCR 10 was extended"}}, nil
	}
	if len(ev.IMA.Entries) > api.MaxIMAEntriesBytes {
		return []api.Reason{{Code: ReasonIMAInvalid, Message: fmt.Sprintf("IMA chunk of %d bytes exceeds the limit of %d", len(ev.IMA.Entries), api.MaxIMAEntriesBytes)}}, nil
	}
	state := j.machine.IMAState
	if j.newBoot {
		state = nil
	}
	res, err := s.be.VerifyIMA(state, ev.IMA.Offset, ev.IMA.Entries, q)
	if f, ok := AsFailure(err); ok {
		return f.Reasons, nil
	}
	if err != nil {
		return nil, err
	}
	j.machine.IMAState = res.State
	j.machine.IMAOffset = res.Entries
	j.ima = res.Report
	if j.ima != nil {
		for _, w := range j.ima.Warnings {
			s.log.Warn("IMA policy warning", "machine", j.machine.Name, "entry", w.Event, "file", w.File, "digest", w.Digest, "rule", w.Rule)
		}
	}
	return res.Failures, nil
}

// pcrSelectionLocked returns the PCRs to quote for m: the configured ones
// and the ones the policy requires for m (see PCRSelector). It adds PCR 10
// when the machine has IMA, that is an IMA record in this boot or an IMA
// list in evidence since the server started. s.mu is held.
func (s *Server) pcrSelectionLocked(m store.Machine) []int {
	pcrs := slices.Clone(s.cfg.PCRs)
	if sel, ok := s.policy.(PCRSelector); ok {
		required, err := sel.RequiredPCRs(m.Reference)
		if err != nil {
			s.log.Warn("policy cannot list the PCRs it requires: quoting the configured PCRs only", "machine", m.Name, "err", err)
		}
		pcrs = append(pcrs, required...)
	}
	if len(m.IMAState) > 0 || s.sessionLocked(m.Name).hasIMA {
		pcrs = append(pcrs, imaPCR)
	}
	slices.Sort(pcrs)
	return slices.Compact(pcrs)
}

// noteIMA handles evidence for a challenge without PCR 10: when it carries
// an IMA list, the machine's next challenges include PCR 10, and the next
// one is due now.
func (s *Server) noteIMA(name string, ev *api.Evidence) {
	if ev.IMA == nil || ev.IMA.Missing != "" {
		return
	}
	s.mu.Lock()
	sess := s.sessionLocked(name)
	first := !sess.hasIMA
	sess.hasIMA = true
	s.mu.Unlock()
	if first {
		s.log.Info("machine has IMA: PCR 10 joins its quotes", "machine", name)
		s.kick(name)
	}
}
