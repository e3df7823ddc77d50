package attest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDeviceDependencies asserts that the verifier side never links TPM
// device code: not package tpm, not go-tpm's device transports, not the
// simulator. go-tpm's tpm2 package itself imports the transport interface
// package and tpmutil, which open nothing unless called.
func TestNoDeviceDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/vouch-attest/vouch/tpm",
		"github.com/google/go-tpm/tpm2/transport/linuxtpm",
		"github.com/google/go-tpm/tpm2/transport/linuxudstpm",
		"github.com/google/go-tpm/tpm2/transport/tcp",
		"github.com/google/go-tpm/tpm2/transport/simulator",
		"github.com/google/go-tpm/tpm2/transport/windowstpm",
		"github.com/google/go-tpm-tools",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages, expected the full dependency list", len(deps))
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("attest depends on %s", dep)
			}
		}
	}
}
