// Package pgtest gives tests a PostgreSQL database: the server named by
// VOUCH_TEST_POSTGRES, or else a throwaway server that it starts on first
// use with initdb and pg_ctl, listening only on a Unix socket in a
// temporary directory. Each test gets a schema of its own.
//
// A test binary that uses it calls Stop from TestMain after m.Run, so that
// the throwaway server stops with the binary.
//
// NOTE: a test binary that is killed (by go test's -timeout, say) leaves
// its throwaway server running. Stop it with
// pg_ctl stop -D /tmp/vouch-pg-*/data, as the postgres user when root.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// Environment variables of the PostgreSQL tests.
const (
	// DSNEnv names a PostgreSQL database (a postgres:// URL) the tests
	// may use. Each test creates its own schema in it and drops it
	// afterwards, so the role needs the CREATE privilege on the database.
	DSNEnv = "VOUCH_TEST_POSTGRES"
	// RequireEnv set to 1 turns a skipped PostgreSQL test into a
	// failure, so that CI cannot pass without running them.
	RequireEnv = "VOUCH_REQUIRE_POSTGRES"
)

// server is the PostgreSQL server of this test binary.
var server postgresServer

// NewSchema creates an empty schema for t and returns a DSN whose
// search_path selects it. The schema is dropped when t ends. NewSchema
// skips t when no server is available, or fails it when
// VOUCH_REQUIRE_POSTGRES=1.
func NewSchema(t testing.TB) string {
	t.Helper()
	return server.newSchema(t)
}

// CrashAndRestart stops the throwaway server the way a crash does
// (pg_ctl's immediate mode: no checkpoint, recovery from the WAL at the
// next start) and starts it again. It returns false, and does nothing,
// for a server named by VOUCH_TEST_POSTGRES.
func CrashAndRestart(t testing.TB) bool {
	t.Helper()
	return server.crashAndRestart(t)
}

// Stop stops a throwaway server and removes its directory.
func Stop() { server.stop() }

type postgresServer struct {
	once sync.Once
	// dsn reaches the server's maintenance database. It is empty when no
	// server is available, and then unavailable contains the reason.
	dsn         string
	unavailable string

	// The fields below are set for a server these tests started.
	bin     string   // directory of initdb and pg_ctl
	dataDir string   // cluster directory
	runAs   []string // command prefix that runs a program as the cluster's owner
	tempDir string

	schemas atomic.Int64
}

// adminDSN returns the server's DSN, starting the server on first use. It
// skips t when no server is available, or fails it when
// VOUCH_REQUIRE_POSTGRES=1.
func (p *postgresServer) adminDSN(t testing.TB) string {
	t.Helper()
	p.once.Do(p.start)
	if p.dsn == "" {
		msg := "PostgreSQL tests skipped: " + p.unavailable +
			". Set " + DSNEnv + " to a postgres:// URL, or put initdb and pg_ctl on PATH"
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg + " (" + RequireEnv + "=1 makes this an error)")
		}
		t.Skip(msg)
	}
	return p.dsn
}

