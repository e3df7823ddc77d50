package ima

import (
	"encoding/hex"
	"fmt"
	"path"
	"strings"
)

// Action is the response of a policy rule to an entry it does not accept.
type Action int

const (
	// Enforce makes the entry a failure: the machine is not trusted.
	Enforce Action = iota
	// Warn reports the entry without failing the machine.
	Warn
)

func (a Action) String() string {
	if a == Warn {
		return "warn"
	}
	return "enforce"
}

// MarshalText encodes the action by name.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText decodes "enforce" or "warn".
func (a *Action) UnmarshalText(b []byte) error {
	switch string(b) {
	case "enforce":
		*a = Enforce
	case "warn":
		*a = Warn
	default:
		return fmt.Errorf("unknown action %q: want enforce or warn", b)
	}
	return nil
}

// Rule accepts entries whose digest is in an allowlist or whose IMA
// signature verifies against a keyring. A rule with both accepts either.
type Rule struct {
	// Name identifies the rule in verdicts.
	Name string
	// Action applies when no rule accepts an entry and this rule is the
	// first that covers it, so a specific rule placed before a general one
	// sets the action for its files.
	Action Action
	// Paths limits the rule to file names that match one of these
	// patterns: a pattern ending in '/' matches every name under that
	// directory, any other pattern is a path.Match glob. Empty means all
	// names.
	Paths []string
	// Allowlist accepts entries whose file digest it lists.
	Allowlist *Allowlist
	// MatchName requires the allowlist to list the digest for the entry's
	// own file name (or without a name), not for any name.
	MatchName bool
	// Keys accepts entries whose IMA signature verifies (ima-sig and
	// ima-modsig "sig" fields).
	Keys *Keyring
	// AllowSHA1 accepts entries whose file digest, and so signature, is
	// SHA-1. Without it they are rejected, as MD5 always is: collisions
	// can be computed for both, so one signed or listed benign file could
	// vouch for a malicious one. The signer of a file chooses the
	// algorithm in its security.ima header, not the kernel's policy.
	AllowSHA1 bool
}

// brokenDigest returns why a file digest algorithm is not accepted, or "".
func (rule *Rule) brokenDigest(alg string) string {
	switch alg {
	case "md4", "md5":
		return fmt.Sprintf("file digest algorithm %s is broken and never accepted: sign and measure files with sha256 (ima_hash=sha256)", alg)
	case "sha1":
		if rule.AllowSHA1 {
			return ""
		}
		return "file digest algorithm sha1 is not accepted because SHA-1 collisions can be computed: sign and measure files with sha256 (ima_hash=sha256), or accept sha1 explicitly (--insecure-allow-sha1)"
	}
	return ""
}

// Policy decides which verified entries are acceptable.
type Policy struct {
	// Exclude lists name patterns (as in Rule.Paths) that are never
	// checked, such as log files that change all the time.
	Exclude []string
	// Rules are tried in order; the first that accepts an entry wins.
	Rules []Rule
	// Uncovered applies to entries that no rule covers.
	Uncovered Action
	// Violations applies to violation entries (a file measured while open
	// for writing, or opened for writing while measured), which are never
	// accepted.
	Violations Action
}

// Outcome is a policy decision about one entry.
type Outcome string

// Outcomes.
const (
	Accepted Outcome = "accepted"
	Excluded Outcome = "excluded"
	Rejected Outcome = "rejected"
	// Violation marks violation entries.
	Violation Outcome = "violation"
)

// Verdict is the decision about one entry that was not accepted.
type Verdict struct {
	Entry int `json:"entry"`
	// File is the entry's file name; it may contain any bytes.
	File string `json:"file"`
	// Digest is the file digest as "alg:hex".
	Digest  string  `json:"digest"`
	Outcome Outcome `json:"outcome"`
	// Rule names the rules that covered the entry.
	Rule   string `json:"rule"`
	Action Action `json:"action"`
	Reason string `json:"reason"`
}

// Report is the outcome of applying a policy to entries.
type Report struct {
	Checked  int `json:"checked"`
	Accepted int `json:"accepted"`
	Excluded int `json:"excluded"`
	// Verdicts lists every entry that was not accepted or excluded.
	Verdicts []Verdict `json:"verdicts"`
}

