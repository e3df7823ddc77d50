package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/internal/pgtest"
)

// copyServerFiles copies the files of one replica's data directory (TLS
// files, admin token, result signing key) to another's, so that agents pin
// one fingerprint, administrators use one token and relying parties check
// one key for both.
func copyServerFiles(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplicasSharePostgres runs two vouch servers on one PostgreSQL
// database, as two replicas behind a load balancer that routes each agent
// to one of them. Replica b reads what a recorded. When a is killed with
// SIGKILL, the agent moves to b and goes on without enrolling again, and
// a restarted a reads b's verdicts and revocation.
func TestReplicasSharePostgres(t *testing.T) {
	dsn := pgtest.NewSchema(t)
	dir := t.TempDir()
	sw := startSwtpm(t, filepath.Join(dir, "swtpm"))
	bootLog := demoLog(t, dir, "ubuntu-2104-no-secure-boot.bin")
	flags := []string{"--ek-mode", "tofu", "--insecure-auto-approve-reference", "--database", dsn}

	dataA, dataB := filepath.Join(dir, "data-a"), filepath.Join(dir, "data-b")
	a := startServer(t, dataA, "", flags...)
	copyServerFiles(t, dataA, dataB)
	b := startServer(t, dataB, "", flags...)
	if b.fingerprint != a.fingerprint {
		t.Fatalf("replica fingerprints differ: %s and %s", a.fingerprint, b.fingerprint)
	}
	keyA, errA := os.ReadFile(filepath.Join(dataA, "result-key.pub"))
	keyB, errB := os.ReadFile(filepath.Join(dataB, "result-key.pub"))
	if errA != nil || errB != nil || string(keyA) != string(keyB) {
		t.Errorf("replicas sign results with different keys (%v, %v)", errA, errB)
	}
	if _, err := os.Stat(filepath.Join(dataA, "vouch.db")); !os.IsNotExist(err) {
		t.Errorf("replica a created a SQLite database beside --database (stat error %v)", err)
	}

	agent := startAgent(t, a, dir, "alpha", sw.spec(), bootLog)
	first := a.waitFor(t, "alpha", "trusted through replica a", stateIs(api.StateTrusted))
	seen := b.waitFor(t, "alpha", "trusted as seen by replica b", stateIs(api.StateTrusted))
	if seen.EKSHA256 != first.EKSHA256 || seen.BootCount != 1 {
		t.Errorf("replica b sees EK %s, %d boots; want %s, 1", seen.EKSHA256, seen.BootCount, first.EKSHA256)
	}
	agent.stop()

	// Replica a dies. The agent, now routed to b, keeps its enrollment.
	a.proc.kill9()
	since := time.Now()
	agent = startAgent(t, b, dir, "alpha", sw.spec(), bootLog)
	d := b.waitFor(t, "alpha", "judged by replica b", func(d api.MachineDetail) bool {
		return d.Verdict != nil && d.Verdict.At.After(since)
	})
	if d.State != api.StateTrusted || d.BootCount != 1 || d.EKSHA256 != first.EKSHA256 {
		t.Errorf("after the move to replica b: state %s, %d boots, EK %s; want trusted, 1, %s", d.State, d.BootCount, d.EKSHA256, first.EKSHA256)
	}
	if strings.Contains(agent.output(), "enrollment challenge") {
		t.Errorf("the agent enrolled again on replica b:\n%s", tail(agent.output(), 20))
	}
	agent.stop()

	// A revocation through b holds on a restarted a: the TPM cannot
	// enroll there under another name.
	b.admin(t, http.MethodPost, "/v1/machines/alpha/revoke", api.RevokeRequest{Reason: "replica test"})
	a2 := startServer(t, dataA, a.addr, flags...)
	got, err := a2.machine(t, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != api.StateUntrusted || !slices.Contains(got.ReasonCodes, "revoked") {
		t.Errorf("restarted replica a sees state %s, reasons %v; want untrusted and revoked", got.State, got.ReasonCodes)
	}
	if got.Verdict == nil || got.Verdict.At.Before(d.Verdict.At) {
		t.Errorf("restarted replica a lacks replica b's verdict of %s: %+v", d.Verdict.At, got.Verdict)
	}
	var hist []api.HistoryEvent
	if _, err := a2.client.Do(context.Background(), http.MethodGet, "/v1/history?limit=1000", nil, &hist); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, h := range hist {
		kinds[h.Kind] = true
	}
	if !kinds["enrolled"] || !kinds["revoked"] || !kinds["ek-revoked"] {
		t.Errorf("history through replica a lacks enrolled, revoked or ek-revoked: %+v", hist)
	}
	g := startAgent(t, a2, dir, "gamma", sw.spec(), bootLog)
	if code := g.exited(t, 20*time.Second); code != exitMismatch || !strings.Contains(g.output(), api.CodeEKRevoked) {
		t.Errorf("revoked EK on the other replica: exit %d, output:\n%s", code, tail(g.output(), 10))
	}
}

// TestServerDatabaseFlag checks the --database errors: a value that is not
// a postgres:// URL is a usage error that leaves --data-dir uncreated, and
// a server that cannot be reached is reported without the URL's password.
func TestServerDatabaseFlag(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	_, stderr, code := runBinary(t, "", "server", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--database", filepath.Join(dir, "vouch.db"))
	if code != exitUsage || !strings.Contains(stderr, "invalid --database") {
		t.Errorf("--database with a file path: exit %d, stderr %q; want %d and invalid --database", code, stderr, exitUsage)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("a rejected --database created the data directory (stat error %v)", err)
	}

	const secret = "s3cretPW"
	// Nothing listens on port 1 of the loopback address.
	stdout, stderr, code := runBinary(t, "", "server", "--data-dir", dataDir, "--listen", "127.0.0.1:0",
		"--database", "postgres://vouch:"+secret+"@127.0.0.1:1/vouch?connect_timeout=5")
	if code != exitUnavailable || !strings.Contains(stderr, "connect to PostgreSQL") {
		t.Errorf("unreachable database: exit %d, stderr %q; want %d and connect to PostgreSQL", code, stderr, exitUnavailable)
	}
	if !strings.Contains(stderr, "contains a password") {
		t.Errorf("no warning about the password in the URL: %q", stderr)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Errorf("the output shows the password:\n%s%s", stdout, stderr)
	}
}
