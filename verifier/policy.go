package verifier

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/policy"
)

// Policy judges a verified boot against reference values. The verifier
// stores each machine's reference values as the opaque bytes Learn returns
// and passes them back to Evaluate.
type Policy interface {
	// Learn derives a machine's reference values from a verified boot.
	Learn(boot *Boot) ([]byte, error)
	// Evaluate judges the boot against reference. An outcome without
	// reasons is a match.
	Evaluate(reference []byte, boot *Boot) (*Outcome, error)
}

// PCRSelector is implemented by a Policy whose Evaluate needs PCRs quoted
// beyond the server's configured selection, such as PCR 11 for a bundle of
// unified kernel images. The server adds them to every challenge.
type PCRSelector interface {
	// RequiredPCRs returns the PCRs a quote must cover for Evaluate to
	// trust a machine with the stored reference (nil before Learn).
	RequiredPCRs(reference []byte) ([]int, error)
}

// Reason codes of the first-boot policy.
const (
	ReasonEventUnexpected = "event_unexpected"
	ReasonEventMissing    = "event_missing"
	// ReasonSHA1Only: SHA-1 was the only verified bank, and the policy
	// does not accept SHA-1 evidence. The bundle policy reports the same
	// code.
	ReasonSHA1Only = policy.ReasonSHA1Only
)

// FirstBootPolicy takes a machine's first attested boot as its reference:
// for each PCR, the ordered list of event digests in one bank (SHA-256 when
// the log has it). A later boot matches when each PCR has the same digests.
// An event whose digest the reference does not have for that PCR is
// reported with the reference event at the same position. A reference
// event absent from the boot is reported as missing.
//
// A boot whose only verified bank is SHA-1 is untrusted (ReasonSHA1Only)
// unless InsecureAllowSHA1 is set, as in the bundle policy's rules.
type FirstBootPolicy struct {
	// InsecureAllowSHA1 lets a boot whose only verified bank is SHA-1
	// match. SHA-1 collisions can be computed, so a component crafted to
	// collide with the reference boot's would match. Set it only for TPMs
	// or firmware that have no SHA-256 bank.
	InsecureAllowSHA1 bool
}

const sha1OnlyMessage = "sha1 is the only verified bank, and SHA-1 collisions can be computed, so a matching digest proves little: " +
	"activate the sha256 PCR bank of the machine's TPM (the agent quotes every active bank), " +
	"or accept SHA-1 explicitly with vouch server --policy-insecure-allow-sha1"

// onlySHA1 reports whether the events carry digests in the sha1 bank and
// in no other. The events carry digests of the verified banks only.
func onlySHA1(events []MeasuredEvent) bool {
	sha1 := false
	for _, e := range events {
		for bank := range e.Digests {
			if bank != "sha1" {
				return false
			}
			sha1 = true
		}
	}
	return sha1
}

type firstBootReference struct {
	Bank string                   `json:"bank"`
	PCRs map[int][]referenceEvent `json:"pcrs"`
}

type referenceEvent struct {
	Type   string `json:"type"`
	Digest string `json:"digest"`
}

// bankPreference orders the banks reference values are kept in: SHA-256
// first, the bank every current TPM and log has, then the other SHA-2
// banks, SHA-1 last.
var bankPreference = []string{"sha256", "sha384", "sha512", "sm3_256", "sha1"}

func referenceBank(events []MeasuredEvent) string {
	have := map[string]bool{}
	for _, e := range events {
		for b := range e.Digests {
			have[b] = true
		}
	}
	for _, b := range bankPreference {
		if have[b] {
			return b
		}
	}
	return ""
}

// Learn implements Policy.
func (FirstBootPolicy) Learn(boot *Boot) ([]byte, error) {
	events := boot.Events
	ref := firstBootReference{Bank: referenceBank(events), PCRs: map[int][]referenceEvent{}}
	if ref.Bank == "" {
		return nil, fmt.Errorf("learn reference values: the event log has no events in a known bank")
	}
	for _, e := range events {
		d, ok := e.Digests[ref.Bank]
		if !ok {
			return nil, fmt.Errorf("learn reference values: event %d (PCR %d) has no %s digest", e.Index, e.PCR, ref.Bank)
		}
		ref.PCRs[e.PCR] = append(ref.PCRs[e.PCR], referenceEvent{Type: e.Type, Digest: d})
	}
	return json.Marshal(ref)
}

