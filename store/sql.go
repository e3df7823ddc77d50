package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// dialect holds what differs between the SQL databases behind sqlStore.
type dialect struct {
	// rebind rewrites a query written with ? placeholders into the
	// database's own placeholder syntax. Nil keeps the query as it is.
	rebind func(query string) string
	// isConflict reports whether err is a constraint violation that
	// callers see as ErrConflict.
	isConflict func(err error) bool
	// txOptions are passed to BeginTx for every write transaction.
	txOptions *sql.TxOptions
	// retryable reports whether a transaction that failed with err may
	// succeed when run again (a serialization failure or a deadlock).
	// Nil means never.
	retryable func(err error) bool
}

// maxTxAttempts is the maximum number of attempts at one transaction that
// keeps failing with a retryable error. The last error is returned.
const maxTxAttempts = 10

// sqlStore implements every Store method in SQL that SQLite and
// PostgreSQL both accept once the placeholders are rewritten.
type sqlStore struct {
	db  *sql.DB
	now func() time.Time
	d   dialect
}

func (s *sqlStore) q(query string) string {
	if s.d.rebind == nil {
		return query
	}
	return s.d.rebind(query)
}

// Close closes the database.
func (s *sqlStore) Close() error { return s.db.Close() }

// SchemaVersion returns the number of applied migrations.
func (s *sqlStore) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	return v, err
}

// tx runs fn in one write transaction and commits it. When the dialect
// reports the failure as retryable, fn runs again in a new transaction, so
// fn must not keep state from an earlier attempt.
func (s *sqlStore) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.txOnce(ctx, fn)
		if err == nil || s.d.retryable == nil || !s.d.retryable(err) || attempt == maxTxAttempts {
			return err
		}
		// Back off for a random few milliseconds, growing with each
		// attempt, so that the transactions that collided do not collide
		// again at once.
		backoff := time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

func (s *sqlStore) txOnce(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, s.d.txOptions)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func encodeReasons(r []string) string {
	if r == nil {
		r = []string{}
	}
	b, _ := json.Marshal(r)
	return string(b)
}

func decodeReasons(s string) []string {
	var r []string
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return []string{"store: unreadable reasons"}
	}
	return r
}

