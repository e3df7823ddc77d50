package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vouch-attest/vouch/internal/pgtest"
)

// benchBackends runs bench against a fresh database of each backend, as
// sub-benchmarks named sqlite and postgres, so that one run reports both.
func benchBackends(b *testing.B, bench func(b *testing.B, s Store)) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "vouch.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		bench(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		s, err := OpenPostgres(context.Background(), pgtest.NewSchema(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		bench(b, s)
	})
}

// BenchmarkRecordVerdict measures the write of one attestation: the
// machine row, a verdict with a 2 KiB detail and a history entry, in one
// transaction.
func BenchmarkRecordVerdict(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		ctx := context.Background()
		m, ek := testMachine("bench", "be0c")
		if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
			b.Fatal(err)
		}
		detail := make([]byte, 2048)
		b.ResetTimer()
		for i := range b.N {
			m.BootCount = int64(i)
			if _, err := s.RecordVerdict(ctx, m, Verdict{State: StateTrusted, Detail: detail}, Event{Machine: "bench", Kind: "state"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMachine measures the read of one machine among 1,000.
func BenchmarkMachine(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		ctx := context.Background()
		for i := range 1000 {
			m, ek := testMachine(fmt.Sprintf("m%04d", i), fmt.Sprintf("ek%04d", i))
			if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := range b.N {
			if _, err := s.Machine(ctx, fmt.Sprintf("m%04d", i%1000)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