// Evaluate implements Policy.
func (p FirstBootPolicy) Evaluate(reference []byte, boot *Boot) (*Outcome, error) {
	events := boot.Events
	var ref firstBootReference
	if err := json.Unmarshal(reference, &ref); err != nil {
		return nil, fmt.Errorf("read reference values: %w", err)
	}
	byPCR := map[int][]MeasuredEvent{}
	for _, e := range events {
		byPCR[e.PCR] = append(byPCR[e.PCR], e)
	}
	pcrs := map[int]bool{}
	for p := range byPCR {
		pcrs[p] = true
	}
	for p := range ref.PCRs {
		pcrs[p] = true
	}
	order := make([]int, 0, len(pcrs))
	for p := range pcrs {
		order = append(order, p)
	}
	sort.Ints(order)

	var reasons []api.Reason
	if onlySHA1(events) && !p.InsecureAllowSHA1 {
		reasons = append(reasons, api.Reason{Code: ReasonSHA1Only, Bank: "sha1", Message: sha1OnlyMessage})
	}
	for _, pcr := range order {
		reasons = append(reasons, comparePCR(pcr, ref.Bank, ref.PCRs[pcr], byPCR[pcr])...)
	}
	return &Outcome{Reasons: reasons}, nil
}

// comparePCR matches one PCR's events against its reference events as
// multisets of digests, so the report names exactly the events that
// differ. When the multisets agree but the sequence does not, it reports
// the first event out of order, because the PCR value depends on the order.
func comparePCR(pcr int, bank string, want []referenceEvent, got []MeasuredEvent) []api.Reason {
	remaining := map[string]int{}
	for _, r := range want {
		remaining[r.Digest]++
	}
	var reasons []api.Reason
	// replaced counts reference digests already reported as replaced by an
	// unexpected event, so they are not reported a second time as missing.
	replaced := map[string]int{}
	for pos, e := range got {
		d := e.Digests[bank]
		if remaining[d] > 0 {
			remaining[d]--
			continue
		}
		reason := api.Reason{
			Code:   ReasonEventUnexpected,
			PCR:    intPtr(pcr),
			Event:  intPtr(e.Index),
			Type:   e.Type,
			Bank:   bank,
			Digest: d,
		}
		if d == "" {
			reason.Message = fmt.Sprintf("PCR %d event %d (%s) has no %s digest, the bank of the reference values", pcr, e.Index, e.Type, bank)
		} else {
			reason.Message = fmt.Sprintf("PCR %d event %d (%s) has %s digest %s, which is not among this PCR's reference values", pcr, e.Index, e.Type, bank, d)
		}
		if e.Summary != "" {
			reason.Message += ": " + e.Summary
		}
		if pos < len(want) {
			replaced[want[pos].Digest]++
			reason.Expected = []string{want[pos].Digest}
			reason.Message += fmt.Sprintf("; the reference boot had %s %s at this position", want[pos].Type, want[pos].Digest)
		} else {
			reason.Message += "; the reference boot had no event at this position"
		}
		reasons = append(reasons, reason)
	}
	for _, r := range want {
		if remaining[r.Digest] > 0 {
			remaining[r.Digest]--
			if replaced[r.Digest] > 0 {
				replaced[r.Digest]--
				continue
			}
			reasons = append(reasons, api.Reason{
				Code:    ReasonEventMissing,
				PCR:     intPtr(pcr),
				Type:    r.Type,
				Bank:    bank,
				Digest:  r.Digest,
				Message: fmt.Sprintf("PCR %d: reference event %s with %s digest %s is missing from this boot", pcr, r.Type, bank, r.Digest),
			})
		}
	}
	if len(reasons) == 0 && len(got) == len(want) {
		for i := range got {
			if got[i].Digests[bank] != want[i].Digest {
				reasons = append(reasons, api.Reason{
					Code:     ReasonEventUnexpected,
					PCR:      intPtr(pcr),
					Event:    intPtr(got[i].Index),
					Type:     got[i].Type,
					Bank:     bank,
					Digest:   got[i].Digests[bank],
					Expected: []string{want[i].Digest},
					Message:  fmt.Sprintf("PCR %d event %d (%s) is out of order: the reference boot had %s at this position", pcr, got[i].Index, got[i].Type, want[i].Digest),
				})
				break
			}
		}
	}
	return reasons
}

func intPtr(i int) *int { return &i }
