package store

import (
	"context"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/internal/pgtest"
)

func TestPostgresPlaceholders(t *testing.T) {
	got := postgresPlaceholders(`SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?`)
	want := `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4`
	if got != want {
		t.Errorf("rebound query = %q, want %q", got, want)
	}
}

func TestPostgresHistoryTruncateRejected(t *testing.T) {
	s, err := OpenPostgres(context.Background(), pgtest.NewSchema(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutEK(context.Background(), EK{Hash: "aa", Status: EKPinned}, Event{Kind: "ek-pinned"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`TRUNCATE history`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("truncate of the history: error = %v, want append-only", err)
	}
	if hist, _ := s.History(context.Background(), "", 10); len(hist) != 1 {
		t.Errorf("history after truncate = %d entries, want 1", len(hist))
	}
}

// TestOpenPostgresHidesPassword opens connection strings that carry a
// password and cannot be used: no error may repeat the password.
func TestOpenPostgresHidesPassword(t *testing.T) {
	const secret = "s3cretPW"
	for _, dsn := range []string{
		// Nothing listens on port 1 of the loopback address.
		"postgres://vouch:" + secret + "@127.0.0.1:1/vouch?connect_timeout=5",
		"postgres://vouch@127.0.0.1:1/vouch?password=" + secret + "&connect_timeout=5",
		"host=127.0.0.1 port=1 user=vouch password=" + secret + " connect_timeout=5",
		// These do not parse.
		"postgres://vouch:" + secret + "@127.0.0.1:notaport/vouch",
		"postgres://vouch:" + secret + "@[::1/vouch",
		"host=127.0.0.1 password='" + secret,
		"password=" + secret + " sslmode=bogus",
	} {
		_, err := OpenPostgres(context.Background(), dsn, nil)
		if err == nil {
			t.Errorf("OpenPostgres(%s) succeeded", RedactDSN(dsn))
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://vouch:pw@db.example:5432/vouch?sslmode=verify-full", "postgres://vouch:xxxxx@db.example:5432/vouch?sslmode=verify-full"},
		{"postgresql://vouch@db/vouch", "postgresql://vouch@db/vouch"},
		{"postgres://db/vouch?password=pw&sslpassword=k", "postgres://db/vouch?password=xxxxx&sslpassword=xxxxx"},
		{"host=db password=pw", "(connection string hidden)"},
		{"postgres://vouch:pw@[::1/vouch", "(connection string hidden)"},
	} {
		if got := RedactDSN(tc.dsn); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}