// cleanText replaces NUL bytes and invalid UTF-8 with U+FFFD in free text
// (history details, EK notes), which may quote untrusted input.
// PostgreSQL rejects both in a TEXT column, and a rejected history row
// would roll back the verdict it belongs to. Both backends store the same
// cleaned text.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func (s *sqlStore) appendEvent(ctx context.Context, tx *sql.Tx, ev Event) error {
	if ev.Kind == "" {
		return nil
	}
	at := ev.At
	if at.IsZero() {
		at = s.now()
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO history (at, machine, kind, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?, ?)`),
		unixNano(at), ev.Machine, ev.Kind, ev.From, ev.To, cleanText(ev.Detail))
	if err != nil {
		return fmt.Errorf("append history: %w", err)
	}
	return nil
}

const machineColumns = `name, ek_hash, ak_public, approved, state, reasons, state_since, last_verdict_at,
	last_seen_at, boot_count, reset_count, restart_count, clock, eventlog_sha256, ima_offset, ima_state,
	reference, reference_approved, facts, interval_s, created_at, updated_at`

func machineArgs(m Machine) []any {
	return []any{m.Name, m.EKHash, m.AKPublic, m.Approved, m.State, encodeReasons(m.Reasons),
		unixNano(m.StateSince), unixNano(m.LastVerdictAt), unixNano(m.LastSeenAt), m.BootCount,
		int64(m.ResetCount), int64(m.RestartCount), int64(m.Clock), m.EventLogSHA256, m.IMAOffset,
		m.IMAState, m.Reference, m.ReferenceApproved, m.Facts, m.IntervalS,
		unixNano(m.CreatedAt), unixNano(m.UpdatedAt)}
}

type scanner interface{ Scan(...any) error }

func scanMachine(row scanner) (Machine, error) {
	var m Machine
	var reasons string
	var stateSince, lastVerdict, lastSeen, created, updated int64
	var reset, restart, clock int64
	err := row.Scan(&m.Name, &m.EKHash, &m.AKPublic, &m.Approved, &m.State, &reasons, &stateSince,
		&lastVerdict, &lastSeen, &m.BootCount, &reset, &restart, &clock, &m.EventLogSHA256,
		&m.IMAOffset, &m.IMAState, &m.Reference, &m.ReferenceApproved, &m.Facts, &m.IntervalS,
		&created, &updated)
	if err != nil {
		return m, err
	}
	m.Reasons = decodeReasons(reasons)
	m.StateSince = fromUnixNano(stateSince)
	m.LastVerdictAt = fromUnixNano(lastVerdict)
	m.LastSeenAt = fromUnixNano(lastSeen)
	m.CreatedAt = fromUnixNano(created)
	m.UpdatedAt = fromUnixNano(updated)
	m.ResetCount = uint32(reset)
	m.RestartCount = uint32(restart)
	m.Clock = uint64(clock)
	return m, nil
}

// CreateMachine implements Store.
func (s *sqlStore) CreateMachine(ctx context.Context, m Machine, ek EK, ev Event) error {
	if ek.Hash != m.EKHash {
		return fmt.Errorf("create machine %q: EK hash %s does not match the machine's %s", m.Name, ek.Hash, m.EKHash)
	}
	now := s.now()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now
	}
	m.UpdatedAt = now
	return s.tx(ctx, func(tx *sql.Tx) error {
		var status string
		err := tx.QueryRowContext(ctx, s.q(`SELECT status FROM eks WHERE hash = ?`), ek.Hash).Scan(&status)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case status == EKRevoked:
			return fmt.Errorf("EK %s is revoked: %w", ek.Hash, ErrConflict)
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO machines (`+machineColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`), machineArgs(m)...)
		if err != nil && s.d.isConflict(err) {
			return fmt.Errorf("machine %q or its EK is already enrolled: %w", m.Name, ErrConflict)
		}
		if err != nil {
			return err
		}
		enrolled := ek
		enrolled.Status = EKEnrolled
		enrolled.Machine = m.Name
		if err := s.putEK(ctx, tx, enrolled, now); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, ev)
	})
}

// UpdateMachine implements Store.
func (s *sqlStore) UpdateMachine(ctx context.Context, m Machine, ev Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.updateMachine(ctx, tx, m); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, ev)
	})
}

// updateMachine replaces the row of m.Name. When m.UpdatedAt is set, the
// row must still have that updated_at, so that a write based on a stale
// read (another replica wrote the machine since) fails with ErrConflict
// instead of undoing the other write.
func (s *sqlStore) updateMachine(ctx context.Context, tx *sql.Tx, m Machine) error {
	readAt := unixNano(m.UpdatedAt)
	m.UpdatedAt = s.now()
	args := machineArgs(m)
	// Every column but name and created_at; name and the version read go
	// last for the WHERE.
	res, err := tx.ExecContext(ctx, s.q(`UPDATE machines SET ek_hash=?, ak_public=?, approved=?, state=?, reasons=?,
		state_since=?, last_verdict_at=?, last_seen_at=?, boot_count=?, reset_count=?, restart_count=?, clock=?,
		eventlog_sha256=?, ima_offset=?, ima_state=?, reference=?, reference_approved=?, facts=?, interval_s=?,
		updated_at=? WHERE name=? AND (CAST(? AS BIGINT) = 0 OR updated_at = ?)`), append(append(args[1:20:20], args[21]), m.Name, readAt, readAt)...)
	if err != nil && s.d.isConflict(err) {
		return fmt.Errorf("update machine %q: %w", m.Name, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update machine %q: %w", m.Name, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var exists int
	err = tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM machines WHERE name = ?`), m.Name).Scan(&exists)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("machine %q: %w", m.Name, ErrNotFound)
	case err != nil:
		return fmt.Errorf("update machine %q: %w", m.Name, err)
	}
	return fmt.Errorf("machine %q was changed by another writer after it was read: read it again and retry: %w", m.Name, ErrConflict)
}

// RecordVerdict implements Store.
func (s *sqlStore) RecordVerdict(ctx context.Context, m Machine, v Verdict, ev Event) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.updateMachine(ctx, tx, m); err != nil {
			return err
		}
		at := v.At
		if at.IsZero() {
			at = s.now()
		}
		err := tx.QueryRowContext(ctx, s.q(`INSERT INTO verdicts (machine, at, state, reasons, detail, boot_count, ima) VALUES (?,?,?,?,?,?,?) RETURNING id`),
			m.Name, unixNano(at), v.State, encodeReasons(v.Reasons), v.Detail, v.BootCount, v.IMA).Scan(&id)
		if err != nil {
			return fmt.Errorf("insert verdict: %w", err)
		}
		return s.appendEvent(ctx, tx, ev)
	})
	return id, err
}

