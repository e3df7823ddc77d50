package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/verifier"
)

// TestServerPolicyAllowSHA1Flag: --policy-insecure-allow-sha1 reaches the
// first-boot policy, which otherwise rejects SHA-1-only boots.
func TestServerPolicyAllowSHA1Flag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--policy-insecure-allow-sha1"}, true},
	} {
		var flags serverPolicyFlags
		cmd := &cobra.Command{Use: "server"}
		flags.register(cmd)
		if err := cmd.ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		pol, set, err := flags.build(context.Background(), slog.New(slog.DiscardHandler))
		if err != nil || set != nil {
			t.Fatalf("build with %v: %v, bundle set %v", tt.args, err, set)
		}
		firstBoot, ok := pol.(verifier.FirstBootPolicy)
		if !ok {
			t.Fatalf("build with %v returned %T, want verifier.FirstBootPolicy", tt.args, pol)
		}
		if firstBoot.InsecureAllowSHA1 != tt.want {
			t.Errorf("build with %v: InsecureAllowSHA1 = %v, want %v", tt.args, firstBoot.InsecureAllowSHA1, tt.want)
		}
	}
}

// TestServerPolicyTrustKeyBounded: a --trust key that is an endless
// device fails at the size limit instead of hanging the server at start.
func TestServerPolicyTrustKeyBounded(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	flags := serverPolicyFlags{trust: []string{"acme=/dev/zero"}}
	_, err := flags.trustStore()
	if err == nil || !strings.Contains(err.Error(), "/dev/zero is larger than the limit of") || !strings.Contains(err.Error(), "--trust acme=/dev/zero") {
		t.Errorf("trustStore with /dev/zero = %v, want the size limit and the flag named", err)
	}
}
