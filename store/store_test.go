package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// The tests in this file run once per backend, as subtests named sqlite
// and postgres, so that both implementations keep the same behavior.

// testDB is one fresh, empty database of a backend.
type testDB struct {
	backend string
	// target is the SQLite file path or the PostgreSQL DSN.
	target string
}

// open opens a new handle on the database, closed when t ends. Several
// handles on one database stand for several verifier replicas.
func (db testDB) open(t *testing.T) Store {
	t.Helper()
	s, err := openStore(context.Background(), db.backend, db.target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openStore(ctx context.Context, backend, target string) (Store, error) {
	switch backend {
	case "sqlite":
		return OpenSQLite(ctx, target, nil)
	case "postgres":
		return OpenPostgres(ctx, target, nil)
	}
	return nil, fmt.Errorf("unknown backend %q", backend)
}

// forEachBackend runs test against a fresh database of each backend.
func forEachBackend(t *testing.T, test func(t *testing.T, db testDB)) {
	t.Run("sqlite", func(t *testing.T) {
		test(t, testDB{backend: "sqlite", target: filepath.Join(t.TempDir(), "vouch.db")})
	})
	t.Run("postgres", func(t *testing.T) {
		test(t, testDB{backend: "postgres", target: pgtest.NewSchema(t)})
	})
}

// rawDB returns the database/sql handle behind s, for statements that
// bypass the Store methods.
func rawDB(t *testing.T, s Store) *sql.DB {
	t.Helper()
	switch s := s.(type) {
	case *SQLite:
		return s.db
	case *Postgres:
		return s.db
	}
	t.Fatalf("no SQL handle in %T", s)
	return nil
}

func schemaVersion(t *testing.T, s Store) (int, int) {
	t.Helper()
	switch s := s.(type) {
	case *SQLite:
		v, err := s.SchemaVersion(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return v, len(migrations)
	case *Postgres:
		v, err := s.SchemaVersion(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return v, len(postgresMigrations)
	}
	t.Fatalf("no schema version in %T", s)
	return 0, 0
}

func testMachine(name, ek string) (Machine, EK) {
	return Machine{Name: name, EKHash: ek, AKPublic: []byte("ak-" + name), State: StatePending, Reasons: []string{"awaiting_approval"}},
		EK{Hash: ek, PublicDER: []byte("ek-" + ek)}
}

func TestCreateAndReadMachine(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		m, ek := testMachine("web1", "aa01")
		m.Facts = []byte(`{"hostname":"web1"}`)
		if err := s.CreateMachine(ctx, m, ek, Event{Machine: "web1", Kind: "enrolled", To: StatePending}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Machine(ctx, "web1")
		if err != nil {
			t.Fatal(err)
		}
		if got.EKHash != "aa01" || string(got.AKPublic) != "ak-web1" || got.State != StatePending {
			t.Errorf("machine = %+v", got)
		}
		if len(got.Reasons) != 1 || got.Reasons[0] != "awaiting_approval" {
			t.Errorf("reasons = %v", got.Reasons)
		}
		if got.CreatedAt.IsZero() {
			t.Error("created_at not set")
		}
		byEK, err := s.MachineByEK(ctx, "aa01")
		if err != nil || byEK.Name != "web1" {
			t.Errorf("MachineByEK = %v, %v", byEK.Name, err)
		}
		storedEK, err := s.EK(ctx, "aa01")
		if err != nil {
			t.Fatal(err)
		}
		if storedEK.Status != EKEnrolled || storedEK.Machine != "web1" {
			t.Errorf("EK = %+v", storedEK)
		}
		if _, err := s.Machine(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing machine error = %v", err)
		}
		if _, err := s.MachineByEK(ctx, "ffff"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing EK's machine error = %v", err)
		}
		if _, err := s.EK(ctx, "ffff"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing EK error = %v", err)
		}
	})
}

// TestMachineRoundTrip stores a machine with every field set to a value
// that a wrong column type would change: nanosecond times, a clock above
// 2^63, counters above 2^31 and binary blobs.
func TestMachineRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		at := time.Date(2026, 12, 4, 10, 11, 12, 123456789, time.UTC)
		m := Machine{
			Name: "full", EKHash: "0a0b", AKPublic: []byte{0, 1, 2, 0xff}, Approved: true,
			State: StateTrusted, Reasons: []string{"a", "b"}, StateSince: at, LastVerdictAt: at.Add(time.Nanosecond),
			LastSeenAt: at.Add(2 * time.Nanosecond), BootCount: 1 << 40, ResetCount: 1<<32 - 1, RestartCount: 1 << 31,
			Clock: 1<<64 - 2, EventLogSHA256: strings.Repeat("ab", 32), IMAOffset: 1 << 35,
			IMAState: []byte(`{"x":1}`), Reference: []byte{0}, ReferenceApproved: true, Facts: []byte("{}"),
			IntervalS: 90, CreatedAt: at,
		}
		if err := s.CreateMachine(ctx, m, EK{Hash: "0a0b", CertDER: []byte{0x30, 0}}, Event{}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Machine(ctx, "full")
		if err != nil {
			t.Fatal(err)
		}
		if got.UpdatedAt.IsZero() {
			t.Error("updated_at not set")
		}
		m.UpdatedAt = got.UpdatedAt
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", m) {
			t.Errorf("machine after round trip:\n got %+v\nwant %+v", got, m)
		}
		ek, err := s.EK(ctx, "0A0B")
		if err != nil {
			t.Fatal(err)
		}
		if ek.PublicDER != nil || string(ek.CertDER) != "\x30\x00" {
			t.Errorf("EK blobs = %x, %x; want nil, 3000", ek.PublicDER, ek.CertDER)
		}
	})
}

