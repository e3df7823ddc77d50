package verifier

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vouch-attest/vouch/bundle"
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
	// Violations is "enforce" or "warn". Empty means Action when an
	// allowlist, bundle or key is given, else violations are only counted.
	Violations string
	// MatchName requires an allowlist to list a digest for the logged
	// file name, not for any name.
	MatchName bool
	// InsecureAllowSHA1 accepts SHA-1 file digests and signatures, which
	// the policy otherwise rejects (MD5 is rejected always).
	InsecureAllowSHA1 bool
	// Bundles are verified reference bundles whose ima-file components
	// join the allowlist.
	Bundles []*bundle.Bundle
	// BundleSources is set when bundles are configured, even if none is
	// valid now: the allowlist rule then stays in force with what the
	// other allowlists hold, so the expiry of every bundle fails files
	// instead of turning the policy off.
	BundleSources bool
}

// Load builds the policy. It returns nil, nil when the configuration sets
// no policy: IMA entries are then replayed and checked for consistency
// only.
func (c IMAPolicyConfig) Load() (*ima.Policy, error) {
	bundles := len(c.Bundles) > 0 || c.BundleSources
	if len(c.Allowlists) == 0 && len(c.Keys) == 0 && !bundles && c.Violations == "" {
		if len(c.Exclude) > 0 || c.Action != "" || c.MatchName || c.InsecureAllowSHA1 {
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
	rule := ima.Rule{Action: action, MatchName: c.MatchName, AllowSHA1: c.InsecureAllowSHA1}
	var names []string
	if len(c.Allowlists) > 0 || bundles {
		names = append(names, "allowlist")
		rule.Allowlist = ima.NewAllowlist()
		for _, path := range c.Allowlists {
			if err := readAllowlist(rule.Allowlist, path); err != nil {
				return nil, err
			}
		}
		for _, b := range c.Bundles {
			if _, err := AddBundleToAllowlist(rule.Allowlist, b); err != nil {
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

// AddBundleToAllowlist adds the file digests of the bundle's ima-file
// components to a, each for the path in its value's Data (any path when
// empty), and returns how many digests it added. Verify the bundle first.
func AddBundleToAllowlist(a *ima.Allowlist, b *bundle.Bundle) (int, error) {
	n := 0
	for _, c := range b.Components {
		if c.Kind != bundle.KindIMAFile {
			continue
		}
		for i, v := range c.Values {
			for bank, d := range v.Digests {
				if bank == "sm3_256" {
					continue // IMA names it sm3; no allowlist lookup uses it
				}
				if err := a.Add(string(bank), d, v.Data); err != nil {
					return n, fmt.Errorf("bundle %s component %q value %d: %w", b.ID(), c.Name, i, err)
				}
				n++
			}
		}
	}
	return n, nil
}
