package policy

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/vouch-attest/vouch/bundle"
)

// Engine is the policy a verifier holds for its whole fleet: the verified
// bundles and the rules, shared by every machine, while each machine's
// firmware values travel as the opaque baseline bytes the verifier stores.
// Its methods are safe for concurrent use.
type Engine struct {
	mu      sync.RWMutex
	bundles []*bundle.Verified
	rules   Rules
}

// NewEngine returns an engine with the given rules and no bundles.
func NewEngine(rules Rules) (*Engine, error) {
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	return &Engine{rules: rules}, nil
}

// SetBundles replaces the bundles, such as after a bundle.Loader run.
// Checks already running keep the bundles they started with.
func (e *Engine) SetBundles(bundles []*bundle.Verified) error {
	for i, b := range bundles {
		if b == nil || b.Bundle() == nil {
			return fmt.Errorf("policy: bundle %d was not verified: load bundles with bundle.Verify or a bundle.Loader", i)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bundles = append([]*bundle.Verified(nil), bundles...)
	return nil
}

// Learn records a machine's firmware values from a verified boot as the
// next baseline revision after prev (nil or empty for the first), encoded
// as JSON for the verifier to store. The baseline counts only once
// approved: pass approveBy to approve it at once (trust on first use), or
// "" to leave it for an administrator (see Approve).
func (e *Engine) Learn(machine string, ev *Evidence, prev []byte, at time.Time, approveBy string) ([]byte, error) {
	var previous *Baseline
	if len(prev) > 0 {
		var err error
		if previous, err = ParseBaseline(prev); err != nil {
			return nil, fmt.Errorf("previous baseline: %w", err)
		}
	}
	b, err := LearnBaseline(machine, ev, previous, at)
	if err != nil {
		return nil, err
	}
	if approveBy != "" {
		if err := b.Approve(approveBy, at, "approved on first use"); err != nil {
			return nil, err
		}
	}
	return json.Marshal(b)
}

// Approve marks a stored baseline approved and returns it re-encoded.
func Approve(baseline []byte, by string, at time.Time, comment string) ([]byte, error) {
	b, err := ParseBaseline(baseline)
	if err != nil {
		return nil, err
	}
	if err := b.Approve(by, at, comment); err != nil {
		return nil, err
	}
	return json.Marshal(b)
}

// RequiredPCRs returns the PCRs a quote must cover for Evaluate to trust a
// machine with the given stored baseline (nil or empty for none). The
// verifier should request at least these in its challenges, because any
// it leaves out makes the verdict untrusted.
func (e *Engine) RequiredPCRs(baseline []byte) ([]int, error) {
	p := &Policy{}
	if len(baseline) > 0 {
		b, err := ParseBaseline(baseline)
		if err != nil {
			return nil, fmt.Errorf("stored baseline: %w", err)
		}
		p.Baseline = b
	}
	e.mu.RLock()
	p.Bundles, p.Rules = e.bundles, e.rules
	e.mu.RUnlock()
	return p.RequiredPCRs(), nil
}

// Evaluate judges a verified boot against the engine's bundles and rules
// and the machine's stored baseline (nil or empty when it has none yet).
func (e *Engine) Evaluate(baseline []byte, ev *Evidence) (*Verdict, error) {
	var b *Baseline
	if len(baseline) > 0 {
		var err error
		if b, err = ParseBaseline(baseline); err != nil {
			return nil, fmt.Errorf("stored baseline: %w", err)
		}
	}
	return e.EvaluateBaseline(b, ev)
}

// EvaluateBaseline is Evaluate with the machine's baseline already
// decoded (nil when it has none yet).
func (e *Engine) EvaluateBaseline(b *Baseline, ev *Evidence) (*Verdict, error) {
	p := &Policy{Baseline: b}
	e.mu.RLock()
	p.Bundles, p.Rules = e.bundles, e.rules
	e.mu.RUnlock()
	return p.Check(ev)
}