func TestCreateMachineConflicts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		m, ek := testMachine("web1", "aa01")
		if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
			t.Fatal(err)
		}
		sameEK, ek2 := testMachine("web2", "aa01")
		if err := s.CreateMachine(ctx, sameEK, ek2, Event{}); !errors.Is(err, ErrConflict) {
			t.Errorf("same EK under a new name: %v", err)
		}
		sameName, ek3 := testMachine("web1", "bb02")
		if err := s.CreateMachine(ctx, sameName, ek3, Event{}); !errors.Is(err, ErrConflict) {
			t.Errorf("same name with another EK: %v", err)
		}
		if err := s.PutEK(ctx, EK{Hash: "cc03", Status: EKRevoked}, Event{Kind: "ek-revoked"}); err != nil {
			t.Fatal(err)
		}
		revoked, ek4 := testMachine("web3", "cc03")
		if err := s.CreateMachine(ctx, revoked, ek4, Event{}); !errors.Is(err, ErrConflict) {
			t.Errorf("revoked EK: %v", err)
		}
		if _, err := s.Machine(ctx, "web3"); !errors.Is(err, ErrNotFound) {
			t.Errorf("machine with revoked EK was stored: %v", err)
		}
		// Another machine may not take web1's EK by an update either.
		other, ek5 := testMachine("web4", "dd04")
		if err := s.CreateMachine(ctx, other, ek5, Event{}); err != nil {
			t.Fatal(err)
		}
		other.EKHash = "aa01"
		if err := s.UpdateMachine(ctx, other, Event{}); !errors.Is(err, ErrConflict) {
			t.Errorf("update to a taken EK: %v", err)
		}
		// The failed writes appended nothing to the history.
		hist, err := s.History(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 1 || hist[0].Kind != "ek-revoked" {
			t.Errorf("history = %+v, want only the ek-revoked event", hist)
		}
	})
}

func TestVerdictAndHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		m, ek := testMachine("db1", "dd04")
		if err := s.CreateMachine(ctx, m, ek, Event{Machine: "db1", Kind: "enrolled", To: StatePending}); err != nil {
			t.Fatal(err)
		}
		m.State = StateTrusted
		m.Reasons = nil
		m.BootCount = 1
		id, err := s.RecordVerdict(ctx, m, Verdict{State: StateTrusted, Detail: []byte(`{}`), BootCount: 1},
			Event{Machine: "db1", Kind: "state", From: StatePending, To: StateTrusted})
		if err != nil {
			t.Fatal(err)
		}
		if id == 0 {
			t.Error("verdict id is 0")
		}
		m.State = StateUntrusted
		m.Reasons = []string{"policy_mismatch"}
		id2, err := s.RecordVerdict(ctx, m, Verdict{State: StateUntrusted, Reasons: m.Reasons, BootCount: 1, IMA: []byte(`{"entries":3}`)},
			Event{Machine: "db1", Kind: "state", From: StateTrusted, To: StateUntrusted})
		if err != nil {
			t.Fatal(err)
		}
		if id2 <= id {
			t.Errorf("second verdict id %d is not above the first, %d", id2, id)
		}
		vs, err := s.Verdicts(ctx, "db1", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 2 || vs[0].ID != id2 || vs[0].State != StateUntrusted || vs[0].Reasons[0] != "policy_mismatch" {
			t.Errorf("verdicts = %+v", vs)
		}
		if len(vs) == 2 && (string(vs[0].IMA) != `{"entries":3}` || vs[1].IMA != nil || len(vs[1].Reasons) != 0) {
			t.Errorf("verdict IMA parts = %q, %q; reasons of the first = %v", vs[0].IMA, vs[1].IMA, vs[1].Reasons)
		}
		if vs, _ := s.Verdicts(ctx, "db1", 1); len(vs) != 1 || vs[0].ID != id2 {
			t.Errorf("newest verdict = %+v, want id %d", vs, id2)
		}
		hist, err := s.History(ctx, "db1", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 3 || hist[0].To != StateUntrusted || hist[2].Kind != "enrolled" {
			t.Errorf("history = %+v", hist)
		}

		// History is append-only, even for a direct SQL statement.
		raw := rawDB(t, s)
		if _, err := raw.ExecContext(ctx, `UPDATE history SET kind = 'x'`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("update of a history row: error = %v, want append-only", err)
		}
		if _, err := raw.ExecContext(ctx, `DELETE FROM history`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("delete of a history row: error = %v, want append-only", err)
		}

		// Forgetting the machine drops its verdicts, keeps history and frees the EK.
		if err := s.DeleteMachine(ctx, "db1", Event{Machine: "db1", Kind: "forgotten"}); err != nil {
			t.Fatal(err)
		}
		if vs, _ := s.Verdicts(ctx, "db1", 10); len(vs) != 0 {
			t.Errorf("verdicts after forget = %d", len(vs))
		}
		if hist, _ := s.History(ctx, "db1", 10); len(hist) != 4 {
			t.Errorf("history after forget = %d entries, want 4", len(hist))
		}
		if ek, _ := s.EK(ctx, "dd04"); ek.Status != EKPinned {
			t.Errorf("EK status after forget = %q", ek.Status)
		}
		if err := s.DeleteMachine(ctx, "db1", Event{Machine: "db1", Kind: "forgotten"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("second forget: %v", err)
		}
		if _, err := s.RecordVerdict(ctx, m, Verdict{State: StateTrusted}, Event{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("verdict for a forgotten machine: %v", err)
		}
	})
}

func TestHistoryOfAllMachines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		at := time.Date(2026, 12, 1, 0, 0, 0, 5, time.UTC)
		for i, name := range []string{"a", "b", "a"} {
			if err := s.PutEK(ctx, EK{Hash: fmt.Sprintf("e%d", i), Status: EKPinned}, Event{At: at, Machine: name, Kind: "ek-pinned", Detail: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.History(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 || all[0].Detail != "2" || all[2].Detail != "0" || !all[0].At.Equal(at) {
			t.Errorf("history of every machine = %+v", all)
		}
		if a, _ := s.History(ctx, "a", 10); len(a) != 2 {
			t.Errorf("history of a = %d entries, want 2", len(a))
		}
		if top, _ := s.History(ctx, "", 1); len(top) != 1 || top[0].Detail != "2" {
			t.Errorf("newest entry = %+v", top)
		}
		eks, err := s.EKs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(eks) != 3 || eks[0].Hash != "e0" || eks[2].Hash != "e2" {
			t.Errorf("EKs = %+v", eks)
		}
	})
}

// TestFreeTextCleaned stores a NUL byte and invalid UTF-8, which an event
// detail may quote from untrusted input: both backends store the same
// replacement characters instead of rejecting the write.
func TestFreeTextCleaned(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		if err := s.PutEK(ctx, EK{Hash: "ab", Status: EKPinned, Note: "note \x00"}, Event{Kind: "ek-pinned", Detail: "bad \x00 byte \xff"}); err != nil {
			t.Fatal(err)
		}
		hist, err := s.History(ctx, "", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 1 || hist[0].Detail != "bad \uFFFD byte \uFFFD" {
			t.Errorf("history = %+v", hist)
		}
		if ek, _ := s.EK(ctx, "ab"); ek.Note != "note \uFFFD" {
			t.Errorf("EK note = %q", ek.Note)
		}
	})
}

// TestMachinesSortedBytewise checks that both backends list machines in
// byte order, whatever the PostgreSQL database's collation.
func TestMachinesSortedBytewise(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		names := []string{"b-2", "B1", "a.1", "a_1", "A-1", "0z", "b1"}
		for i, name := range names {
			m, ek := testMachine(name, fmt.Sprintf("ee%02d", i))
			if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := s.Machines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.Name)
		}
		want := slices.Sorted(slices.Values(names))
		if !slices.Equal(got, want) {
			t.Errorf("machines = %q, want %q", got, want)
		}
	})
}

