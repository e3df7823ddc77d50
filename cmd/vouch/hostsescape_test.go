package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
	"github.com/vouch-attest/vouch/verifier"
)

// TestHostsEscapeStoredText: a database written before the server checked
// facts may hold a host name that clears the screen, and reason messages
// and history quote text from the agent. hosts show, list and history and
// ek list print all of it escaped.
func TestHostsEscapeStoredText(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "vouch.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	ekHash := strings.Repeat("ab", 32)
	m := store.Machine{
		Name: "esc", EKHash: ekHash, AKPublic: []byte{1}, Approved: true,
		State: store.StatePending, Reasons: []string{"awaiting\x1b[8m"}, StateSince: now, LastSeenAt: now, CreatedAt: now,
		Facts: []byte(`{"hostname":"ok\u001b[2J\u001b[Hweb1 trusted","os":"linux\r/amd64"}`),
	}
	ek := store.EK{Hash: ekHash, PublicDER: []byte{1}, Note: "pinned\x1b[31m red"}
	if err := st.CreateMachine(ctx, m, ek, store.Event{Machine: "esc", Kind: "enrolled", To: store.StatePending, Detail: "detail\x1b]0;pwned\x07"}); err != nil {
		t.Fatal(err)
	}
	srv, err := verifier.New(verifier.Config{Store: st, Backend: &verifier.AttestBackend{}, EKMode: verifier.EKModeTOFU}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewTLSServer(srv.Handler())
	defer hs.Close()
	sum := sha256.Sum256(hs.Certificate().Raw)
	_, tokenFile := verifier.DataDirFiles(dir)
	flags := []string{"--server", hs.URL, "--server-fingerprint", hex.EncodeToString(sum[:]), "--token-file", tokenFile}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"hosts", "show", "esc"}, []string{`Host:      ok\x1b[2J\x1b[Hweb1 trusted linux\r/amd64`, `detail\x1b]0;pwned\a`}},
		{[]string{"hosts", "list"}, []string{`awaiting\x1b[8m`}},
		{[]string{"hosts", "history", "esc"}, []string{`detail\x1b]0;pwned\a`}},
		{[]string{"ek", "list"}, []string{`pinned\x1b[31m red`}},
	} {
		out, code := runVouch(t, nil, append(tc.args, flags...)...)
		if code != exitOK {
			t.Errorf("%s: exit %d\n%s", strings.Join(tc.args, " "), code, out)
			continue
		}
		if strings.ContainsAny(out, "\x1b\r\x07") {
			t.Errorf("%s printed a control character:\n%q", strings.Join(tc.args, " "), out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s output lacks %s:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
}

func TestHostsShowApprovalLine(t *testing.T) {
	for _, tc := range []struct {
		enrollment, reference bool
		want                  string
	}{
		{true, true, "Approval:  enrollment and reference values approved\n"},
		{true, false, "Approval:  enrollment approved, reference values not approved yet (run 'vouch hosts approve web3')\n"},
		{false, false, "Approval:  enrollment and reference values pending (run 'vouch hosts approve web3')\n"},
	} {
		var out strings.Builder
		printMachineDetail(&out, api.MachineDetail{Machine: api.Machine{Name: "web3", Approved: tc.enrollment, ReferenceApproved: tc.reference}})
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("enrollment %v, reference %v: output lacks %q:\n%s", tc.enrollment, tc.reference, tc.want, out.String())
		}
	}
}

func TestHostsHistoryUnchangedState(t *testing.T) {
	var out strings.Builder
	printHistory(&out, []api.HistoryEvent{
		{Machine: "db1", Kind: "revoked", From: "untrusted", To: "untrusted"},
		{Machine: "db1", Kind: "verdict", From: "trusted", To: "untrusted"},
	})
	if !strings.Contains(out.String(), "untrusted (unchanged)") {
		t.Errorf("a revocation that keeps the state is not marked unchanged:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "trusted -> untrusted") {
		t.Errorf("a state change lost its arrow:\n%s", out.String())
	}
}
