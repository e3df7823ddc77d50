package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDeviceOrArtifactDependencies asserts that policy, which runs in the
// verifier, links no TPM device code and no artifact parsers: it judges
// verified evidence only.
func TestNoDeviceOrArtifactDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages, expected the full dependency list", len(deps))
	}
	forbidden := []string{
		"github.com/vouch-attest/vouch/tpm",
		"github.com/vouch-attest/vouch/predict",
		"github.com/vouch-attest/vouch/verifier",
		"github.com/google/go-tpm-tools",
		"github.com/google/go-tpm/tpm2/transport/simulator",
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("policy depends on %s", dep)
			}
		}
	}
}
