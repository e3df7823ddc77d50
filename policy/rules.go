package policy

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/internal/strictjson"
)

// Action is the effect of a failed rule on the verdict.
type Action string

// Rule actions.
const (
	// Enforce: a failure makes the machine untrusted.
	Enforce Action = "enforce"
	// Warn: a failure is reported and the machine stays trusted.
	Warn Action = "warn"
)

func (a Action) valid() bool { return a == "" || a == Enforce || a == Warn }

// orEnforce returns a, or Enforce when a is empty.
func (a Action) orEnforce() Action {
	if a == "" {
		return Enforce
	}
	return a
}

// Rules are the local checks over decoded state. A nil rule is not
// checked. Each rule's Action defaults to enforce.
type Rules struct {
	// ReferenceValues is the action for events that match no reference
	// value. Default enforce.
	ReferenceValues Action `json:"reference_values,omitempty"`
	// QuotedPCRs lists PCRs the quote must cover in a verified bank, in
	// addition to those Check always requires (see Policy.RequiredPCRs).
	QuotedPCRs *QuotedPCRsRule `json:"quoted_pcrs,omitempty"`
	// SecureBoot requires the SecureBoot variable measured into PCR 7 to
	// be 1.
	SecureBoot *SecureBootRule `json:"secure_boot,omitempty"`
	// DBX requires the dbx measured into PCR 7 to contain given hashes.
	DBX *DBXRule `json:"dbx,omitempty"`
	// Authorities limits the certificates that may authorize boot
	// applications (EV_EFI_VARIABLE_AUTHORITY events in PCR 7).
	Authorities *AuthorityRule `json:"authorities,omitempty"`
	// KernelCmdline limits the kernel command lines measured by GRUB
	// (PCR 8) or systemd-stub (PCR 12).
	KernelCmdline *CmdlineRule `json:"kernel_cmdline,omitempty"`
	// InsecureAllowSHA1 lets a boot be trusted when SHA-1 is the only
	// verified bank. Without it such a boot is untrusted (reason
	// sha1_only), because SHA-1 collisions can be computed: a component
	// crafted to collide with a signed one would match its reference
	// value. Set it only for TPMs or firmware that have no SHA-256 bank.
	InsecureAllowSHA1 bool `json:"insecure_allow_sha1,omitempty"`
}

// QuotedPCRsRule lists PCRs that must be quoted.
type QuotedPCRsRule struct {
	Action Action `json:"action,omitempty"`
	PCRs   []int  `json:"pcrs"`
}

// SecureBootRule requires Secure Boot to be enabled.
type SecureBootRule struct {
	Action Action `json:"action,omitempty"`
}

// DBXRule lists SHA-256 entries the forbidden-signature database must
// contain, such as revoked boot loader hashes.
type DBXRule struct {
	Action Action          `json:"action,omitempty"`
	SHA256 []bundle.Digest `json:"sha256"`
}

// AuthorityRule lists the certificates allowed to authorize boot
// applications, by the SHA-256 of the EFI_SIGNATURE_DATA's data (the DER
// certificate for X.509 entries).
type AuthorityRule struct {
	Action  Action             `json:"action,omitempty"`
	Allowed []AllowedAuthority `json:"allowed"`
}

// AllowedAuthority is one certificate or hash allowed as an authority.
type AllowedAuthority struct {
	// Name is a label for verdicts, such as "Microsoft UEFI CA 2011".
	Name   string        `json:"name"`
	SHA256 bundle.Digest `json:"sha256"`
}

// CmdlineRule limits kernel command lines. A command line passes when it
// matches at least one Allow pattern (or Allow is empty) and no Deny
// pattern. Patterns are RE2 expressions matched against the whole line.
type CmdlineRule struct {
	Action Action   `json:"action,omitempty"`
	Allow  []string `json:"allow,omitempty"`
	Deny   []string `json:"deny,omitempty"`
}

// MaxRulesSize bounds a rules file.
const MaxRulesSize = 1 << 20

