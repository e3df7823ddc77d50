package store

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

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

// BenchmarkRecordVerdictInterleaved writes one verdict to SQLite and one
// to PostgreSQL in turn, times each write, and reports the medians and
// their ratio, PostgreSQL over SQLite, as median-ratio. On a machine
// shared with other work the ratio of two medians taken side by side
// moves far less than the times of two separate sub-benchmarks.
func BenchmarkRecordVerdictInterleaved(b *testing.B) {
	ctx := context.Background()
	lite, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "vouch.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer lite.Close()
	pg, err := OpenPostgres(ctx, pgtest.NewSchema(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()

	stores := []Store{lite, pg}
	m, ek := testMachine("bench", "be0c")
	for _, s := range stores {
		if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
			b.Fatal(err)
		}
	}

	detail := make([]byte, 2048)
	times := [2][]time.Duration{make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)}
	b.ResetTimer()
	for i := range b.N {
		m.BootCount = int64(i)
		for j, s := range stores {
			start := time.Now()
			if _, err := s.RecordVerdict(ctx, m, Verdict{State: StateTrusted, Detail: detail}, Event{Machine: "bench", Kind: "state"}); err != nil {
				b.Fatal(err)
			}
			times[j] = append(times[j], time.Since(start))
		}
	}
	b.StopTimer()

	sqliteMedian, pgMedian := median(times[0]), median(times[1])
	b.ReportMetric(float64(sqliteMedian.Microseconds()), "sqlite-µs")
	b.ReportMetric(float64(pgMedian.Microseconds()), "postgres-µs")
	b.ReportMetric(float64(pgMedian)/float64(sqliteMedian), "median-ratio")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
