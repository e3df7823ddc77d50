package verifier

import (
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
)

// replayAgainst replays the test log against quoted as if a quote had
// verified those values.
func replayAgainst(t *testing.T, quoted attest.PCRValues) *Failure {
	t.Helper()
	q := &QuoteResult{Opaque: &attest.VerifiedQuote{Verified: quoted}}
	_, err := (&AttestBackend{}).ReplayEventLog(readTestLog(t), q)
	f, ok := AsFailure(err)
	if !ok {
		t.Fatalf("replay = %v, want a verification failure", err)
	}
	return f
}

func TestReplayAgainstResetPCRsGivesOneReason(t *testing.T) {
	// A simulator started without --simulate-boot quotes zeros everywhere.
	quoted := attest.PCRValues{}
	for _, alg := range []attest.Algorithm{attest.AlgSHA1, attest.AlgSHA256} {
		for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14} {
			attest.SetPCR(quoted, alg, i, make([]byte, alg.Size()))
		}
	}
	f := replayAgainst(t, quoted)
	if len(f.Reasons) != 1 {
		t.Fatalf("%d reasons, want 1: %+v", len(f.Reasons), f.Reasons)
	}
	r := f.Reasons[0]
	for _, want := range []string{"reset value", "never extended", "--simulate-boot"} {
		if r.Code != ReasonEventLogMismatch || !strings.Contains(r.Message, want) {
			t.Errorf("reason %s %q does not contain %q", r.Code, r.Message, want)
		}
	}
}

func TestReplayMismatchCountsOneEvent(t *testing.T) {
	log, err := eventlog.Parse(readTestLog(t))
	if err != nil {
		t.Fatal(err)
	}
	quoted, err := eventlog.Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	// Find a PCR the log extends exactly once and quote another value for it.
	counts := map[int]int{}
	for _, e := range log.Events {
		if e.Type != eventlog.EV_NO_ACTION {
			counts[int(e.PCR)]++
		}
	}
	pcr := -1
	for i, n := range counts {
		if n == 1 && i != imaPCR {
			pcr = i
		}
	}
	if pcr < 0 {
		t.Fatalf("the test log extends no PCR exactly once: %v", counts)
	}
	for alg := range quoted {
		for i := range quoted[alg] {
			if counts[i] == 0 && i != pcr {
				delete(quoted[alg], i)
			}
		}
		quoted[alg][pcr] = append([]byte(nil), quoted[alg][pcr]...)
		quoted[alg][pcr][0] ^= 1
	}
	f := replayAgainst(t, quoted)
	for _, r := range f.Reasons {
		if !strings.Contains(r.Message, "the log's 1 event for this PCR") {
			t.Errorf("reason %q does not count 1 event in the singular", r.Message)
		}
	}
}
