package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestUpgradeFromSchema1 upgrades a database written with the first
// schema, the one before verdicts had an IMA part, and checks that every
// machine, EK, verdict and history entry is still there.
func TestUpgradeFromSchema1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vouch.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano()
	for _, stmt := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		migrations[0],
		`INSERT INTO schema_version VALUES (1)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO machines (`+machineColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		"web1", "aa01", []byte("ak"), true, StateTrusted, `["x"]`, at, at, at, 3, 7, 1, 99, "beef", 42,
		[]byte(`{"reset_count":7,"entries":42}`), []byte(`{"bank":"sha256"}`), true, []byte(`{}`), 0, at, at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO eks (hash, public_der, cert_der, status, machine, note, updated_at) VALUES ('aa01', x'01', NULL, 'enrolled', 'web1', 'n', ?)`, at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO verdicts (machine, at, state, reasons, detail, boot_count) VALUES ('web1', ?, 'trusted', '[]', '[]', 3)`, at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO history (at, machine, kind, from_state, to_state, detail) VALUES (?, 'web1', 'state', 'pending', 'trusted', 'verified')`, at); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, len(migrations))
	}
	m, err := s.Machine(ctx, "web1")
	if err != nil {
		t.Fatal(err)
	}
	if m.IMAOffset != 42 || string(m.IMAState) != `{"reset_count":7,"entries":42}` || m.BootCount != 3 || m.ResetCount != 7 ||
		string(m.Reference) != `{"bank":"sha256"}` || !m.ReferenceApproved || m.EventLogSHA256 != "beef" {
		t.Errorf("machine after upgrade = %+v", m)
	}
	if ek, err := s.EK(ctx, "aa01"); err != nil || ek.Status != EKEnrolled || ek.Machine != "web1" {
		t.Errorf("EK after upgrade = %+v, %v", ek, err)
	}
	vs, err := s.Verdicts(ctx, "web1", 10)
	if err != nil || len(vs) != 1 || vs[0].State != StateTrusted || vs[0].IMA != nil || vs[0].BootCount != 3 {
		t.Fatalf("verdicts after upgrade = %+v, %v", vs, err)
	}
	hist, err := s.History(ctx, "web1", 10)
	if err != nil || len(hist) != 1 || hist[0].Detail != "verified" {
		t.Fatalf("history after upgrade = %+v, %v", hist, err)
	}
	// New verdicts carry their IMA part.
	if _, err := s.RecordVerdict(ctx, m, Verdict{Machine: "web1", State: StateTrusted, Detail: []byte("[]"), BootCount: 3, IMA: []byte(`{"entries":50}`)}, Event{}); err != nil {
		t.Fatal(err)
	}
	vs, err = s.Verdicts(ctx, "web1", 10)
	if err != nil || len(vs) != 2 || string(vs[0].IMA) != `{"entries":50}` || vs[1].IMA != nil {
		t.Fatalf("verdicts after a new one = %+v, %v", vs, err)
	}
	// The history stays append-only.
	if _, err := s.db.Exec(`DELETE FROM history`); err == nil {
		t.Error("history rows could be deleted after the upgrade")
	}
	// Opening again applies nothing more.
	s.Close()
	s2, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}
