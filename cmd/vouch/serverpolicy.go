package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/policy"
	"github.com/vouch-attest/vouch/verifier"
)

// serverPolicyFlags select the verifier's policy: the first-boot policy by
// default, or bundles + firmware values + rules with --bundles.
type serverPolicyFlags struct {
	bundles []string
	trust   []string
	rules   string
	refresh time.Duration
	// allowSHA1 accepts boots whose only verified bank is SHA-1, in both
	// policies.
	allowSHA1 bool
}

func (p *serverPolicyFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&p.bundles, "bundles", nil, "signed reference-value bundles: an envelope file, a directory of *.json envelopes or an http(s) URL (repeatable); switches from the first-boot policy to bundles + approved firmware values + rules")
	f.StringArrayVar(&p.trust, "trust", nil, "trusted bundle publisher key as PUBLISHER=KEY.pub (repeatable, needed with --bundles)")
	f.StringVar(&p.rules, "policy-rules", "", "policy rules file (JSON, see docs/policy.md), with --bundles")
	f.DurationVar(&p.refresh, "bundles-refresh", 10*time.Minute, "how often bundles given as URLs are fetched again (SIGHUP reloads every source at once)")
	f.BoolVar(&p.allowSHA1, "policy-insecure-allow-sha1", false, "trust boots whose only verified PCR bank is SHA-1, in the first-boot and the bundle policy (as the rule insecure_allow_sha1); SHA-1 collisions can be computed, so set it only for TPMs without a SHA-256 bank")
}

// build returns the policy and, in bundle mode, the bundle set after its
// first load. It fails when no bundle at all was accepted.
func (p *serverPolicyFlags) build(ctx context.Context, log *slog.Logger) (verifier.Policy, *verifier.BundleSet, error) {
	if len(p.bundles) == 0 {
		if len(p.trust) > 0 || p.rules != "" {
			return nil, nil, withExitCode(exitUsage, errors.New("--trust and --policy-rules apply to bundles: give --bundles DIR|URL"))
		}
		return verifier.FirstBootPolicy{InsecureAllowSHA1: p.allowSHA1}, nil, nil
	}
	if len(p.trust) == 0 {
		return nil, nil, withExitCode(exitUsage, errors.New("--bundles needs at least one --trust PUBLISHER=KEY.pub"))
	}
	trust, err := p.trustStore()
	if err != nil {
		return nil, nil, err
	}

	var rules policy.Rules
	if p.rules != "" {
		data, err := bundle.ReadFile(p.rules)
		if err != nil {
			return nil, nil, withExitCode(exitUnreadable, fmt.Errorf("--policy-rules: %w", err))
		}
		r, err := policy.ParseRules(data)
		if err != nil {
			return nil, nil, withExitCode(exitUnreadable, fmt.Errorf("--policy-rules %s: %w", p.rules, err))
		}
		rules = *r
	}
	if p.allowSHA1 {
		rules.InsecureAllowSHA1 = true
	}

	engine, err := policy.NewEngine(rules)
	if err != nil {
		return nil, nil, withExitCode(exitUsage, fmt.Errorf("--policy-rules %s: %w", p.rules, err))
	}

	set := &verifier.BundleSet{
		Loader:  &bundle.Loader{Trust: trust, Now: time.Now},
		Sources: p.bundles,
		Engine:  engine,
		Log:     log,
	}
	res, err := set.Reload(ctx)
	if err != nil {
		return nil, nil, withExitCode(exitUnavailable, err)
	}
	if len(res.Bundles()) == 0 {
		return nil, nil, withExitCode(exitUsage, fmt.Errorf("no bundle of %s was accepted (see the log for each reason): every boot would be untrusted", strings.Join(p.bundles, ", ")))
	}
	return &verifier.BundlePolicy{Engine: engine}, set, nil
}

// trustStore reads the --trust publisher keys.
func (p *serverPolicyFlags) trustStore() (*bundle.TrustStore, error) {
	trust := bundle.NewTrustStore()
	for _, spec := range p.trust {
		name, file, ok := strings.Cut(spec, "=")
		if !ok || name == "" || file == "" {
			return nil, withExitCode(exitUsage, fmt.Errorf("--trust %q: expected PUBLISHER=KEY.pub", spec))
		}
		data, err := readLimited(file, nil, maxSmallFileSize)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("--trust %s: %w", spec, err))
		}
		pub, err := bundle.ParsePublicKeyPEM(data)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("--trust %s: %w", spec, err))
		}
		if err := trust.Add(name, pub); err != nil {
			return nil, withExitCode(exitUsage, fmt.Errorf("--trust %s: %w", spec, err))
		}
	}
	return trust, nil
}

// runReloads reloads set on SIGHUP and, for URL sources, every refresh
// period, until ctx is done.
func (p *serverPolicyFlags) runReloads(ctx context.Context, set *verifier.BundleSet) {
	if set == nil {
		return
	}
	go set.Run(ctx, p.refresh, sighupReloads(ctx))
}

// sighupReloads returns a channel that receives a value on each SIGHUP
// until ctx is done.
func sighupReloads(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{})
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return reload
}