func (p *postgresServer) newSchema(t testing.TB) string {
	t.Helper()
	admin := p.adminDSN(t)
	name := fmt.Sprintf("vouch_test_%d_%d", os.Getpid(), p.schemas.Add(1))
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE SCHEMA ` + name); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			t.Error(err)
			return
		}
		defer db.Close()
		if _, err := db.Exec(`DROP SCHEMA ` + name + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return withSearchPath(t, admin, name)
}

func withSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", DSNEnv)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func (p *postgresServer) start() {
	if dsn := os.Getenv(DSNEnv); dsn != "" {
		p.dsn = dsn
		return
	}
	bin, err := findPostgresBin()
	if err != nil {
		p.unavailable = err.Error()
		return
	}
	p.bin = bin
	if err := p.startCluster(); err != nil {
		p.unavailable = "could not start a throwaway server: " + err.Error()
		if p.dsn == "" && p.dataDir != "" {
			p.run("pg_ctl", "stop", "-D", p.dataDir, "-m", "immediate")
		}
		p.dataDir = ""
		p.dsn = ""
		p.stop()
	}
}

// findPostgresBin returns the directory holding initdb and pg_ctl: the one
// on PATH, or else the newest /usr/lib/postgresql/*/bin, where Debian's
// packages put them.
func findPostgresBin() (string, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(initdb), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", errors.New("initdb and pg_ctl are neither on PATH nor in /usr/lib/postgresql/*/bin")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// startCluster creates a cluster in a new temporary directory and starts
// a server that listens only on a Unix socket in that directory.
// PostgreSQL refuses to run as root, so as root the cluster belongs to
// the postgres user and its programs run through runuser.
func (p *postgresServer) startCluster() error {
	dir, err := os.MkdirTemp("", "vouch-pg-")
	if err != nil {
		return err
	}
	p.tempDir = dir

	if os.Geteuid() == 0 {
		owner, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root, and there is no postgres user to own the cluster: %w", err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return fmt.Errorf("running as root, and runuser is missing: %w", err)
		}
		uid, _ := strconv.Atoi(owner.Uid)
		gid, _ := strconv.Atoi(owner.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
		p.runAs = []string{runuser, "-u", "postgres", "--"}
	}

	p.dataDir = filepath.Join(dir, "data")
	// A linguistic default collation, as production databases often
	// have, makes ORDER BY differ from byte order unless the schema sets
	// the "C" collation. ICU locales need PostgreSQL 15 built with
	// ICU, so initdb falls back to the C.UTF-8 locale.
	initdb := []string{"-D", p.dataDir, "-U", "vouch", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"}
	out, err := p.run("initdb", append(initdb, "--locale-provider=icu", "--icu-locale=en-US")...)
	if err != nil {
		os.RemoveAll(p.dataDir)
		out, err = p.run("initdb", initdb...)
	}
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}

	if err := p.pgCtl("start", "-o", p.serverOptions()); err != nil {
		return err
	}
	p.dsn = (&url.URL{Scheme: "postgres", User: url.User("vouch"), Path: "/postgres",
		RawQuery: url.Values{"host": {dir}, "sslmode": {"disable"}}.Encode()}).String()
	return nil
}

// serverOptions listens on a Unix socket in the temporary directory and
// on no TCP address. fsync=off halves the store tests' time, and the
// crash test kills processes, not the machine, so what PostgreSQL wrote
// stays in the page cache. A benchmark run keeps fsync on, so that its
// figures include the flush to disk at each commit, as SQLite's do.
func (p *postgresServer) serverOptions() string {
	fsync := "off"
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		fsync = "on"
	}
	return fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories='%s' -c fsync=%s -c max_connections=200", p.tempDir, fsync)
}

func (p *postgresServer) run(program string, args ...string) ([]byte, error) {
	argv := append(slices.Clone(p.runAs), filepath.Join(p.bin, program))
	argv = append(argv, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
}

func (p *postgresServer) pgCtl(action string, args ...string) error {
	argv := append([]string{action, "-D", p.dataDir, "-w", "-l", filepath.Join(p.tempDir, "server.log")}, args...)
	out, err := p.run("pg_ctl", argv...)
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s%s", action, err, out, p.logTail())
	}
	return nil
}

func (p *postgresServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.tempDir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if len(b) == 0 {
		return ""
	}
	return "\nserver log:\n" + strings.TrimSpace(string(b))
}

func (p *postgresServer) crashAndRestart(t testing.TB) bool {
	t.Helper()
	if p.dataDir == "" {
		return false
	}
	if err := p.pgCtl("stop", "-m", "immediate"); err != nil {
		t.Fatal(err)
	}
	if err := p.pgCtl("start", "-o", p.serverOptions()); err != nil {
		t.Fatal(err)
	}
	return true
}

func (p *postgresServer) stop() {
	if p.dataDir != "" {
		if err := p.pgCtl("stop", "-m", "fast"); err != nil {
			fmt.Fprintln(os.Stderr, "stop the test PostgreSQL server:", err)
		}
	}
	if p.tempDir != "" {
		os.RemoveAll(p.tempDir)
	}
}
