package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// migrations are applied in order; the schema version is their count. Never
// edit an applied migration: append a new one.
var migrations = []string{
	`CREATE TABLE machines (
		name TEXT PRIMARY KEY,
		ek_hash TEXT NOT NULL UNIQUE,
		ak_public BLOB NOT NULL,
		approved INTEGER NOT NULL,
		state TEXT NOT NULL,
		reasons TEXT NOT NULL,
		state_since INTEGER NOT NULL,
		last_verdict_at INTEGER NOT NULL,
		last_seen_at INTEGER NOT NULL,
		boot_count INTEGER NOT NULL,
		reset_count INTEGER NOT NULL,
		restart_count INTEGER NOT NULL,
		clock INTEGER NOT NULL,
		eventlog_sha256 TEXT NOT NULL,
		ima_offset INTEGER NOT NULL,
		ima_state BLOB,
		reference BLOB,
		reference_approved INTEGER NOT NULL,
		facts BLOB,
		interval_s INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE eks (
		hash TEXT PRIMARY KEY,
		public_der BLOB,
		cert_der BLOB,
		status TEXT NOT NULL CHECK (status IN ('pinned', 'enrolled', 'revoked')),
		machine TEXT NOT NULL,
		note TEXT NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE verdicts (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		machine TEXT NOT NULL REFERENCES machines(name) ON DELETE CASCADE,
		at INTEGER NOT NULL,
		state TEXT NOT NULL,
		reasons TEXT NOT NULL,
		detail BLOB,
		boot_count INTEGER NOT NULL
	);
	CREATE INDEX verdicts_machine ON verdicts(machine, id);
	CREATE TABLE history (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		at INTEGER NOT NULL,
		machine TEXT NOT NULL,
		kind TEXT NOT NULL,
		from_state TEXT NOT NULL,
		to_state TEXT NOT NULL,
		detail TEXT NOT NULL
	);
	CREATE INDEX history_machine ON history(machine, id);
	CREATE TRIGGER history_no_update BEFORE UPDATE ON history
		BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
	CREATE TRIGGER history_no_delete BEFORE DELETE ON history
		BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;`,
	// 2: the IMA part of each verdict (JSON, NULL for verdicts before it).
	`ALTER TABLE verdicts ADD COLUMN ima BLOB;`,
}

// SQLite is the embedded Store. It uses WAL journaling with
// synchronous=FULL, so a committed transaction is on disk before the commit
// returns.
type SQLite struct {
	db  *sql.DB
	now func() time.Time
}

// OpenSQLite opens (creating it if needed) the database file at path and
// applies pending migrations. now supplies timestamps; nil means time.Now.
func OpenSQLite(ctx context.Context, path string, now func() time.Time) (*SQLite, error) {
	if now == nil {
		now = time.Now
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// One writer at a time is what SQLite allows anyway; a single connection
	// also keeps the pragmas above in force for every statement.
	db.SetMaxOpenConns(1)
	s := &SQLite{db: db, now: now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		var version int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if version > len(migrations) {
			return fmt.Errorf("database schema version %d is newer than this build supports (%d): upgrade vouch", version, len(migrations))
		}
		for i := version; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations))
		return err
	})
}

// SchemaVersion returns the number of applied migrations.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	return v, err
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

func (s *SQLite) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
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

func isConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
	}
	return false
}

