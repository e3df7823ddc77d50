package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/vouch-attest/vouch/bundle"
)

// Policy is the set of reference values and rules a machine is judged
// against: signed bundles, the machine's approved firmware values and
// local rules.
type Policy struct {
	// Bundles are verified reference-value bundles. Their values
	// combine: an event matches when any bundle has its digest.
	Bundles []*bundle.Verified
	// Baseline holds the machine's firmware values. It is used only when
	// an administrator approved it.
	Baseline *Baseline
	Rules    Rules
}

// Verdict is the outcome of [Policy.Check].
type Verdict struct {
	// Trusted is true when no enforced rule failed and, unless reference
	// values are only warned about, every event matched a reference value.
	Trusted bool `json:"trusted"`
	// Banks are the verified banks events were compared in.
	Banks []bundle.Bank `json:"banks"`
	// RequiredPCRs are the PCRs the verified quote had to cover (see
	// [Policy.RequiredPCRs]).
	RequiredPCRs []int `json:"required_pcrs"`
	// UnquotedPCRs lists the required PCRs the verified quote did not
	// cover: their events were not judged, so the verdict is untrusted.
	UnquotedPCRs []int `json:"unquoted_pcrs,omitempty"`
	// SHA1Only is true when some events have no verified digest but
	// SHA-1, because SHA-1 is the only verified bank or the only bank whose
	// quote covered their PCR (SHA1OnlyPCRs). Those events matched on
	// SHA-1 digests alone, so the verdict is untrusted unless
	// Rules.InsecureAllowSHA1 is set.
	SHA1Only     bool  `json:"sha1_only,omitempty"`
	SHA1OnlyPCRs []int `json:"sha1_only_pcrs,omitempty"`
	// SHA1Accepted is true when SHA1Only evidence was accepted because of
	// Rules.InsecureAllowSHA1.
	SHA1Accepted bool `json:"sha1_accepted,omitempty"`
	// Matched counts the events that matched a reference value.
	Matched int `json:"matched"`
	// Unmatched lists every event that matched no reference value.
	Unmatched []Unmatched `json:"unmatched,omitempty"`
	// UnmatchedAction is the action applied to unmatched events.
	UnmatchedAction Action       `json:"unmatched_action"`
	Rules           []RuleResult `json:"rules,omitempty"`
	// BootAuthorities pairs each boot application with the certificate
	// that authorized it, when Secure Boot logged one.
	BootAuthorities []BootAuthority `json:"boot_authorities,omitempty"`
	// Notes are remarks that change nothing, such as an unapproved
	// firmware baseline.
	Notes []string `json:"notes,omitempty"`
}

// Unmatched is an event that matched no reference value.
type Unmatched struct {
	Event int    `json:"event"`
	PCR   int    `json:"pcr"`
	Type  string `json:"type"`
	// Kind and Component are what the event was taken to be.
	Kind      bundle.Kind `json:"kind"`
	Component string      `json:"component"`
	// Bank and Digest are the event's digest in its strongest verified
	// bank.
	Bank   bundle.Bank   `json:"bank"`
	Digest bundle.Digest `json:"digest"`
	// Text is the event's measured text for GRUB commands and command
	// lines, when the data matched its digest.
	Text string `json:"text,omitempty"`
	// Allowed lists what would have been accepted in its place.
	Allowed []Alternative `json:"allowed,omitempty"`
	// MoreAllowed counts alternatives left out of Allowed.
	MoreAllowed int `json:"more_allowed,omitempty"`
}

// digestLabel names what an event kind's digest is a hash of.
func digestLabel(k bundle.Kind) string {
	switch k {
	case bundle.KindBootApplication, bundle.KindDriver:
		return "Authenticode"
	case bundle.KindGRUBFile:
		return "file"
	}
	return string(k)
}