// Failed reports whether any verdict carries the Enforce action.
func (r *Report) Failed() bool {
	for _, v := range r.Verdicts {
		if v.Action == Enforce {
			return true
		}
	}
	return false
}

// Check applies the policy to entries, which should be entries that
// Verify verified. The boot_aggregate (entry 0) is left to Verify and
// CheckBootAggregate. Entries whose fields do not decode are rejected by
// the Uncovered action.
func (p *Policy) Check(entries []Entry) *Report {
	r := &Report{}
	for i := range entries {
		p.checkEntry(&entries[i], r)
	}
	return r
}

func (p *Policy) checkEntry(e *Entry, r *Report) {
	r.Checked++
	if e.IsViolation() {
		name := ""
		if f, err := e.Fields(); err == nil {
			name = string(f.Name)
		}
		r.Verdicts = append(r.Verdicts, Verdict{Entry: e.Index, File: name, Outcome: Violation,
			Rule: "violations", Action: p.Violations,
			Reason: "violation: the file was measured while open for writing, or opened for writing while measured"})
		return
	}
	f, err := e.Fields()
	if err != nil {
		r.Verdicts = append(r.Verdicts, Verdict{Entry: e.Index, Outcome: Rejected, Rule: "uncovered",
			Action: p.Uncovered, Reason: err.Error()})
		return
	}
	if e.Index == 0 && string(f.Name) == BootAggregateName {
		r.Accepted++
		return
	}
	if matchAny(p.Exclude, f.Name) {
		r.Excluded++
		return
	}
	var covered []string
	var reasons []string
	var action Action
	for i := range p.Rules {
		rule := &p.Rules[i]
		if len(rule.Paths) > 0 && !matchAny(rule.Paths, f.Name) {
			continue
		}
		ok, reason := rule.accepts(&f)
		if ok {
			r.Accepted++
			return
		}
		if len(covered) == 0 {
			action = rule.Action
		}
		covered = append(covered, rule.Name)
		reasons = append(reasons, rule.Name+": "+reason)
	}
	v := Verdict{Entry: e.Index, File: string(f.Name), Digest: f.DigestAlgorithm + ":" + hex.EncodeToString(f.Digest), Outcome: Rejected}
	if len(covered) == 0 {
		v.Rule, v.Action, v.Reason = "uncovered", p.Uncovered, "no rule covers this file"
	} else {
		v.Rule, v.Action, v.Reason = strings.Join(covered, ","), action, strings.Join(reasons, "; ")
	}
	r.Verdicts = append(r.Verdicts, v)
}

// accepts reports whether the rule accepts the entry, and why not.
func (rule *Rule) accepts(f *Fields) (bool, string) {
	if reason := rule.brokenDigest(f.DigestAlgorithm); reason != "" {
		return false, reason
	}
	var reasons []string
	if rule.Allowlist != nil {
		var ok bool
		if rule.MatchName {
			ok = rule.Allowlist.ContainsFor(f.DigestAlgorithm, f.Digest, f.Name)
		} else {
			ok = rule.Allowlist.Contains(f.DigestAlgorithm, f.Digest)
		}
		if ok {
			return true, ""
		}
		if rule.MatchName && rule.Allowlist.Contains(f.DigestAlgorithm, f.Digest) {
			reasons = append(reasons, "digest is in the allowlist, but not for this file name")
		} else {
			reasons = append(reasons, "digest is not in the allowlist")
		}
	}
	if rule.Keys != nil {
		if len(f.Signature) == 0 {
			reasons = append(reasons, "entry has no signature")
		} else if _, err := rule.Keys.VerifySignature(f); err != nil {
			reasons = append(reasons, err.Error())
		} else {
			return true, ""
		}
	}
	if len(reasons) == 0 {
		return false, "rule has neither an allowlist nor keys"
	}
	return false, strings.Join(reasons, ", ")
}

// matchAny reports whether name matches one of the patterns. Spaces in a
// pattern match the underscores IMA logs in their place.
func matchAny(patterns []string, name []byte) bool {
	for _, p := range patterns {
		p = LoggedName(p)
		if strings.HasSuffix(p, "/") {
			if strings.HasPrefix(string(name), p) {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p, string(name)); ok {
			return true
		}
	}
	return false
}
