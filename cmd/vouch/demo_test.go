package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs the README's first command and checks that each step
// reached the state it announces: three machines trusted, a relying party
// verifying a trusted result, and both tampered machines untrusted with
// the reason the demo explains.
func TestDemo(t *testing.T) {
	needSimulator(t)
	out, err := exec.Command(vouchBinary(t), "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("vouch demo: %v\n%s", err, out)
	}
	text := string(out)
	trusted := regexp.MustCompile(`(?m)^(rhel-web|cos-node|ubuntu-db) +trusted `)
	if n := len(trusted.FindAllString(text, -1)); n < 3 {
		t.Errorf("demo lists %d trusted machines after approval, want 3:\n%s", n, text)
	}
	for _, want := range []string{
		"State:     trusted",                // the relying party's verified result
		"[event_unexpected] PCR 4 event 46", // the logged, unapproved application
		"[eventlog_replay_mismatch] PCR 4",  // the unlogged extend
		"== 7. Done",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
}

func TestDemoWorkDirLineSaysDeletion(t *testing.T) {
	if got := workDirLine("/tmp/d", false); !strings.Contains(got, "deleted at the end unless you pass --keep") {
		t.Errorf("without --keep: %q", got)
	}
	if got := workDirLine("/tmp/d", true); !strings.Contains(got, "kept after the demo") {
		t.Errorf("with --keep: %q", got)
	}
}