// String explains the event on one line, as in
// "PCR 4, event 37, grubx64.efi Authenticode sha256 3f…: bundle debian-12.8 allows 9a… or c4…".
func (u *Unmatched) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "PCR %d, event %d, %s %s %s %s", u.PCR, u.Event, u.Component, digestLabel(u.Kind), u.Bank, shortHex(u.Digest))
	if u.Text != "" && u.Text != u.Component {
		fmt.Fprintf(&b, " (%q)", u.Text)
	}
	b.WriteString(": ")
	if len(u.Allowed) == 0 {
		fmt.Fprintf(&b, "no reference value for %s in PCR %d", u.Kind, u.PCR)
		return b.String()
	}
	// Group alternatives by source, keeping their order.
	var sources []string
	bySource := make(map[string][]string)
	for _, a := range u.Allowed {
		if _, ok := bySource[a.Source]; !ok {
			sources = append(sources, a.Source)
		}
		d := shortHex(a.Digest)
		if !strings.EqualFold(a.Component, u.Component) {
			d = a.Component + " " + d
		}
		bySource[a.Source] = append(bySource[a.Source], d)
	}
	for i, s := range sources {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s allows %s", s, strings.Join(bySource[s], " or "))
	}
	if u.MoreAllowed > 0 {
		fmt.Fprintf(&b, " (and %d more)", u.MoreAllowed)
	}
	return b.String()
}

// unquotedDetail explains the required PCRs the quote did not cover.
func (v *Verdict) unquotedDetail() string {
	return fmt.Sprintf("PCR %s required by the policy but not covered by the verified quote, so their events were not judged: quote PCRs %s",
		joinInts(v.UnquotedPCRs), joinInts(v.RequiredPCRs))
}

const noEventsDetail = "no measured event of a quoted PCR was judged: the quote proves nothing about the boot"

const sha1OnlyDetail = "sha1 is the only verified bank of the events of PCR %s, and SHA-1 collisions can be computed, so a matching digest proves little: " +
	"quote a sha256 bank covering these PCRs, or accept SHA-1 explicitly (rule insecure_allow_sha1, --insecure-allow-sha1)"

func (v *Verdict) sha1OnlyDetail() string {
	return fmt.Sprintf(sha1OnlyDetail, joinInts(v.SHA1OnlyPCRs))
}

