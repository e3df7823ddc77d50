package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/internal/pgtest"
)

// Environment variables of the child process of TestCrashLosesNothing.
const (
	crashBackendEnv = "VOUCH_STORE_CRASH_BACKEND"
	crashTargetEnv  = "VOUCH_STORE_CRASH_TARGET"
)

// TestCrashWriter is the child half of TestCrashLosesNothing: it writes
// verdicts as fast as it can and prints the id of each one after its commit
// returned.
func TestCrashWriter(t *testing.T) {
	backend, target := os.Getenv(crashBackendEnv), os.Getenv(crashTargetEnv)
	if backend == "" {
		t.Skip("child process of TestCrashLosesNothing")
	}
	ctx := context.Background()
	s, err := openStore(ctx, backend, target)
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

// TestCrashLosesNothing kills a process in the middle of its writes with
// SIGKILL and checks that every verdict it reported committed is stored,
// each with its history entry. With a throwaway PostgreSQL server, the
// database server is then crashed and restarted too, so the verdicts must
// also come back from PostgreSQL's crash recovery.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	forEachBackend(t, func(t *testing.T, db testDB) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriter$", "-test.v")
		cmd.Env = append(os.Environ(), crashBackendEnv+"="+db.backend, crashTargetEnv+"="+db.target)
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
			} else if strings.HasPrefix(sc.Text(), "error") {
				cmd.Process.Kill()
				cmd.Wait()
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
		if db.backend == "postgres" && pgtest.CrashAndRestart(t) {
			t.Log("crashed and restarted the PostgreSQL server")
		}

		ctx := context.Background()
		s := db.open(t)
		vs, err := s.Verdicts(ctx, "crash", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) == 0 || vs[0].ID < lastID {
			t.Fatalf("newest verdict after kill = %+v, want id >= %d (reported committed)", vs, lastID)
		}
		m, err := s.Machine(ctx, "crash")
		if err != nil {
			t.Fatal(err)
		}
		if m.BootCount < lastBoot {
			t.Errorf("machine boot count = %d, want >= %d", m.BootCount, lastBoot)
		}
		// Every verdict commit also appended one history row in the same
		// transaction: the two counts agree.
		hist, err := s.History(ctx, "crash", 1_000_000)
		if err != nil {
			t.Fatal(err)
		}
		all, err := s.Verdicts(ctx, "crash", 1_000_000)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != len(all)+1 {
			t.Errorf("history has %d rows, verdicts %d: a transaction was torn", len(hist), len(all))
		}
	})
}