func (s *SQLite) appendEvent(ctx context.Context, tx *sql.Tx, ev Event) error {
	if ev.Kind == "" {
		return nil
	}
	at := ev.At
	if at.IsZero() {
		at = s.now()
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO history (at, machine, kind, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		unixNano(at), ev.Machine, ev.Kind, ev.From, ev.To, ev.Detail)
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
func (s *SQLite) CreateMachine(ctx context.Context, m Machine, ek EK, ev Event) error {
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
		err := tx.QueryRowContext(ctx, `SELECT status FROM eks WHERE hash = ?`, ek.Hash).Scan(&status)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case status == EKRevoked:
			return fmt.Errorf("EK %s is revoked: %w", ek.Hash, ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO machines (`+machineColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, machineArgs(m)...)
		if isConstraint(err) {
			return fmt.Errorf("machine %q or its EK is already enrolled: %w", m.Name, ErrConflict)
		}
		if err != nil {
			return err
		}
		ek.Status = EKEnrolled
		ek.Machine = m.Name
		if err := putEK(ctx, tx, ek, now); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, ev)
	})
}

// UpdateMachine implements Store.
func (s *SQLite) UpdateMachine(ctx context.Context, m Machine, ev Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.updateMachine(ctx, tx, m); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, ev)
	})
}

func (s *SQLite) updateMachine(ctx context.Context, tx *sql.Tx, m Machine) error {
	m.UpdatedAt = s.now()
	args := machineArgs(m)
	// Every column but name and created_at; name goes last for the WHERE.
	res, err := tx.ExecContext(ctx, `UPDATE machines SET ek_hash=?, ak_public=?, approved=?, state=?, reasons=?,
		state_since=?, last_verdict_at=?, last_seen_at=?, boot_count=?, reset_count=?, restart_count=?, clock=?,
		eventlog_sha256=?, ima_offset=?, ima_state=?, reference=?, reference_approved=?, facts=?, interval_s=?,
		updated_at=? WHERE name=?`, append(append(args[1:20:20], args[21]), m.Name)...)
	if isConstraint(err) {
		return fmt.Errorf("update machine %q: %w", m.Name, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update machine %q: %w", m.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("machine %q: %w", m.Name, ErrNotFound)
	}
	return nil
}

// RecordVerdict implements Store.
func (s *SQLite) RecordVerdict(ctx context.Context, m Machine, v Verdict, ev Event) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.updateMachine(ctx, tx, m); err != nil {
			return err
		}
		at := v.At
		if at.IsZero() {
			at = s.now()
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO verdicts (machine, at, state, reasons, detail, boot_count, ima) VALUES (?,?,?,?,?,?,?)`,
			m.Name, unixNano(at), v.State, encodeReasons(v.Reasons), v.Detail, v.BootCount, v.IMA)
		if err != nil {
			return fmt.Errorf("insert verdict: %w", err)
		}
		id, _ = res.LastInsertId()
		return s.appendEvent(ctx, tx, ev)
	})
	return id, err
}

// DeleteMachine implements Store.
func (s *SQLite) DeleteMachine(ctx context.Context, name string, ev Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var ekHash string
		err := tx.QueryRowContext(ctx, `SELECT ek_hash FROM machines WHERE name = ?`, name).Scan(&ekHash)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("machine %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM machines WHERE name = ?`, name); err != nil {
			return err
		}
		// A forgotten machine's EK may enroll again; a revoked one may not.
		if _, err := tx.ExecContext(ctx, `UPDATE eks SET status = 'pinned', machine = '', updated_at = ? WHERE hash = ? AND status = 'enrolled'`,
			unixNano(s.now()), ekHash); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, ev)
	})
}

// Machine implements Store.
func (s *SQLite) Machine(ctx context.Context, name string) (Machine, error) {
	m, err := scanMachine(s.db.QueryRowContext(ctx, `SELECT `+machineColumns+` FROM machines WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("machine %q: %w", name, ErrNotFound)
	}
	return m, err
}

// MachineByEK implements Store.
func (s *SQLite) MachineByEK(ctx context.Context, ekHash string) (Machine, error) {
	m, err := scanMachine(s.db.QueryRowContext(ctx, `SELECT `+machineColumns+` FROM machines WHERE ek_hash = ?`, ekHash))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("machine with EK %s: %w", ekHash, ErrNotFound)
	}
	return m, err
}

// Machines implements Store.
func (s *SQLite) Machines(ctx context.Context) ([]Machine, error) {
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

func putEK(ctx context.Context, tx *sql.Tx, ek EK, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO eks (hash, public_der, cert_der, status, machine, note, updated_at)
		VALUES (?,?,?,?,?,?,?)
		ON CONFLICT(hash) DO UPDATE SET
			public_der = COALESCE(excluded.public_der, eks.public_der),
			cert_der = COALESCE(excluded.cert_der, eks.cert_der),
			status = excluded.status, machine = excluded.machine, note = excluded.note,
			updated_at = excluded.updated_at`,
		strings.ToLower(ek.Hash), ek.PublicDER, ek.CertDER, ek.Status, ek.Machine, ek.Note, unixNano(now))
	if err != nil {
		return fmt.Errorf("store EK %s: %w", ek.Hash, err)
	}
	return nil
}

// PutEK implements Store.
func (s *SQLite) PutEK(ctx context.Context, ek EK, ev Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := putEK(ctx, tx, ek, s.now()); err != nil {
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
func (s *SQLite) EK(ctx context.Context, hash string) (EK, error) {
	ek, err := scanEK(s.db.QueryRowContext(ctx, `SELECT `+ekColumns+` FROM eks WHERE hash = ?`, strings.ToLower(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return ek, fmt.Errorf("EK %s: %w", hash, ErrNotFound)
	}
	return ek, err
}

// EKs implements Store.
func (s *SQLite) EKs(ctx context.Context) ([]EK, error) {
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
func (s *SQLite) Verdicts(ctx context.Context, machine string, limit int) ([]Verdict, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, machine, at, state, reasons, detail, boot_count, ima FROM verdicts
		WHERE machine = ? ORDER BY id DESC LIMIT ?`, machine, limit)
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
func (s *SQLite) History(ctx context.Context, machine string, limit int) ([]Event, error) {
	query := `SELECT id, at, machine, kind, from_state, to_state, detail FROM history`
	args := []any{}
	if machine != "" {
		query += ` WHERE machine = ?`
		args = append(args, machine)
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, query, args...)
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

var _ Store = (*SQLite)(nil)
