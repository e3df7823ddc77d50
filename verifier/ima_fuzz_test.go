package verifier

import (
	"os"
	"testing"

	"github.com/vouch-attest/vouch/ima"
)

// FuzzVerifyIMA feeds untrusted IMA chunks, from any offset, to the
// verifier with and without an earlier state and a policy. It must return
// a result or an operational error, never panic.
func FuzzVerifyIMA(f *testing.F) {
	raw, err := os.ReadFile("../ima/testdata/hahuri.ima.bin")
	if err != nil {
		f.Fatal(err)
	}
	m := loadIMAMachine(f, "hahuri")
	f.Add(raw, int64(0), false)
	f.Add(encodeEntries(m.entries[:20]), int64(0), true)
	f.Add(encodeEntries(m.entries[20:36]), int64(20), true)
	f.Add([]byte{}, int64(36), true)
	f.Add(raw[:100], int64(5), false)

	allow := ima.NewAllowlist()
	pol := &ima.Policy{Rules: []ima.Rule{{Name: "allowlist", Allowlist: allow}}}
	q := m.quote(f, 20, 1)
	first, err := (&AttestBackend{}).VerifyIMA(nil, 0, encodeEntries(m.entries[:20]), q)
	if err != nil || len(first.Failures) != 0 {
		f.Fatalf("seed state: %+v, %v", first, err)
	}
	f.Fuzz(func(t *testing.T, chunk []byte, offset int64, withState bool) {
		var state []byte
		if withState {
			state = first.State
		}
		for _, b := range []*AttestBackend{{}, {IMA: IMAOptions{Policy: pol}}} {
			res, err := b.VerifyIMA(state, offset, chunk, q)
			if err == nil && res == nil {
				t.Fatal("no result and no error")
			}
		}
	})
}