func joinInts(list []int) string {
	s := make([]string, len(list))
	for i, n := range list {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

// Failures returns one line per reason the verdict is not trusted, and
// per warning, prefixed with the action.
func (v *Verdict) Failures() []string {
	var out []string
	if len(v.UnquotedPCRs) > 0 {
		out = append(out, string(Enforce)+": "+v.unquotedDetail())
	}
	if v.Matched == 0 && len(v.Unmatched) == 0 {
		out = append(out, string(Enforce)+": "+noEventsDetail)
	}
	if v.SHA1Only && !v.SHA1Accepted {
		out = append(out, string(Enforce)+": "+v.sha1OnlyDetail())
	}
	for i := range v.Unmatched {
		out = append(out, string(v.UnmatchedAction)+": "+v.Unmatched[i].String())
	}
	for _, r := range v.Rules {
		if !r.Passed {
			out = append(out, fmt.Sprintf("%s: rule %s: %s", r.Action, r.Rule, r.Detail))
		}
	}
	return out
}

// RequiredPCRs returns the PCRs a verified quote must cover for Check to
// trust a boot: PCRs 0 to 7, every PCR a bundle's or the approved
// baseline's reference values are for, and the PCRs of the quoted_pcrs
// rule. A verifier should request at least these in its quotes.
func (p *Policy) RequiredPCRs() []int {
	need := make(map[int]bool)
	for i := 0; i <= 7; i++ {
		need[i] = true
	}
	addComponents := func(comps []bundle.Component) {
		for i := range comps {
			for j := range comps[i].Values {
				need[comps[i].Values[j].PCR] = true
			}
		}
	}
	for _, b := range p.Bundles {
		if b != nil && b.Bundle() != nil {
			addComponents(b.Bundle().Components)
		}
	}
	if p.Baseline != nil && p.Baseline.Approved() {
		addComponents(p.Baseline.Components)
	}
	if p.Rules.QuotedPCRs != nil && p.Rules.QuotedPCRs.Action.orEnforce() == Enforce {
		for _, i := range p.Rules.QuotedPCRs.PCRs {
			need[i] = true
		}
	}
	out := make([]int, 0, len(need))
	for i := range need {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

// Check judges the evidence. It checks:
//
//  1. the verified quote covers every PCR of [Policy.RequiredPCRs], so
//     that a machine cannot escape judgement by quoting fewer PCRs;
//  2. at least one measured event was judged;
//  3. every event has a verified digest in a bank other than SHA-1,
//     unless Rules.InsecureAllowSHA1 accepts SHA-1 alone;
//  4. every event of a quoted PCR matches a reference value of a bundle
//     or of the approved baseline, in the verified banks (see
//     referenceSet.match for what a match is);
//  5. each configured rule passes.
//
// Events of PCRs the quote did not cover are not in the evidence and are
// not judged. Check returns an error only when its inputs are unusable; a
// machine that fails policy gets a Verdict with Trusted false.
func (p *Policy) Check(ev *Evidence) (*Verdict, error) {
	if ev == nil || ev.quoted == nil {
		return nil, errNoEvidence
	}
	if err := p.Rules.Validate(); err != nil {
		return nil, err
	}
	refs := newReferenceSet()
	v := &Verdict{Banks: ev.banks, UnmatchedAction: p.Rules.ReferenceValues.orEnforce(), RequiredPCRs: p.RequiredPCRs()}
	for _, i := range v.RequiredPCRs {
		if !ev.Quoted(i) {
			v.UnquotedPCRs = append(v.UnquotedPCRs, i)
		}
	}
	for i, b := range p.Bundles {
		if b == nil || b.Bundle() == nil {
			return nil, fmt.Errorf("policy: bundle %d was not verified: load bundles with bundle.Verify or a bundle.Loader", i)
		}
		refs.addComponents("bundle "+b.Bundle().ID(), b.Bundle().Components)
	}
	switch {
	case p.Baseline == nil:
	case p.Baseline.Approved():
		refs.addComponents(p.Baseline.sourceName(), p.Baseline.Components)
	default:
		v.Notes = append(v.Notes, fmt.Sprintf("firmware values of machine %q (revision %d) await approval and were not used", p.Baseline.Machine, p.Baseline.Revision))
	}

	for i := range ev.events {
		e := &ev.events[i]
		if refs.match(e, ev.banks) != nil {
			v.Matched++
			continue
		}
		v.Unmatched = append(v.Unmatched, unmatched(refs, e, ev.banks))
	}
	v.Rules = p.Rules.check(ev)
	v.BootAuthorities = BootAuthorities(ev)
	v.SHA1OnlyPCRs = sha1OnlyPCRs(ev)
	v.SHA1Only = len(v.SHA1OnlyPCRs) > 0
	if v.SHA1Only && p.Rules.InsecureAllowSHA1 {
		v.SHA1Accepted = true
		v.Notes = append(v.Notes, fmt.Sprintf("sha1 is the only verified bank of the events of PCR %s and was accepted by insecure_allow_sha1: SHA-1 collisions can be computed", joinInts(v.SHA1OnlyPCRs)))
	}

	v.Trusted = len(v.Unmatched) == 0 || v.UnmatchedAction == Warn
	if len(v.UnquotedPCRs) > 0 || v.Matched+len(v.Unmatched) == 0 || (v.SHA1Only && !v.SHA1Accepted) {
		v.Trusted = false
	}
	for _, r := range v.Rules {
		if !r.Passed && r.Action == Enforce {
			v.Trusted = false
		}
	}
	return v, nil
}

func unmatched(refs *referenceSet, e *Event, banks []bundle.Bank) Unmatched {
	kind := Classify(e)
	name := ComponentName(e)
	bank := displayBank(e, banks)
	u := Unmatched{
		Event: e.Number, PCR: e.PCR, Type: e.Type, Kind: kind, Component: name,
		Bank: bank, Digest: e.Digests[bank],
	}
	if e.DataTrusted && (kind == bundle.KindGRUBCommand || kind == bundle.KindKernelCmdline) {
		u.Text = e.Text
	}
	u.Allowed, u.MoreAllowed = refs.alternatives(e, kind, name, bank)
	return u
}

// Reason codes of Verdict.Reasons.
const (
	// ReasonEventUnmatched: an event matched no reference value.
	ReasonEventUnmatched = "event_unmatched"
	// ReasonRuleFailed: a rule failed; Reason.Rule names it.
	ReasonRuleFailed = "rule_failed"
	// ReasonPCRNotQuoted: PCRs the policy requires were not covered by
	// the verified quote.
	ReasonPCRNotQuoted = "pcr_not_quoted"
	// ReasonNoEvents: the quote covered no PCR with a measured event.
	ReasonNoEvents = "no_events"
	// ReasonSHA1Only: SHA-1 was the only verified bank of some events and
	// Rules.InsecureAllowSHA1 was not set.
	ReasonSHA1Only = "sha1_only"
)

// Reason is one finding of a verdict in flat form, for APIs, logs and
// stores: an unmatched event or a failed rule, with the action that
// applied to it.
type Reason struct {
	Code   string `json:"code"`
	Action Action `json:"action"`
	// Rule names the failed rule, for ReasonRuleFailed.
	Rule    string `json:"rule,omitempty"`
	Message string `json:"message"`
	PCR     *int   `json:"pcr,omitempty"`
	// Event is the event's number in the log, counted from 0.
	Event  *int        `json:"event,omitempty"`
	Type   string      `json:"event_type,omitempty"`
	Kind   bundle.Kind `json:"kind,omitempty"`
	Bank   bundle.Bank `json:"bank,omitempty"`
	Digest string      `json:"digest,omitempty"`
	// Expected lists the hex digests that would have been accepted.
	Expected []string `json:"expected,omitempty"`
}

// Reasons returns every unmatched event and failed rule of the verdict,
// warnings included, in the order of Failures.
func (v *Verdict) Reasons() []Reason {
	var out []Reason
	if len(v.UnquotedPCRs) > 0 {
		out = append(out, Reason{Code: ReasonPCRNotQuoted, Action: Enforce, Message: v.unquotedDetail()})
	}
	if v.Matched == 0 && len(v.Unmatched) == 0 {
		out = append(out, Reason{Code: ReasonNoEvents, Action: Enforce, Message: noEventsDetail})
	}
	if v.SHA1Only && !v.SHA1Accepted {
		out = append(out, Reason{Code: ReasonSHA1Only, Action: Enforce, Message: v.sha1OnlyDetail()})
	}
	for i := range v.Unmatched {
		u := &v.Unmatched[i]
		pcr, event := u.PCR, u.Event
		r := Reason{
			Code: ReasonEventUnmatched, Action: v.UnmatchedAction, Message: u.String(),
			PCR: &pcr, Event: &event, Type: u.Type, Kind: u.Kind, Bank: u.Bank, Digest: u.Digest.String(),
		}
		for _, a := range u.Allowed {
			r.Expected = append(r.Expected, a.Digest.String())
		}
		out = append(out, r)
	}
	for _, rr := range v.Rules {
		if rr.Passed {
			continue
		}
		r := Reason{Code: ReasonRuleFailed, Action: rr.Action, Rule: rr.Rule, Message: rr.Detail}
		if len(rr.Events) == 1 {
			event := rr.Events[0]
			r.Event = &event
		}
		out = append(out, r)
	}
	return out
}

// sha1OnlyPCRs returns the PCRs of the events whose only verified digest
// is SHA-1, in increasing order.
func sha1OnlyPCRs(ev *Evidence) []int {
	seen := map[int]bool{}
	var out []int
	for i := range ev.events {
		e := &ev.events[i]
		if _, ok := e.Digests["sha1"]; ok && len(e.Digests) == 1 && !seen[e.PCR] {
			seen[e.PCR] = true
			out = append(out, e.PCR)
		}
	}
	slices.Sort(out)
	return out
}
