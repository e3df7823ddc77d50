package store

import (
	"context"
	"fmt"
	"testing"
)

func TestCountByState(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if counts, err := s.CountByState(ctx); err != nil || len(counts) != 0 {
		t.Fatalf("empty store: %v, %v", counts, err)
	}
	states := []string{StatePending, StateTrusted, StateTrusted, StateUntrusted, StateTrusted}
	for i, state := range states {
		m, ek := testMachine(fmt.Sprintf("m%d", i), fmt.Sprintf("ek%02d", i))
		if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
			t.Fatal(err)
		}
		m.State = state
		if err := s.UpdateMachine(ctx, m, Event{}); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := s.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{StatePending: 1, StateTrusted: 3, StateUntrusted: 1}
	for state, n := range want {
		if counts[state] != n {
			t.Errorf("%s: %d machines, want %d", state, counts[state], n)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
}
