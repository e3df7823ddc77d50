package verifier

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/vouch-attest/vouch/store"
)

// BenchmarkScrape compares a scrape of the metrics with machine counts
// from store.StateCounter (the default) against one that reads every
// machine (--metrics-per-machine). The store has 2000 machines with 8 KiB
// of reference values and 4 KiB of IMA state each.
func BenchmarkScrape(b *testing.B) {
	for _, perMachine := range []bool{false, true} {
		name := "count"
		if perMachine {
			name = "per-machine"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, Config{MetricsPerMachine: perMachine})
			fillStore(b, h.store, 2000)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := h.srv.metrics.registry.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func fillStore(b *testing.B, st *store.SQLite, n int) {
	ctx := context.Background()
	reference := bytes.Repeat([]byte("a"), 8<<10)
	imaState := bytes.Repeat([]byte("b"), 4<<10)
	states := []string{store.StateTrusted, store.StateTrusted, store.StateTrusted, store.StatePending, store.StateUntrusted}
	for i := range n {
		name := fmt.Sprintf("m%05d", i)
		m := store.Machine{
			Name: name, EKHash: fmt.Sprintf("%064x", i), AKPublic: []byte("ak"), State: states[i%len(states)],
			Reference: reference, IMAState: imaState, Facts: []byte(`{"hostname":"` + name + `.example"}`),
		}
		if err := st.CreateMachine(ctx, m, store.EK{Hash: m.EKHash}, store.Event{}); err != nil {
			b.Fatal(err)
		}
	}
}