func TestRevokedEKSurvivesForget(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		m, ek := testMachine("app1", "ee05")
		if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
			t.Fatal(err)
		}
		ek.Status = EKRevoked
		ek.Machine = "app1"
		if err := s.PutEK(ctx, ek, Event{Kind: "ek-revoked"}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteMachine(ctx, "app1", Event{}); err != nil {
			t.Fatal(err)
		}
		again, ek2 := testMachine("app2", "ee05")
		if err := s.CreateMachine(ctx, again, ek2, Event{}); !errors.Is(err, ErrConflict) {
			t.Errorf("revoked EK enrolled again after forget: %v", err)
		}
	})
}

func TestUpdateMissingMachine(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.open(t)
		err := s.UpdateMachine(context.Background(), Machine{Name: "ghost"}, Event{Kind: "state"})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("error = %v", err)
		}
		if hist, _ := s.History(context.Background(), "", 10); len(hist) != 0 {
			t.Errorf("failed update appended history: %+v", hist)
		}
	})
}

func TestReopenKeepsSchema(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.open(t)
		m, ek := testMachine("n1", "ff06")
		if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2 := db.open(t)
		if v, want := schemaVersion(t, s2); v != want {
			t.Errorf("schema version = %d, want %d", v, want)
		}
		if _, err := s2.Machine(ctx, "n1"); err != nil {
			t.Error(err)
		}
	})
}

func TestNewerSchemaRejected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.open(t)
		if _, err := rawDB(t, s).Exec(`UPDATE schema_version SET version = 999`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := openStore(context.Background(), db.backend, db.target)
		if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer") || !strings.Contains(err.Error(), "upgrade vouch") {
			t.Errorf("open of a newer schema: error = %v", err)
		}
	})
}

// TestConcurrentOpenMigratesOnce opens one new database from several
// handles at once, as replicas starting together do: every open succeeds
// and the schema is applied once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		const replicas = 6
		stores := make([]Store, replicas)
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Go(func() { stores[i], errs[i] = openStore(context.Background(), db.backend, db.target) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				continue
			}
			defer stores[i].Close()
		}
		if t.Failed() {
			return
		}
		if v, want := schemaVersion(t, stores[0]); v != want {
			t.Errorf("schema version = %d, want %d", v, want)
		}
		var rows int
		if err := rawDB(t, stores[0]).QueryRow(`SELECT count(*) FROM schema_version`).Scan(&rows); err != nil || rows != 1 {
			t.Errorf("schema_version rows = %d, %v; want 1", rows, err)
		}
	})
}

