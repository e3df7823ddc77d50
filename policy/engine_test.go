package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/bundle"
)

func TestEngineLearnApproveEvaluate(t *testing.T) {
	ev := loadCorpus(t, "shim-sbms")
	e, err := NewEngine(Rules{SecureBoot: &SecureBootRule{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetBundles([]*bundle.Verified{predictedBundle(t, func(s string) string { return s })}); err != nil {
		t.Fatal(err)
	}

	// First boot: the baseline awaits approval, so firmware events fail.
	stored, err := e.Learn("vm1", ev, nil, testTime, "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.Evaluate(stored, ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted || len(v.Notes) != 1 {
		t.Errorf("unapproved baseline: trusted %v, notes %v", v.Trusted, v.Notes)
	}

	stored, err = Approve(stored, "alice", testTime, "checked the firmware version")
	if err != nil {
		t.Fatal(err)
	}
	v, err = e.Evaluate(stored, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Trusted || len(v.Unmatched) != 0 {
		t.Errorf("approved baseline: %v", v.Failures())
	}

	// A later firmware update is the next revision, unapproved.
	next, err := e.Learn("vm1", ev, stored, testTime, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseBaseline(next)
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision != 2 || b.Approved() {
		t.Errorf("next revision %d approved %v", b.Revision, b.Approved())
	}

	// Trust on first use approves at once.
	tofu, err := e.Learn("vm2", ev, nil, testTime, "tofu")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := e.Evaluate(tofu, ev); err != nil || !v.Trusted {
		t.Errorf("trust on first use: %v, %v", err, v.Failures())
	}

	// Without bundles, only the firmware events match.
	if err := e.SetBundles(nil); err != nil {
		t.Fatal(err)
	}
	v, err = e.Evaluate(stored, ev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Trusted || !strings.Contains(strings.Join(v.Failures(), "\n"), "grubx64.efi") {
		t.Errorf("without bundles: %v", v.Failures())
	}
	if err := e.SetBundles([]*bundle.Verified{{}}); err == nil {
		t.Error("SetBundles accepted an unverified bundle")
	}
	if _, err := e.Evaluate([]byte("{"), ev); err == nil {
		t.Error("Evaluate accepted a corrupt baseline")
	}
}

func TestEngineRequiredPCRs(t *testing.T) {
	e, err := NewEngine(Rules{QuotedPCRs: &QuotedPCRsRule{PCRs: []int{10}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.RequiredPCRs(nil)
	if err != nil || fmt.Sprint(got) != "[0 1 2 3 4 5 6 7 10]" {
		t.Errorf("without bundles: %v, %v", got, err)
	}
	if err := e.SetBundles([]*bundle.Verified{predictedBundle(t, func(s string) string { return s })}); err != nil {
		t.Fatal(err)
	}
	got, err = e.RequiredPCRs(nil)
	if err != nil || !slices.Contains(got, 4) || !slices.Contains(got, 9) || !slices.Contains(got, 10) {
		t.Errorf("with a bundle: %v, %v", got, err)
	}
	if _, err := e.RequiredPCRs([]byte("{")); err == nil {
		t.Error("RequiredPCRs accepted a corrupt baseline")
	}
}