// DeleteMachine implements Store.
func (s *sqlStore) DeleteMachine(ctx context.Context, name string, ev Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var ekHash string
		err := tx.QueryRowContext(ctx, s.q(`SELECT ek_hash FROM machines WHERE name = ?`), name).Scan(&ekHash)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("machine %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM machines WHERE name = ?`), name); err != nil {
			return err
		}
		// A forgotten machine's EK may enroll again; a revoked one may not.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE eks SET status = 'pinned', machine = '', updated_at = ? WHERE hash = ? AND status = 'enrolled'`),
			unixNano(s.now()), ekHash); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, ev)
	})
}

// Machine implements Store.
func (s *sqlStore) Machine(ctx context.Context, name string) (Machine, error) {
	m, err := scanMachine(s.db.QueryRowContext(ctx, s.q(`SELECT `+machineColumns+` FROM machines WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("machine %q: %w", name, ErrNotFound)
	}
	return m, err
}

// MachineByEK implements Store.
func (s *sqlStore) MachineByEK(ctx context.Context, ekHash string) (Machine, error) {
	m, err := scanMachine(s.db.QueryRowContext(ctx, s.q(`SELECT `+machineColumns+` FROM machines WHERE ek_hash = ?`), ekHash))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("machine with EK %s: %w", ekHash, ErrNotFound)
	}
	return m, err
}

// Machines implements Store.
func (s *sqlStore) Machines(ctx context.Context) ([]Machine, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+machineColumns+` FROM machines ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Machine
	for rows.Next() {
		m, err := scanMachine(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (s *sqlStore) putEK(ctx context.Context, tx *sql.Tx, ek EK, now time.Time) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO eks (hash, public_der, cert_der, status, machine, note, updated_at)
		VALUES (?,?,?,?,?,?,?)
		ON CONFLICT(hash) DO UPDATE SET
			public_der = COALESCE(excluded.public_der, eks.public_der),
			cert_der = COALESCE(excluded.cert_der, eks.cert_der),
			status = excluded.status, machine = excluded.machine, note = excluded.note,
			updated_at = excluded.updated_at`),
		strings.ToLower(ek.Hash), ek.PublicDER, ek.CertDER, ek.Status, ek.Machine, cleanText(ek.Note), unixNano(now))
	if err != nil {
		return fmt.Errorf("store EK %s: %w", ek.Hash, err)
	}
	return nil
}

// PutEK implements Store.
func (s *sqlStore) PutEK(ctx context.Context, ek EK, ev Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.putEK(ctx, tx, ek, s.now()); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, ev)
	})
}

const ekColumns = `hash, public_der, cert_der, status, machine, note, updated_at`

func scanEK(row scanner) (EK, error) {
	var ek EK
	var updated int64
	err := row.Scan(&ek.Hash, &ek.PublicDER, &ek.CertDER, &ek.Status, &ek.Machine, &ek.Note, &updated)
	ek.UpdatedAt = fromUnixNano(updated)
	return ek, err
}

// EK implements Store.
func (s *sqlStore) EK(ctx context.Context, hash string) (EK, error) {
	ek, err := scanEK(s.db.QueryRowContext(ctx, s.q(`SELECT `+ekColumns+` FROM eks WHERE hash = ?`), strings.ToLower(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return ek, fmt.Errorf("EK %s: %w", hash, ErrNotFound)
	}
	return ek, err
}

// EKs implements Store.
func (s *sqlStore) EKs(ctx context.Context) ([]EK, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+ekColumns+` FROM eks ORDER BY hash`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []EK
	for rows.Next() {
		ek, err := scanEK(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ek)
	}
	return out, rows.Err()
}

// Verdicts implements Store.
func (s *sqlStore) Verdicts(ctx context.Context, machine string, limit int) ([]Verdict, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, machine, at, state, reasons, detail, boot_count, ima FROM verdicts
		WHERE machine = ? ORDER BY id DESC LIMIT ?`), machine, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Verdict
	for rows.Next() {
		var v Verdict
		var at int64
		var reasons string
		if err := rows.Scan(&v.ID, &v.Machine, &at, &v.State, &reasons, &v.Detail, &v.BootCount, &v.IMA); err != nil {
			return nil, err
		}
		v.At = fromUnixNano(at)
		v.Reasons = decodeReasons(reasons)
		out = append(out, v)
	}
	return out, rows.Err()
}

// History implements Store.
func (s *sqlStore) History(ctx context.Context, machine string, limit int) ([]Event, error) {
	query := `SELECT id, at, machine, kind, from_state, to_state, detail FROM history`
	args := []any{}
	if machine != "" {
		query += ` WHERE machine = ?`
		args = append(args, machine)
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Machine, &e.Kind, &e.From, &e.To, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromUnixNano(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

var _ Store = (*sqlStore)(nil)