// TestReplicasShareWrites uses two handles on one database as two
// verifier replicas: each reads what the other committed.
func TestReplicasShareWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		a, b := db.open(t), db.open(t)
		m, ek := testMachine("shared", "5a5a")
		if err := a.CreateMachine(ctx, m, ek, Event{Machine: "shared", Kind: "enrolled"}); err != nil {
			t.Fatal(err)
		}
		got, err := b.Machine(ctx, "shared")
		if err != nil {
			t.Fatalf("replica b does not see replica a's machine: %v", err)
		}
		got.State = StateTrusted
		got.BootCount = 7
		if _, err := b.RecordVerdict(ctx, got, Verdict{State: StateTrusted, BootCount: 7}, Event{Machine: "shared", Kind: "state", To: StateTrusted}); err != nil {
			t.Fatal(err)
		}
		if m, err := a.Machine(ctx, "shared"); err != nil || m.State != StateTrusted || m.BootCount != 7 {
			t.Errorf("replica a after b's verdict: %+v, %v", m, err)
		}
		if vs, err := a.Verdicts(ctx, "shared", 10); err != nil || len(vs) != 1 {
			t.Errorf("replica a's verdicts = %+v, %v", vs, err)
		}
		// A revocation on one replica blocks enrollment on the other.
		if err := a.PutEK(ctx, EK{Hash: "7b7b", Status: EKRevoked}, Event{Kind: "ek-revoked"}); err != nil {
			t.Fatal(err)
		}
		again, ek2 := testMachine("other", "7b7b")
		if err := b.CreateMachine(ctx, again, ek2, Event{}); !errors.Is(err, ErrConflict) {
			t.Errorf("replica b enrolled an EK that replica a revoked: %v", err)
		}
		if hist, _ := b.History(ctx, "", 10); len(hist) != 3 {
			t.Errorf("history seen by replica b = %d entries, want 3", len(hist))
		}
	})
}

// TestConcurrentEnrollOneWinner enrolls one EK under different names from
// many goroutines on two handles at once: exactly one machine results,
// and every other attempt fails with ErrConflict.
func TestConcurrentEnrollOneWinner(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		replicas := []Store{db.open(t), db.open(t)}
		const attempts = 16
		errs := make([]error, attempts)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range attempts {
			wg.Go(func() {
				m, ek := testMachine(fmt.Sprintf("racer%02d", i), "ec0ffee")
				<-start
				errs[i] = replicas[i%2].CreateMachine(ctx, m, ek, Event{Machine: m.Name, Kind: "enrolled"})
			})
		}
		close(start)
		wg.Wait()
		winner := ""
		for i, err := range errs {
			switch {
			case err == nil:
				if winner != "" {
					t.Errorf("racer%02d enrolled as well as %s", i, winner)
				}
				winner = fmt.Sprintf("racer%02d", i)
			case !errors.Is(err, ErrConflict):
				t.Errorf("racer%02d: error = %v, want ErrConflict", i, err)
			}
		}
		if winner == "" {
			t.Fatal("no enrollment succeeded")
		}
		ms, err := replicas[1].Machines(ctx)
		if err != nil || len(ms) != 1 || ms[0].Name != winner {
			t.Errorf("machines = %+v, %v; want only %s", ms, err, winner)
		}
		if ek, err := replicas[0].EK(ctx, "ec0ffee"); err != nil || ek.Status != EKEnrolled || ek.Machine != winner {
			t.Errorf("EK = %+v, %v; want enrolled to %s", ek, err, winner)
		}
		if hist, _ := replicas[0].History(ctx, "", 100); len(hist) != 1 || hist[0].Machine != winner {
			t.Errorf("history = %+v, want one enrolled event of %s", hist, winner)
		}
	})
}

