package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func openTemp(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vouch.db")
	s, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func testMachine(name, ek string) (Machine, EK) {
	return Machine{Name: name, EKHash: ek, AKPublic: []byte("ak-" + name), State: StatePending, Reasons: []string{"awaiting_approval"}},
		EK{Hash: ek, PublicDER: []byte("ek-" + ek)}
}

func TestCreateAndReadMachine(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
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
}

func TestCreateMachineConflicts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
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
}

func TestVerdictAndHistory(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
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
	if _, err := s.RecordVerdict(ctx, m, Verdict{State: StateUntrusted, Reasons: m.Reasons, BootCount: 1},
		Event{Machine: "db1", Kind: "state", From: StateTrusted, To: StateUntrusted}); err != nil {
		t.Fatal(err)
	}
	vs, err := s.Verdicts(ctx, "db1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].State != StateUntrusted || vs[0].Reasons[0] != "policy_mismatch" {
		t.Errorf("verdicts = %+v", vs)
	}
	hist, err := s.History(ctx, "db1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 || hist[0].To != StateUntrusted || hist[2].Kind != "enrolled" {
		t.Errorf("history = %+v", hist)
	}

	// History is append-only, even for a direct SQL statement.
	if _, err := s.db.ExecContext(ctx, `UPDATE history SET kind = 'x'`); err == nil {
		t.Error("history row was updated")
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM history`); err == nil {
		t.Error("history row was deleted")
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
}

func TestRevokedEKSurvivesForget(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
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
}

func TestUpdateMissingMachine(t *testing.T) {
	s, _ := openTemp(t)
	err := s.UpdateMachine(context.Background(), Machine{Name: "ghost"}, Event{})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("error = %v", err)
	}
}

func TestReopenKeepsSchema(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	m, ek := testMachine("n1", "ff06")
	if err := s.CreateMachine(ctx, m, ek, Event{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	v, err := s2.SchemaVersion(ctx)
	if err != nil || v != len(migrations) {
		t.Errorf("schema version = %d, %v", v, err)
	}
	if _, err := s2.Machine(ctx, "n1"); err != nil {
		t.Error(err)
	}
}

// crashWriterEnv names the database a re-executed test binary writes to
// until it is killed.
const crashWriterEnv = "VOUCH_STORE_CRASH_WRITER"

// TestCrashWriter is the child half of TestCrashLosesNothing: it writes
// verdicts as fast as it can and prints the id of each one after its commit
// returned.
func TestCrashWriter(t *testing.T) {
	path := os.Getenv(crashWriterEnv)
	if path == "" {
		t.Skip("child process of TestCrashLosesNothing")
	}
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	m, ek := testMachine("crash", "c0ffee")
	if err := s.CreateMachine(ctx, m, ek, Event{Machine: "crash", Kind: "enrolled"}); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 1; ; i++ {
		m.BootCount = int64(i)
		id, err := s.RecordVerdict(ctx, m, Verdict{State: StateTrusted, BootCount: int64(i), Detail: make([]byte, 2048)},
			Event{Machine: "crash", Kind: "state", Detail: strconv.Itoa(i)})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("committed", id, i)
	}
}

func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriter$", "-test.v")
	cmd.Env = append(os.Environ(), crashWriterEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lastID, lastBoot int64
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(20 * time.Second)
	for sc.Scan() {
		var id, boot int64
		if n, _ := fmt.Sscanf(sc.Text(), "committed %d %d", &id, &boot); n == 2 {
			lastID, lastBoot = id, boot
		} else if len(sc.Text()) > 5 && sc.Text()[:5] == "error" {
			t.Fatalf("child: %s", sc.Text())
		}
		if lastBoot >= 200 || time.Now().After(deadline) {
			break
		}
	}
	// Kill in the middle of the write loop: the child is still committing.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if lastID == 0 {
		t.Fatal("child committed nothing before the kill")
	}

	s, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	vs, err := s.Verdicts(context.Background(), "crash", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 || vs[0].ID < lastID {
		t.Fatalf("newest verdict after kill = %+v, want id >= %d (reported committed)", vs, lastID)
	}
	m, err := s.Machine(context.Background(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	if m.BootCount < lastBoot {
		t.Errorf("machine boot count = %d, want >= %d", m.BootCount, lastBoot)
	}
	// Every verdict commit also appended one history row in the same
	// transaction: the two counts agree.
	hist, err := s.History(context.Background(), "crash", 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := s.Verdicts(context.Background(), "crash", 1_000_000)
	if len(hist) != len(all)+1 {
		t.Errorf("history has %d rows, verdicts %d: a transaction was torn", len(hist), len(all))
	}
}
