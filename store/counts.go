package store

import "context"

// StateCounter is implemented by stores that count machines by state
// without reading each machine. The verifier's metrics use it at every
// scrape when the store has it, and read every machine otherwise.
type StateCounter interface {
	// CountByState returns the number of machines in each state. States
	// without machines may be missing.
	CountByState(ctx context.Context) (map[string]int, error)
}

// CountByState implements StateCounter.
func (s *SQLite) CountByState(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM machines GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, err
		}
		counts[state] = n
	}
	return counts, rows.Err()
}
