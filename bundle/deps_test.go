package bundle

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly asserts that bundle, which parses untrusted
// bundles on verifiers and publishers' machines alike, links nothing but
// the standard library and the module's stdlib-only JSON checker.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		// strictjson is stdlib-only and asserts so in its own test.
		if dep != "github.com/vouch-attest/vouch/bundle" && dep != "github.com/vouch-attest/vouch/internal/strictjson" {
			t.Errorf("bundle depends on %s", dep)
		}
	}
}