// ParseRules decodes and validates rules from JSON, compiling the command
// line patterns. Unknown members, duplicate members and member names in
// another case than the schema's are rejected, so that the rule a reviewer
// reads is the rule vouch applies.
func ParseRules(data []byte) (*Rules, error) {
	if len(data) > MaxRulesSize {
		return nil, fmt.Errorf("rules are %d bytes, more than the limit of %d", len(data), MaxRulesSize)
	}
	var r Rules
	if err := strictjson.Decode(data, &r, strictjson.Options{}); err != nil {
		return nil, fmt.Errorf("decode rules: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks the rules' actions, PCRs, digests and patterns. Check
// calls it on every use; call it early to report errors at configuration
// time. Neither changes the rules, so one Policy may serve concurrent
// checks.
func (r *Rules) Validate() error {
	actions := map[string]Action{"reference_values": r.ReferenceValues}
	if q := r.QuotedPCRs; q != nil {
		actions["quoted_pcrs"] = q.Action
		if len(q.PCRs) == 0 {
			return errors.New("rules: quoted_pcrs: pcrs is empty: list the PCRs the quote must cover, such as [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14], or remove the rule")
		}
		for _, i := range q.PCRs {
			if i < 0 || i > bundle.MaxPCR {
				return fmt.Errorf("rules: quoted_pcrs: PCR %d is outside 0 to %d", i, bundle.MaxPCR)
			}
		}
	}
	if r.SecureBoot != nil {
		actions["secure_boot"] = r.SecureBoot.Action
	}
	if d := r.DBX; d != nil {
		actions["dbx"] = d.Action
		for i, h := range d.SHA256 {
			if len(h) != sha256.Size {
				return fmt.Errorf("rules: dbx: sha256 entry %d is %d bytes, expected 32", i, len(h))
			}
		}
	}
	if a := r.Authorities; a != nil {
		actions["authorities"] = a.Action
		for i, al := range a.Allowed {
			if len(al.SHA256) != sha256.Size {
				return fmt.Errorf("rules: authorities: entry %d (%q) sha256 is %d bytes, expected 32", i, al.Name, len(al.SHA256))
			}
		}
	}
	if c := r.KernelCmdline; c != nil {
		actions["kernel_cmdline"] = c.Action
		if _, _, err := c.compile(); err != nil {
			return err
		}
	}
	for name, a := range actions {
		if !a.valid() {
			return fmt.Errorf("rules: %s: action %q is invalid: use enforce or warn", name, a)
		}
	}
	return nil
}

// RuleResult is the outcome of one rule.
type RuleResult struct {
	Rule   string `json:"rule"`
	Action Action `json:"action"`
	Passed bool   `json:"passed"`
	// Detail explains a failure, or what was found for a pass.
	Detail string `json:"detail"`
	// Events lists the events the rule looked at or that failed it.
	Events []int `json:"events,omitempty"`
}

func (r *Rules) check(ev *Evidence) []RuleResult {
	var out []RuleResult
	if r.QuotedPCRs != nil {
		out = append(out, r.QuotedPCRs.check(ev))
	}
	if r.SecureBoot != nil {
		out = append(out, r.SecureBoot.check(ev))
	}
	if r.DBX != nil {
		out = append(out, r.DBX.check(ev))
	}
	if r.Authorities != nil {
		out = append(out, r.Authorities.check(ev))
	}
	if r.KernelCmdline != nil {
		out = append(out, r.KernelCmdline.check(ev))
	}
	return out
}

func (q *QuotedPCRsRule) check(ev *Evidence) RuleResult {
	res := RuleResult{Rule: "quoted_pcrs", Action: q.Action.orEnforce()}
	var missing []string
	for _, i := range q.PCRs {
		if !ev.Quoted(i) {
			missing = append(missing, fmt.Sprint(i))
		}
	}
	if len(missing) > 0 {
		res.Detail = fmt.Sprintf("PCR %s not covered by the quote in a verified bank: request them in the quote's PCR selection", strings.Join(missing, ", "))
		return res
	}
	res.Passed = true
	res.Detail = fmt.Sprintf("quote covers PCRs %v", q.PCRs)
	return res
}

// findVariable returns the last PCR 7 EV_EFI_VARIABLE_DRIVER_CONFIG event
// for the variable name, or nil.
func findVariable(ev *Evidence, name string) *Event {
	var found *Event
	for i := range ev.events {
		e := &ev.events[i]
		if e.PCR == 7 && e.Type == "EV_EFI_VARIABLE_DRIVER_CONFIG" && e.Variable != nil && e.Variable.Name == name {
			found = e
		}
	}
	return found
}

func (s *SecureBootRule) check(ev *Evidence) RuleResult {
	res := RuleResult{Rule: "secure_boot", Action: s.Action.orEnforce()}
	if !ev.Quoted(7) {
		res.Detail = "PCR 7 is not quoted, so the Secure Boot state is unknown: add PCR 7 to the quote's PCR selection"
		return res
	}
	e := findVariable(ev, "SecureBoot")
	if e == nil {
		res.Detail = "no SecureBoot variable was measured into PCR 7"
		return res
	}
	res.Events = []int{e.Number}
	switch {
	case !e.DataTrusted:
		res.Detail = fmt.Sprintf("event %d: the SecureBoot variable's data does not match its digest", e.Number)
	case e.Variable.Enabled == nil:
		res.Detail = fmt.Sprintf("event %d: the SecureBoot variable is not a one-byte boolean", e.Number)
	case !*e.Variable.Enabled:
		res.Detail = fmt.Sprintf("event %d: Secure Boot is disabled", e.Number)
	default:
		res.Passed = true
		res.Detail = fmt.Sprintf("event %d: Secure Boot is enabled", e.Number)
	}
	return res
}

func (d *DBXRule) check(ev *Evidence) RuleResult {
	res := RuleResult{Rule: "dbx", Action: d.Action.orEnforce()}
	if !ev.Quoted(7) {
		res.Detail = "PCR 7 is not quoted, so the dbx is unknown: add PCR 7 to the quote's PCR selection"
		return res
	}
	e := findVariable(ev, "dbx")
	if e == nil {
		res.Detail = "no dbx variable was measured into PCR 7"
		return res
	}
	res.Events = []int{e.Number}
	if !e.DataTrusted {
		res.Detail = fmt.Sprintf("event %d: the dbx variable's data does not match its digest", e.Number)
		return res
	}
	have := make(map[string]bool, len(e.Variable.SHA256))
	for _, h := range e.Variable.SHA256 {
		have[string(h)] = true
	}
	var missing []string
	for _, h := range d.SHA256 {
		if !have[string(h)] {
			missing = append(missing, h.String())
		}
	}
	if len(missing) > 0 {
		res.Detail = fmt.Sprintf("event %d: dbx (%d SHA-256 entries) lacks %d required entries: %s: apply the dbx update",
			e.Number, len(e.Variable.SHA256), len(missing), strings.Join(missing, ", "))
		return res
	}
	res.Passed = true
	res.Detail = fmt.Sprintf("event %d: dbx contains all %d required entries", e.Number, len(d.SHA256))
	return res
}

// BootAuthority records which authority event, if any, preceded a boot
// application in the log: the certificate that verified it.
type BootAuthority struct {
	Application int    `json:"application_event"`
	Name        string `json:"application"`
	// Authority is the event number of the EV_EFI_VARIABLE_AUTHORITY
	// event, or -1 when none was logged since the previous application
	// (firmware and shim log each authority once, at its first use).
	Authority   int           `json:"authority_event"`
	Certificate string        `json:"certificate,omitempty"`
	SHA256      bundle.Digest `json:"sha256,omitempty"`
}

// BootAuthorities pairs each boot application event with the authority
// events logged since the previous one.
func BootAuthorities(ev *Evidence) []BootAuthority {
	var out []BootAuthority
	pending := -1
	for i := range ev.events {
		e := &ev.events[i]
		switch {
		case e.PCR == 7 && e.Type == "EV_EFI_VARIABLE_AUTHORITY" && Classify(e) == bundle.KindAuthority:
			pending = i
		case e.Type == "EV_EFI_BOOT_SERVICES_APPLICATION":
			ba := BootAuthority{Application: e.Number, Name: ComponentName(e), Authority: -1}
			if pending >= 0 {
				a := &ev.events[pending]
				ba.Authority = a.Number
				if a.Variable != nil && len(a.Variable.Authority) > 0 {
					sum := sha256.Sum256(a.Variable.Authority)
					ba.SHA256 = sum[:]
					ba.Certificate = certificateName(a.Variable.Authority)
				}
			}
			pending = -1
			out = append(out, ba)
		}
	}
	return out
}

// certificateName returns a certificate's subject common name, or its
// subject, or "" when the data is not a certificate.
func certificateName(der []byte) string {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	if cert.Subject.CommonName != "" {
		return cert.Subject.CommonName
	}
	return cert.Subject.String()
}

func (a *AuthorityRule) check(ev *Evidence) RuleResult {
	res := RuleResult{Rule: "authorities", Action: a.Action.orEnforce()}
	if !ev.Quoted(7) {
		res.Detail = "PCR 7 is not quoted, so the authorities are unknown: add PCR 7 to the quote's PCR selection"
		return res
	}
	allowed := make(map[string]string, len(a.Allowed))
	for _, al := range a.Allowed {
		allowed[string(al.SHA256)] = al.Name
	}
	var bad, names []string
	seen := 0
	for i := range ev.events {
		e := &ev.events[i]
		if e.PCR != 7 || e.Type != "EV_EFI_VARIABLE_AUTHORITY" || Classify(e) != bundle.KindAuthority {
			continue
		}
		seen++
		res.Events = append(res.Events, e.Number)
		if !e.DataTrusted || e.Variable == nil || len(e.Variable.Authority) == 0 {
			bad = append(bad, fmt.Sprintf("event %d: authority data is missing or does not match its digest", e.Number))
			continue
		}
		sum := sha256.Sum256(e.Variable.Authority)
		name, ok := allowed[string(sum[:])]
		if !ok {
			label := certificateName(e.Variable.Authority)
			if label == "" {
				label = "a non-certificate entry"
			}
			bad = append(bad, fmt.Sprintf("event %d: %s (%s, sha256 %x) is not an allowed authority", e.Number, label, e.Variable.Name, sum))
			continue
		}
		names = append(names, name)
	}
	if seen == 0 {
		res.Detail = "no EV_EFI_VARIABLE_AUTHORITY event was logged: Secure Boot verified no boot application"
		return res
	}
	if len(bad) > 0 {
		res.Detail = strings.Join(bad, "; ")
		return res
	}
	res.Passed = true
	res.Detail = "boot applications were authorized by " + strings.Join(names, ", ")
	return res
}

// kernelCmdline returns the command line of a kernel-cmdline event: the
// text without GRUB's prefix.
func kernelCmdline(e *Event) string {
	text := strings.TrimPrefix(e.Text, grubCmdlinePrefix)
	return strings.TrimPrefix(text, grubModulePrefix)
}

func (c *CmdlineRule) check(ev *Evidence) RuleResult {
	res := RuleResult{Rule: "kernel_cmdline", Action: c.Action.orEnforce()}
	allow, deny, err := c.compile()
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	if !ev.Quoted(8) && !ev.Quoted(12) {
		res.Detail = "neither PCR 8 nor PCR 12 is quoted, so the kernel command line is unknown"
		return res
	}
	var bad, lines []string
	for i := range ev.events {
		e := &ev.events[i]
		if Classify(e) != bundle.KindKernelCmdline || strings.HasPrefix(e.Text, grubModulePrefix) {
			continue
		}
		res.Events = append(res.Events, e.Number)
		if !e.DataTrusted {
			bad = append(bad, fmt.Sprintf("event %d (PCR %d): the command line's data does not match its digest", e.Number, e.PCR))
			continue
		}
		line := kernelCmdline(e)
		lines = append(lines, fmt.Sprintf("%q", line))
		if reason := c.judge(line, allow, deny); reason != "" {
			bad = append(bad, fmt.Sprintf("event %d (PCR %d): command line %q %s", e.Number, e.PCR, line, reason))
		}
	}
	if len(res.Events) == 0 {
		res.Detail = "no kernel command line was measured"
		return res
	}
	if len(bad) > 0 {
		res.Detail = strings.Join(bad, "; ")
		return res
	}
	res.Passed = true
	res.Detail = "kernel command line " + strings.Join(lines, ", ") + " is allowed"
	return res
}

// compile compiles the Allow and Deny patterns, anchored to match whole
// command lines.
func (c *CmdlineRule) compile() (allow, deny []*regexp.Regexp, err error) {
	for _, p := range c.Allow {
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			return nil, nil, fmt.Errorf("rules: kernel_cmdline: allow pattern %q: %w", p, err)
		}
		allow = append(allow, re)
	}
	for _, p := range c.Deny {
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			return nil, nil, fmt.Errorf("rules: kernel_cmdline: deny pattern %q: %w", p, err)
		}
		deny = append(deny, re)
	}
	return allow, deny, nil
}

// judge returns why a command line fails the rule, or "".
func (c *CmdlineRule) judge(line string, allow, deny []*regexp.Regexp) string {
	for i, re := range deny {
		if re.MatchString(line) {
			return fmt.Sprintf("matches deny pattern %q", c.Deny[i])
		}
	}
	if len(allow) == 0 {
		return ""
	}
	for _, re := range allow {
		if re.MatchString(line) {
			return ""
		}
	}
	return "matches no allow pattern"
}

var errNoEvidence = errors.New("policy: no evidence: build it with FromVerifiedLog from a quote-verified log")
