package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/ima"
	"github.com/vouch-attest/vouch/verifier"
)

// imaPolicyFlags are the IMA file policy flags of vouch server.
type imaPolicyFlags struct {
	cfg     verifier.IMAPolicyConfig
	bundles []string
	trust   trustFlags

	// set reloads the --ima-bundle sources (nil without them), and each
	// reload rebuilds the policy.
	set     *verifier.BundleSet
	mu      sync.Mutex
	current *ima.Policy
	backend *verifier.AttestBackend
}

func (p *imaPolicyFlags) register(f *pflag.FlagSet) {
	c := &p.cfg
	f.StringArrayVar(&c.Allowlists, "ima-allowlist", nil, "IMA allowlist file ('vouch ima allowlist create' or sha256sum output); files whose digest no allowlist lists fail the machine (repeatable)")
	f.StringArrayVar(&p.bundles, "ima-bundle", nil, "reference bundle (file, directory or URL) whose ima-file digests join the IMA allowlist; needs --ima-bundle-trust (repeatable)")
	f.StringArrayVar(&p.trust.keys, "ima-bundle-trust", nil, "trusted publisher key of --ima-bundle as PUBLISHER=PUBLIC_KEY_FILE (repeatable)")
	f.StringArrayVar(&c.Keys, "ima-key", nil, "certificate or public key, PEM or DER, that ima-sig file signatures may verify against (repeatable)")
	f.StringArrayVar(&c.Exclude, "ima-exclude", nil, "file name pattern the IMA policy never checks: a path.Match glob, or a directory ending in / (repeatable)")
	f.StringVar(&c.Action, "ima-action", "", "what a file no allowlist or key accepts does: enforce (untrusted, the default) or warn (reported only)")
	f.StringVar(&c.Violations, "ima-violations", "", "action for IMA violation entries: enforce or warn (default: --ima-action when a policy is set, else only counted)")
	f.BoolVar(&c.MatchName, "ima-match-name", false, "require an allowlist to list each digest for the logged file name")
	f.BoolVar(&c.InsecureAllowSHA1, "ima-insecure-allow-sha1", false, "accept SHA-1 file digests and signatures (kernels booted with ima_hash=sha1); SHA-1 collisions can be computed, so a listed benign file can vouch for a malicious one")
}

// load verifies the bundles and builds the policy; nil means off. Every
// bundle source must verify at start.
func (p *imaPolicyFlags) load(ctx context.Context, w io.Writer, log *slog.Logger) (*ima.Policy, error) {
	if len(p.bundles) == 0 {
		pol, err := p.cfg.Load()
		if err != nil {
			return nil, withExitCode(exitUsage, err)
		}
		return pol, nil
	}
	if len(p.trust.keys) == 0 {
		return nil, withExitCode(exitUsage, errors.New("--ima-bundle needs the publishers' keys: pass --ima-bundle-trust PUBLISHER=KEY.pub"))
	}
	l, err := p.trust.loader()
	if err != nil {
		return nil, err
	}
	if _, err := loadBundles(ctx, l, p.bundles, w); err != nil {
		return nil, err
	}
	p.cfg.BundleSources = true
	p.set = &verifier.BundleSet{Loader: l, Sources: p.bundles, Apply: p.apply, Log: log.With("bundles", "ima")}
	if _, err := p.set.Reload(ctx); err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current, nil
}

// apply rebuilds the policy from the flags and the IMA bundles in use, and
// hands it to the back end once runReloads attached one.
func (p *imaPolicyFlags) apply(verified []*bundle.Verified) error {
	cfg := p.cfg
	cfg.Bundles = nil
	for _, v := range verified {
		cfg.Bundles = append(cfg.Bundles, v.Bundle())
	}
	pol, err := cfg.Load()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.current = pol
	backend := p.backend
	p.mu.Unlock()
	if backend != nil {
		backend.SetIMAPolicy(pol)
	}
	return nil
}

// runReloads reloads the IMA bundles on reload (SIGHUP), every refresh
// period for URL sources, and when a bundle expires, and hands each new
// policy to backend.
func (p *imaPolicyFlags) runReloads(ctx context.Context, backend *verifier.AttestBackend, refresh time.Duration, reload <-chan struct{}) {
	if p.set == nil {
		return
	}
	p.mu.Lock()
	p.backend = backend
	p.mu.Unlock()
	go p.set.Run(ctx, refresh, reload)
}
