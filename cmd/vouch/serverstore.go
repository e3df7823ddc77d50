package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/vouch-attest/vouch/store"
	"github.com/vouch-attest/vouch/verifier"
)

// openServerStore opens the verifier's database: the PostgreSQL database
// named by database when it is set, or else the SQLite file in dataDir.
// Messages and logs show database with its password masked.
func openServerStore(ctx context.Context, log *slog.Logger, database, dataDir string) (store.Store, error) {
	if database == "" {
		path, _ := verifier.DataDirFiles(dataDir)
		st, err := store.OpenSQLite(ctx, path, nil)
		if err != nil {
			return nil, withExitCode(exitUnavailable, err)
		}
		log.Info("opened database", "backend", "sqlite", "path", path)
		return st, nil
	}
	if err := checkDatabaseFlag(database); err != nil {
		return nil, err
	}
	if u, err := url.Parse(database); err == nil {
		if _, has := u.User.Password(); has || u.Query().Has("password") {
			log.Warn("the --database URL contains a password, which other users of this machine can read in the process list: put it in PGPASSFILE or PGPASSWORD instead")
		}
	}
	st, err := store.OpenPostgres(ctx, database, nil)
	if err != nil {
		return nil, withExitCode(exitUnavailable, fmt.Errorf("%w: check --database and that the PostgreSQL server accepts this role", err))
	}
	log.Info("opened database", "backend", "postgres", "database", store.RedactDSN(database))
	return st, nil
}

// checkDatabaseFlag rejects a --database value that is not a PostgreSQL
// URL, before the server creates anything in its data directory.
func checkDatabaseFlag(database string) error {
	if database == "" || strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://") {
		return nil
	}
	return withExitCode(exitUsage, fmt.Errorf("invalid --database %s: give a postgres:// URL such as postgres://vouch@db.example/vouch?sslmode=verify-full, or leave it empty for SQLite in --data-dir", store.RedactDSN(database)))
}
