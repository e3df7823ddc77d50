package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/store"
)

// FuzzReplayEventLog feeds arbitrary bytes as the event log of a verified
// quote: the back end must return a Failure or events, never panic.
func FuzzReplayEventLog(f *testing.F) {
	for _, name := range []string{"rhel8-uefi.bin", "cos-85-amd-sev.bin", "ubuntu-2104-no-secure-boot.bin"} {
		raw, err := os.ReadFile("../cmd/vouch/testdata/demo/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{})
	zero := make([]byte, 32)
	vq := &attest.VerifiedQuote{Verified: attest.PCRValues{}}
	for i := 0; i < 10; i++ {
		attest.SetPCR(vq.Verified, attest.AlgSHA256, i, zero)
	}
	q := &QuoteResult{Opaque: vq}
	b := &AttestBackend{}
	f.Fuzz(func(t *testing.T, raw []byte) {
		events, err := b.ReplayEventLog(raw, q)
		if err != nil {
			if _, ok := AsFailure(err); !ok {
				t.Fatalf("operational error for log bytes: %v", err)
			}
			return
		}
		for _, e := range events {
			if e.PCR < 0 || e.PCR > 9 {
				t.Fatalf("event for PCR %d outside the quote", e.PCR)
			}
		}
	})
}

// FuzzEnrollRequest posts arbitrary bodies to the enrollment endpoint: the
// server must respond with a JSON error or a challenge, never a 500.
func FuzzEnrollRequest(f *testing.F) {
	f.Add([]byte(`{"name":"m1","ek_public_area":"AAEACwADALIAIINxl2dEhLEXvCJ/ogCoPnTvgQ==","ak_public":"AAA="}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"name":"x"`))
	h := newHarness(f, Config{Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/enroll", bytes.NewReader(body))
		h.srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var e api.Error
		if rec.Code != http.StatusOK && (json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code == "") {
			t.Fatalf("status %d without a JSON error: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzEvidence sends evidence for real challenges with arbitrary quote,
// signature and event log bytes for a machine whose AK is a software key: the
// verdict is untrusted or the request is rejected, never a 500 or a panic.
func FuzzEvidence(f *testing.F) {
	h := newHarness(f, Config{AutoApproveReference: true, Logger: slog.New(slog.DiscardHandler)})
	ak := newSoftwareAK(f)
	m := store.Machine{Name: "fuzz", EKHash: strings.Repeat("ab", 32), AKPublic: ak.public, Approved: true, State: store.StatePending}
	if err := h.store.CreateMachine(context.Background(), m, store.EK{Hash: m.EKHash}, store.Event{}); err != nil {
		f.Fatal(err)
	}
	raw, err := os.ReadFile("../cmd/vouch/testdata/demo/rhel8-uefi.bin")
	if err != nil {
		f.Fatal(err)
	}
	log, _ := eventlog.Parse(raw)
	values, _ := eventlog.Replay(log)
	pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}
	quote, sig := ak.quote(f, make([]byte, 32), pcrs, values, 1)
	f.Add(quote, sig, raw)
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, quote, sig, eventLog []byte) {
		h.srv.kick("fuzz")
		var ch api.Challenge
		if _, err := h.anon.Do(context.Background(), http.MethodGet, "/v1/agents/fuzz/challenge?wait=5", nil, &ch); err != nil {
			t.Fatal(err)
		}
		ev := api.Evidence{ChallengeID: ch.ID, Quote: quote, Signature: sig, EventLog: eventLog}
		for _, alg := range values.Banks() {
			bank := api.PCRBank{Alg: uint16(alg), Values: map[int][]byte{}}
			for _, p := range ch.PCRs {
				bank.Values[p] = values[alg][p]
			}
			ev.PCRs = append(ev.PCRs, bank)
		}
		status, err := h.anon.Do(context.Background(), http.MethodPost, "/v1/agents/fuzz/evidence", ev, nil)
		if status >= 500 {
			t.Fatalf("status %d: %v", status, err)
		}
	})
}
