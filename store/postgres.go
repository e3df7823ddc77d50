package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// postgresMigrations are applied in order; the schema version is their
// count. Never edit an applied migration: append a new one.
//
// The tables match the SQLite schema column for column. Times are Unix
// nanoseconds in BIGINT columns, as in SQLite, so that no precision is
// lost (TIMESTAMPTZ keeps microseconds). Keys use the "C" collation, so
// ORDER BY sorts bytewise as SQLite does, whatever the database's locale.
var postgresMigrations = []string{
	`CREATE TABLE machines (
		name TEXT COLLATE "C" PRIMARY KEY,
		ek_hash TEXT COLLATE "C" NOT NULL UNIQUE,
		ak_public BYTEA NOT NULL,
		approved BOOLEAN NOT NULL,
		state TEXT NOT NULL,
		reasons TEXT NOT NULL,
		state_since BIGINT NOT NULL,
		last_verdict_at BIGINT NOT NULL,
		last_seen_at BIGINT NOT NULL,
		boot_count BIGINT NOT NULL,
		reset_count BIGINT NOT NULL,
		restart_count BIGINT NOT NULL,
		clock BIGINT NOT NULL,
		eventlog_sha256 TEXT NOT NULL,
		ima_offset BIGINT NOT NULL,
		ima_state BYTEA,
		reference BYTEA,
		reference_approved BOOLEAN NOT NULL,
		facts BYTEA,
		interval_s BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE eks (
		hash TEXT COLLATE "C" PRIMARY KEY,
		public_der BYTEA,
		cert_der BYTEA,
		status TEXT NOT NULL CHECK (status IN ('pinned', 'enrolled', 'revoked')),
		machine TEXT COLLATE "C" NOT NULL,
		note TEXT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE verdicts (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		machine TEXT COLLATE "C" NOT NULL REFERENCES machines(name) ON DELETE CASCADE,
		at BIGINT NOT NULL,
		state TEXT NOT NULL,
		reasons TEXT NOT NULL,
		detail BYTEA,
		boot_count BIGINT NOT NULL,
		ima BYTEA
	);
	CREATE INDEX verdicts_machine ON verdicts(machine, id);
	CREATE TABLE history (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		at BIGINT NOT NULL,
		machine TEXT COLLATE "C" NOT NULL,
		kind TEXT NOT NULL,
		from_state TEXT NOT NULL,
		to_state TEXT NOT NULL,
		detail TEXT NOT NULL
	);
	CREATE INDEX history_machine ON history(machine, id);
	CREATE FUNCTION vouch_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'history is append-only';
	END;
	$$;
	CREATE TRIGGER history_no_update BEFORE UPDATE OR DELETE ON history
		FOR EACH ROW EXECUTE FUNCTION vouch_history_append_only();
	CREATE TRIGGER history_no_truncate BEFORE TRUNCATE ON history
		FOR EACH STATEMENT EXECUTE FUNCTION vouch_history_append_only();`,
}

// migrationLockID is the key of the transaction-scoped advisory lock that
// serializes migrations when several servers open one database at once.
// Advisory locks are per database, so other databases on the same
// PostgreSQL server are not affected.
const migrationLockID = 0x766f756368_0001 // "vouch", 1

// PostgreSQL error codes (SQLSTATE) the store handles.
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

// Postgres is the Store for several verifier replicas sharing one
// PostgreSQL database. Every write runs in a SERIALIZABLE transaction,
// retried on a serialization failure, so concurrent writers see the same
// one-at-a-time order that SQLite's single writer gives.
type Postgres struct {
	*sqlStore
}

// OpenPostgres connects to the PostgreSQL database named by dsn (a
// postgres:// URL or key=value pairs, as libpq accepts them, with the
// libpq environment variables such as PGPASSWORD and PGPASSFILE applied)
// and applies pending migrations. now supplies timestamps; nil means
// time.Now. Errors never contain the password.
func OpenPostgres(ctx context.Context, dsn string, now func() time.Time) (*Postgres, error) {
	if now == nil {
		now = time.Now
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx masks the password in its parse errors only on a best-effort
		// basis, so its message is not repeated here.
		redacted := RedactDSN(dsn)
		if redacted == hiddenDSN {
			redacted = "(not shown, since it may contain a password)"
		}
		return nil, fmt.Errorf("invalid PostgreSQL connection string %s: check its syntax (postgres://user@host:5432/dbname?sslmode=verify-full, or key=value pairs)", redacted)
	}

	where := fmt.Sprintf("database %q on %s as %q", cfg.Database, pgHost(cfg), cfg.User)
	db := stdlib.OpenDB(*cfg)
	// Each store call holds one connection at a time, and callers beyond
	// 16 wait for a free one. The bound keeps several replicas well under
	// PostgreSQL's default max_connections of 100.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)

	s := &Postgres{&sqlStore{db: db, now: now, d: dialect{
		rebind:     postgresPlaceholders,
		isConflict: func(err error) bool { return pgCode(err) == pgUniqueViolation },
		txOptions:  &sql.TxOptions{Isolation: sql.LevelSerializable},
		retryable: func(err error) bool {
			code := pgCode(err)
			return code == pgSerializationFailure || code == pgDeadlockDetected
		},
	}}}

	if err := db.PingContext(ctx); err != nil {
		db.Close()
		// pgx's connect errors repeat the user and database and put each
		// host tried on a line of its own: keep the cause, on one line.
		var ce *pgconn.ConnectError
		if errors.As(err, &ce) && ce.Unwrap() != nil {
			err = &oneLineError{err: ce.Unwrap()}
		}
		return nil, fmt.Errorf("connect to PostgreSQL %s: %w", where, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate PostgreSQL %s: %w", where, err)
	}
	return s, nil
}

func (s *Postgres) migrate(ctx context.Context) error {
	// READ COMMITTED takes a new snapshot for each statement, so after
	// waiting for the lock the statements below see what another server
	// migrated meanwhile.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockID)); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	if err := applyMigrations(ctx, tx, postgresMigrations); err != nil {
		return err
	}
	return tx.Commit()
}

// postgresPlaceholders rewrites the ? placeholders of query as $1, $2, ...
// The store's queries contain no ? inside string literals.
func postgresPlaceholders(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// oneLineError shows err's message with its line breaks replaced.
type oneLineError struct{ err error }

func (e *oneLineError) Error() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(e.err.Error(), "\n", "; ")), " ")
}

func (e *oneLineError) Unwrap() error { return e.err }

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func pgHost(cfg *pgx.ConnConfig) string {
	if strings.HasPrefix(cfg.Host, "/") {
		return "socket " + cfg.Host
	}
	return fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}

// hiddenDSN is the placeholder RedactDSN returns for a connection string
// it cannot redact with certainty.
const hiddenDSN = "(connection string hidden)"

// RedactDSN returns dsn with the password replaced by xxxxx, for logs and
// messages. A postgres:// URL keeps everything else. A string in key=value
// form, or one that does not parse, is reduced to a fixed placeholder,
// because the end of its password cannot be found with certainty.
func RedactDSN(dsn string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return hiddenDSN
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return hiddenDSN
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	for key := range q {
		if strings.EqualFold(key, "password") || strings.EqualFold(key, "sslpassword") {
			q.Set(key, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

var _ Store = (*Postgres)(nil)