// TestConcurrentRevokeAndEnroll revokes EKs on one handle while another
// enrolls them. Whichever commits first, the EK ends up revoked: an
// enrollment that read the EK before the revocation must not write its
// status back over it.
func TestConcurrentRevokeAndEnroll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		enroller, revoker := db.open(t), db.open(t)
		const rounds = 30
		for i := range rounds {
			hash := fmt.Sprintf("be%04d", i)
			if err := revoker.PutEK(ctx, EK{Hash: hash, Status: EKPinned}, Event{}); err != nil {
				t.Fatal(err)
			}
			var enrollErr, revokeErr error
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Go(func() {
				m, ek := testMachine(fmt.Sprintf("m%04d", i), hash)
				<-start
				enrollErr = enroller.CreateMachine(ctx, m, ek, Event{})
			})
			wg.Go(func() {
				<-start
				revokeErr = revoker.PutEK(ctx, EK{Hash: hash, Status: EKRevoked}, Event{Kind: "ek-revoked"})
			})
			close(start)
			wg.Wait()
			if revokeErr != nil {
				t.Fatalf("round %d: revoke: %v", i, revokeErr)
			}
			if enrollErr != nil && !errors.Is(enrollErr, ErrConflict) {
				t.Fatalf("round %d: enroll: error = %v, want nil or ErrConflict", i, enrollErr)
			}
			ek, err := revoker.EK(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			if ek.Status != EKRevoked {
				t.Fatalf("round %d: EK status = %q after a committed revocation (enroll error %v)", i, ek.Status, enrollErr)
			}
		}
	})
}

// TestStaleWriteRejected has two replicas read one machine and both write
// it back: the second write, based on what is now a stale read, fails with
// ErrConflict and leaves the first one in place.
func TestStaleWriteRejected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		a, b := db.open(t), db.open(t)
		m, ek := testMachine("contended", "ccee")
		if err := a.CreateMachine(ctx, m, ek, Event{}); err != nil {
			t.Fatal(err)
		}
		readByA, err := a.Machine(ctx, "contended")
		if err != nil {
			t.Fatal(err)
		}
		readByB, err := b.Machine(ctx, "contended")
		if err != nil {
			t.Fatal(err)
		}

		// Replica a revokes the machine; replica b then records a verdict
		// judged on its earlier read.
		readByA.State = StateUntrusted
		readByA.Reasons = []string{"revoked"}
		if err := a.UpdateMachine(ctx, readByA, Event{Machine: "contended", Kind: "revoked"}); err != nil {
			t.Fatal(err)
		}
		readByB.State = StateTrusted
		readByB.Reasons = nil
		_, err = b.RecordVerdict(ctx, readByB, Verdict{State: StateTrusted}, Event{Machine: "contended", Kind: "state"})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("verdict on a stale read: error = %v, want ErrConflict", err)
		}
		if err := b.UpdateMachine(ctx, readByB, Event{Machine: "contended", Kind: "approved"}); !errors.Is(err, ErrConflict) {
			t.Errorf("update on a stale read: error = %v, want ErrConflict", err)
		}

		got, err := b.Machine(ctx, "contended")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != StateUntrusted || !slices.Equal(got.Reasons, []string{"revoked"}) {
			t.Errorf("machine after the rejected writes = %s %v, want untrusted [revoked]", got.State, got.Reasons)
		}
		if vs, _ := b.Verdicts(ctx, "contended", 10); len(vs) != 0 {
			t.Errorf("the rejected verdict was stored: %+v", vs)
		}
		if hist, _ := b.History(ctx, "contended", 10); len(hist) != 1 || hist[0].Kind != "revoked" {
			t.Errorf("history = %+v, want only the revocation", hist)
		}

		// Read again, the write goes through; a zero UpdatedAt skips the check.
		got.IntervalS = 30
		if err := b.UpdateMachine(ctx, got, Event{}); err != nil {
			t.Errorf("update after a fresh read: %v", err)
		}
		got.UpdatedAt = time.Time{}
		got.IntervalS = 45
		if err := a.UpdateMachine(ctx, got, Event{}); err != nil {
			t.Errorf("update without UpdatedAt: %v", err)
		}
		if final, _ := a.Machine(ctx, "contended"); final.IntervalS != 45 {
			t.Errorf("interval = %d, want 45", final.IntervalS)
		}
	})
}
