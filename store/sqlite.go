package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
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
	*sqlStore
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
	s := &SQLite{&sqlStore{db: db, now: now, d: dialect{isConflict: isSQLiteConstraint}}}
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
	// _txlock=immediate takes SQLite's write lock at BEGIN, so two
	// processes opening the same file migrate one after the other.
	return s.tx(ctx, func(tx *sql.Tx) error {
		return applyMigrations(ctx, tx, migrations)
	})
}

// applyMigrations brings the schema in tx from its stored version to
// len(list). The caller makes sure no other process migrates at the same
// time.
func applyMigrations(ctx context.Context, tx *sql.Tx, list []string) error {
	var version int
	err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if version > len(list) {
		return fmt.Errorf("database schema version %d is newer than this build supports (%d): upgrade vouch", version, len(list))
	}
	for i := version; i < len(list); i++ {
		if _, err := tx.ExecContext(ctx, list[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if version == len(list) {
		return nil
	}
	// The literal keeps the statement free of placeholders, whose syntax
	// differs between SQLite and PostgreSQL.
	_, err = tx.ExecContext(ctx, fmt.Sprintf(`UPDATE schema_version SET version = %d`, len(list)))
	return err
}

func isSQLiteConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
	}
	return false
}

var _ Store = (*SQLite)(nil)
