package verifier

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/policy"
)

// BundleSet keeps the bundles a verifier judges with. Reload loads every
// source with the Loader and hands the accepted bundles to the Engine, or
// to Apply.
// When a bundle file or URL that was accepted before is now rejected, its
// earlier version stays in use, with a warning, until that version's
// validity period ends. A bundle that disappeared from its directory is
// dropped.
type BundleSet struct {
	Loader  *bundle.Loader
	Sources []string
	Engine  *policy.Engine
	// Apply, when set, receives the bundles in use after each Reload, as
	// the Engine does when set (IMA bundles need no Engine). When it fails,
	// the bundles in use before stay in use.
	Apply func([]*bundle.Verified) error
	Log   *slog.Logger

	mu sync.Mutex
	// accepted maps a bundle's source (file path or URL) to the version
	// accepted last.
	accepted map[string]*bundle.Verified
}

// ReloadResult is the outcome of one Reload.
type ReloadResult struct {
	// Accepted are the bundles loaded in this run.
	Accepted []*bundle.Verified
	// Kept are earlier versions kept in place of a rejected source.
	Kept []*bundle.Verified
	// Rejected holds one error per source that was rejected or unreadable.
	Rejected []error
}

// Bundles returns every bundle now in use.
func (r *ReloadResult) Bundles() []*bundle.Verified {
	return append(append([]*bundle.Verified(nil), r.Accepted...), r.Kept...)
}

// Reload loads every source, logs each bundle accepted and each rejected
// with its reason, and replaces the engine's bundles.
func (s *BundleSet) Reload(ctx context.Context) (*ReloadResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := s.Loader.Now()
	res := &ReloadResult{}
	next := map[string]*bundle.Verified{}
	for _, src := range s.Sources {
		got, errs := s.Loader.Load(ctx, src)
		for _, v := range got {
			b := v.Bundle()
			next[v.Source()] = v
			res.Accepted = append(res.Accepted, v)
			log.Info("bundle accepted", "source", v.Source(), "bundle", b.ID(), "publisher", v.Publisher(),
				"key", v.KeyID(), "not_after", b.NotAfter.Format(time.RFC3339))
		}
		for _, err := range errs {
			res.Rejected = append(res.Rejected, err)
			source := src
			var le *bundle.LoadError
			if errors.As(err, &le) {
				source = le.Source
			}
			args := []any{"source", source, "reason", err.Error()}
			if r := bundle.RejectionReason(err); r != 0 {
				args = append(args, "code", r.String())
			}
			prev, had := s.accepted[source]
			switch {
			case had && now.Before(prev.Bundle().NotAfter):
				next[source] = prev
				res.Kept = append(res.Kept, prev)
				log.Warn("bundle rejected, keeping the version accepted before", append(args, "kept", prev.Bundle().ID())...)
			case had:
				log.Warn("bundle rejected; the version accepted before has expired and is dropped", append(args, "dropped", prev.Bundle().ID())...)
			default:
				log.Warn("bundle rejected", args...)
			}
		}
	}
	for source, prev := range s.accepted {
		if _, ok := next[source]; !ok && !failed(res.Rejected, source) {
			log.Info("bundle removed", "source", source, "bundle", prev.Bundle().ID())
		}
	}
	if s.Engine != nil {
		if err := s.Engine.SetBundles(res.Bundles()); err != nil {
			return res, err
		}
	}
	if s.Apply != nil {
		if err := s.Apply(res.Bundles()); err != nil {
			return res, err
		}
	}
	s.accepted = next
	log.Info("bundles loaded", "in_use", len(next), "accepted", len(res.Accepted), "kept", len(res.Kept), "rejected", len(res.Rejected))
	return res, nil
}

func failed(errs []error, source string) bool {
	for _, err := range errs {
		var le *bundle.LoadError
		if errors.As(err, &le) && le.Source == source {
			return true
		}
	}
	return false
}

// HasURL reports whether a source is an http or https URL, which Run
// reloads periodically.
func (s *BundleSet) HasURL() bool {
	for _, src := range s.Sources {
		if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
			return true
		}
	}
	return false
}

// Run reloads the bundles on each value from reload (such as SIGHUP) and,
// when a source is a URL and every is positive, every period. It also
// reloads when a bundle in use reaches the end of its validity, so that an
// expired bundle stops counting without a signal. It runs until ctx is
// done.
func (s *BundleSet) Run(ctx context.Context, every time.Duration, reload <-chan struct{}) {
	var tick <-chan time.Time
	if every > 0 && s.HasURL() {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		expiry := time.NewTimer(s.untilExpiry())
		select {
		case <-ctx.Done():
			expiry.Stop()
			return
		case <-tick:
		case <-reload:
		case <-expiry.C:
		}
		expiry.Stop()
		if _, err := s.Reload(ctx); err != nil && s.Log != nil {
			s.Log.Error("bundle reload failed", "err", err)
		}
	}
}

// maxExpiryWait bounds how long Run sleeps until a bundle expires, so a
// clock that jumps forward is noticed within a day.
const maxExpiryWait = 24 * time.Hour

// untilExpiry returns the time until the first bundle in use expires, at
// most maxExpiryWait. A moment after that time Reload rejects the bundle.
func (s *BundleSet) untilExpiry() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := maxExpiryWait
	now := s.Loader.Now()
	for _, v := range s.accepted {
		if d := v.Bundle().NotAfter.Sub(now) + time.Second; d < wait {
			wait = max(d, time.Second)
		}
	}
	return wait
}
