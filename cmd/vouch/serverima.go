package main

import (
	"github.com/spf13/pflag"

	"github.com/vouch-attest/vouch/verifier"
)

// addIMAPolicyFlags registers the IMA file policy flags of vouch server.
func addIMAPolicyFlags(f *pflag.FlagSet, c *verifier.IMAPolicyConfig) {
	f.StringArrayVar(&c.Allowlists, "ima-allowlist", nil, "IMA allowlist file ('vouch ima allowlist create' or sha256sum output); files whose digest no allowlist lists fail the machine (repeatable)")
	f.StringArrayVar(&c.Keys, "ima-key", nil, "certificate or public key, PEM or DER, that ima-sig file signatures may verify against (repeatable)")
	f.StringArrayVar(&c.Exclude, "ima-exclude", nil, "file name pattern the IMA policy never checks: a path.Match glob, or a directory ending in / (repeatable)")
	f.StringVar(&c.Action, "ima-action", "", "what a file no allowlist or key accepts does: enforce (untrusted, the default) or warn (reported only)")
	f.StringVar(&c.Violations, "ima-violations", "", "action for IMA violation entries: enforce or warn (default: --ima-action when a policy is set, else only counted)")
	f.BoolVar(&c.MatchName, "ima-match-name", false, "require an allowlist to list each digest for the logged file name")
}
