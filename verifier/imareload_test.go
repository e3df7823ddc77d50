package verifier

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/ima"
)

// TestIMAPolicyBundleSourcesFailClosed checks that a policy configured
// with bundle sources stays on when no bundle is valid: every file fails
// instead of the policy turning off.
func TestIMAPolicyBundleSourcesFailClosed(t *testing.T) {
	raw, err := os.ReadFile("../ima/testdata/hahuri.ima.bin")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ima.ParseBinary(raw, ima.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}

	pol, err := IMAPolicyConfig{BundleSources: true}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if pol == nil {
		t.Fatal("policy with bundle sources but no valid bundle is off")
	}
	r := pol.Check(entries[1:6])
	if r.Accepted != 0 || len(r.Verdicts) != 5 {
		t.Errorf("report %+v: want all 5 files rejected", r)
	}
	if off, err := (IMAPolicyConfig{}).Load(); off != nil || err != nil {
		t.Errorf("empty configuration: %v, %v; want no policy", off, err)
	}
}

// TestBundleSetApply checks the Apply hook: it receives the bundles in use
// after each reload, and none once they expired.
func TestBundleSetApply(t *testing.T) {
	key, _ := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.json"), signPredictionWith(t, key, "debian", same, policyTime.Add(time.Hour)), 0o600); err != nil {
		t.Fatal(err)
	}
	trust := bundle.NewTrustStore()
	if err := trust.Add("debian", key.Public()); err != nil {
		t.Fatal(err)
	}
	var got []*bundle.Verified
	calls := 0
	set := &BundleSet{
		Loader:  &bundle.Loader{Trust: trust, Now: func() time.Time { return policyTime }},
		Sources: []string{dir},
		Apply:   func(v []*bundle.Verified) error { got, calls = v, calls+1; return nil },
	}
	if _, err := set.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || len(got) != 1 {
		t.Fatalf("after the first reload: %d calls, %d bundles; want 1 and 1", calls, len(got))
	}
	set.Loader.Now = func() time.Time { return policyTime.Add(2 * time.Hour) }
	if _, err := set.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls != 2 || len(got) != 0 {
		t.Errorf("after expiry: %d calls, %d bundles; want 2 and 0", calls, len(got))
	}
}

// TestSetIMAPolicy checks that SetIMAPolicy replaces IMAOptions.Policy,
// including with nil.
func TestSetIMAPolicy(t *testing.T) {
	initial, replacement := &ima.Policy{}, &ima.Policy{}
	b := &AttestBackend{IMA: IMAOptions{Policy: initial}}
	if b.imaPolicy() != initial {
		t.Fatal("imaPolicy does not return IMAOptions.Policy before SetIMAPolicy")
	}
	b.SetIMAPolicy(replacement)
	if b.imaPolicy() != replacement {
		t.Error("imaPolicy does not return the replacement")
	}
	b.SetIMAPolicy(nil)
	if b.imaPolicy() != nil {
		t.Error("imaPolicy does not return nil after SetIMAPolicy(nil)")
	}
}
