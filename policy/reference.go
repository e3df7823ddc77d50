package policy

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/vouch-attest/vouch/bundle"
)

// reference is one acceptable measurement and where it came from.
type reference struct {
	// source names the origin in verdicts: "bundle debian-12.8" or
	// "machine firmware values (revision 2)".
	source    string
	component string
	kind      bundle.Kind
	value     *bundle.Value
}

type digestKey struct {
	pcr    int
	bank   bundle.Bank
	digest string
}

// referenceSet indexes reference values by PCR and digest, so that
// matching an event costs one map lookup per bank.
type referenceSet struct {
	byDigest map[digestKey][]*reference
	byPCR    map[int][]*reference
}

func newReferenceSet() *referenceSet {
	return &referenceSet{byDigest: make(map[digestKey][]*reference), byPCR: make(map[int][]*reference)}
}

func (s *referenceSet) addComponents(source string, comps []bundle.Component) {
	for i := range comps {
		c := &comps[i]
		for j := range c.Values {
			r := &reference{source: source, component: c.Name, kind: c.Kind, value: &c.Values[j]}
			s.byPCR[r.value.PCR] = append(s.byPCR[r.value.PCR], r)
			for bank, d := range r.value.Digests {
				k := digestKey{pcr: r.value.PCR, bank: bank, digest: string(d)}
				s.byDigest[k] = append(s.byDigest[k], r)
			}
		}
	}
}

// match returns the first reference the event matches, or nil. A
// reference matches when it is for the event's PCR, agrees with the event
// on every verified bank both carry, and shares at least one such bank. A
// match on SHA-1 alone counts only when SHA-1 is the event's only verified
// bank, because SHA-1 collisions can be computed. Check then distrusts the
// whole boot unless Rules.InsecureAllowSHA1 is set.
func (s *referenceSet) match(ev *Event, banks []bundle.Bank) *reference {
	for _, bank := range banks {
		d, ok := ev.Digests[bank]
		if !ok {
			continue
		}
		for _, r := range s.byDigest[digestKey{pcr: ev.PCR, bank: bank, digest: string(d)}] {
			if agrees(ev, r.value, banks) {
				return r
			}
		}
	}
	return nil
}

func agrees(ev *Event, v *bundle.Value, banks []bundle.Bank) bool {
	strong := false
	// An event whose only verified digest is SHA-1 may match on it; the
	// verdict then reports sha1_only (see sha1OnlyPCRs).
	_, hasSHA1 := ev.Digests["sha1"]
	onlySHA1 := hasSHA1 && len(ev.Digests) == 1
	shared := 0
	for _, bank := range banks {
		want, ok := v.Digests[bank]
		got, ok2 := ev.Digests[bank]
		if !ok || !ok2 {
			continue
		}
		if !bytes.Equal(want, got) {
			return false
		}
		shared++
		if bank != "sha1" {
			strong = true
		}
	}
	return shared > 0 && (strong || onlySHA1)
}

// Alternative is a reference value that an unmatched event could have
// matched: same PCR and kind, and the same component name when any
// reference has it.
type Alternative struct {
	Source    string        `json:"source"`
	Component string        `json:"component"`
	Bank      bundle.Bank   `json:"bank"`
	Digest    bundle.Digest `json:"digest"`
	Data      string        `json:"data,omitempty"`
}

// maxAlternatives bounds the alternatives listed per unmatched event.
const maxAlternatives = 8

// alternatives returns what the references would have accepted in place
// of ev, in the bank shown for it, and how many more there were.
func (s *referenceSet) alternatives(ev *Event, kind bundle.Kind, name string, bank bundle.Bank) ([]Alternative, int) {
	var sameKind, sameName []*reference
	seen := make(map[string]bool)
	for _, r := range s.byPCR[ev.PCR] {
		if r.kind != kind {
			continue
		}
		d, ok := r.value.Digests[bank]
		if !ok || seen[r.source+"\x00"+string(d)] {
			continue
		}
		seen[r.source+"\x00"+string(d)] = true
		sameKind = append(sameKind, r)
		if namesMatch(r.component, name) {
			sameName = append(sameName, r)
		}
	}
	pick := sameKind
	if len(sameName) > 0 {
		pick = sameName
	}
	more := 0
	if len(pick) > maxAlternatives {
		more = len(pick) - maxAlternatives
		pick = pick[:maxAlternatives]
	}
	out := make([]Alternative, 0, len(pick))
	for _, r := range pick {
		out = append(out, Alternative{
			Source: r.source, Component: r.component, Bank: bank,
			Digest: r.value.Digests[bank], Data: r.value.Data,
		})
	}
	return out, more
}

// namesMatch reports whether a reference's component name and the name an
// event was taken to be denote the same thing: equal ignoring case, or one
// extends the other by a version ("vmlinuz" and "vmlinuz-6.1.0-57-amd64")
// or a prefix ("MokList" and "shimx64.efi MokList").
func namesMatch(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	return strings.HasPrefix(b, a+"-") || strings.HasSuffix(b, " "+a)
}

// bankOrder ranks banks from strongest to weakest for display.
var bankOrder = []bundle.Bank{"sha512", "sha384", "sha256", "sm3_256", "sha1"}

// displayBank returns the strongest verified bank the event has a digest
// in.
func displayBank(ev *Event, banks []bundle.Bank) bundle.Bank {
	for _, b := range bankOrder {
		if _, ok := ev.Digests[b]; ok && containsBank(banks, b) {
			return b
		}
	}
	return ""
}

func containsBank(banks []bundle.Bank, b bundle.Bank) bool {
	for _, x := range banks {
		if x == b {
			return true
		}
	}
	return false
}

// sortBanks orders banks from strongest to weakest.
func sortBanks(banks []bundle.Bank) {
	rank := make(map[bundle.Bank]int)
	for i, b := range bankOrder {
		rank[b] = i
	}
	sort.SliceStable(banks, func(i, j int) bool { return rank[banks[i]] < rank[banks[j]] })
}

// shortHex abbreviates a digest for one-line explanations.
func shortHex(d []byte) string {
	const n = 6
	if len(d) <= n {
		return fmt.Sprintf("%x", d)
	}
	return fmt.Sprintf("%x…", d[:n])
}
