package verifier

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vouch-attest/vouch/ima"
)

// IMAPolicyConfig names the files and settings of the verifier's IMA file
// policy, as the server's flags give them.
type IMAPolicyConfig struct {
	// Allowlists are files in the format of ima.Allowlist.ReadFrom (the
	// output of vouch ima allowlist create, or of sha256sum).
	Allowlists []string
	// Keys are certificates or public keys (PEM or DER) that ima-sig
	// signatures may verify against.
	Keys []string
	// Exclude lists file name patterns that are never checked.
	Exclude []string
	// Action is "enforce" (default) or "warn": what a file that neither an
	// allowlist nor a key accepts does to the machine.
	Action string
	// Violations is "enforce" or "warn"; empty means Action when an
	// allowlist or key is given, else violations are only counted.
	Violations string
	// MatchName requires an allowlist to list a digest for the logged
	// file name, not for any name.
	MatchName bool
}

// Load builds the policy. It returns nil, nil when the configuration sets
// no policy: IMA entries are then replayed and checked for consistency
// only.
func (c IMAPolicyConfig) Load() (*ima.Policy, error) {
	if len(c.Allowlists) == 0 && len(c.Keys) == 0 && c.Violations == "" {
		if len(c.Exclude) > 0 || c.Action != "" || c.MatchName {
			return nil, errors.New("IMA policy options need an allowlist, a key or a violations action: give --ima-allowlist, --ima-key or --ima-violations")
		}
		return nil, nil
	}
	p := &ima.Policy{Exclude: c.Exclude}
	action := ima.Enforce
	if c.Action != "" {
		if err := action.UnmarshalText([]byte(c.Action)); err != nil {
			return nil, fmt.Errorf("IMA action: %w", err)
		}
	}
	if c.Violations != "" {
		if err := p.Violations.UnmarshalText([]byte(c.Violations)); err != nil {
			return nil, fmt.Errorf("IMA violations action: %w", err)
		}
	} else {
		p.Violations = action
	}
	rule := ima.Rule{Action: action, MatchName: c.MatchName}
	var names []string
	if len(c.Allowlists) > 0 {
		names = append(names, "allowlist")
		rule.Allowlist = ima.NewAllowlist()
		for _, path := range c.Allowlists {
			if err := readAllowlist(rule.Allowlist, path); err != nil {
				return nil, err
			}
		}
	}
	if len(c.Keys) > 0 {
		names = append(names, "signature")
		rule.Keys = &ima.Keyring{}
		for _, path := range c.Keys {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("IMA key: %w", err)
			}
			k, err := ima.ParseKeys(data)
			if err != nil {
				return nil, fmt.Errorf("IMA key %s: %w", path, err)
			}
			rule.Keys.Merge(k)
		}
	}
	if len(names) > 0 {
		rule.Name = strings.Join(names, "-or-")
		p.Rules = []ima.Rule{rule}
	}
	p.Uncovered = action
	return p, nil
}

func readAllowlist(a *ima.Allowlist, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("IMA allowlist: %w", err)
	}
	defer f.Close()
	if _, err := a.ReadFrom(f); err != nil {
		return fmt.Errorf("IMA allowlist %s: %w", path, err)
	}
	return nil
}
