package verifier

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestEvidenceWithoutChallengeRejected(t *testing.T) {
	h := newHarness(t, Config{EKMode: EKModeTOFU})

	resp, err := http.Post(h.http.URL+"/v1/agents/nobody/evidence", "application/json",
		strings.NewReader(`{"challenge_id":"x","eventlog":"AAAA"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	msg, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(msg), "no challenge was issued to machine nobody") {
		t.Errorf("response %q does not name the machine and the missing challenge", msg)
	}
}

func TestEvidenceSlotsBounded(t *testing.T) {
	h := newHarness(t, Config{EKMode: EKModeTOFU})
	for range maxConcurrentEvidence {
		if _, ok := h.srv.acquireEvidenceSlot(context.Background()); !ok {
			t.Fatal("a free evidence slot was not granted")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := h.srv.acquireEvidenceSlot(ctx); ok {
		t.Errorf("slot %d granted beyond the limit of %d", maxConcurrentEvidence+1, maxConcurrentEvidence)
	}
}

// slowUpload opens a connection from the loopback address ip and posts
// evidence for machine that declares size bytes but sends only its first
// byte. It returns the connection, which the caller reads or closes.
func slowUpload(t *testing.T, h *harness, ip, machine string, size int) net.Conn {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	conn, err := dialer.Dial("tcp", h.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /v1/agents/%s/evidence HTTP/1.1\r\nHost: verifier\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", machine, size)
	return conn
}

// readStatus reads the status code of the response on conn, waiting at
// most wait.
func readStatus(t *testing.T, conn net.Conn, wait time.Duration) (int, error) {
	t.Helper()
	status, _, err := readResponse(t, conn, wait)
	return status, err
}

// readResponse reads the status code and body of the response on conn,
// waiting at most wait.
func readResponse(t *testing.T, conn net.Conn, wait time.Duration) (int, string, error) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func TestSlowEvidenceUploadsDoNotBlockAgent(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.newAgent(t, "victim", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The uploads name the victim, which has a challenge, so they pass the
	// check before reading. They come from another address than the agent.
	ch := h.challenge(t, "victim")
	const uploads = 2 * maxEvidenceBodiesPerSource
	conns := make([]net.Conn, uploads)
	for i := range conns {
		conns[i] = slowUpload(t, h, "127.0.0.2", "victim", 30_000_000)
	}
	rejected := 0
	for i, conn := range conns {
		status, err := readStatus(t, conn, 200*time.Millisecond)
		switch {
		case err == nil && status == http.StatusTooManyRequests:
			rejected++
		case err == nil:
			t.Errorf("slow upload %d: status %d before its body arrived", i, status)
		}
	}
	if want := uploads - maxEvidenceBodiesPerSource; rejected != want {
		t.Errorf("%d slow uploads rejected at once, want %d (over the limit of %d per source)", rejected, want, maxEvidenceBodiesPerSource)
	}

	start := time.Now()
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	v, status, err := h.send("victim", ev)
	if err != nil {
		t.Fatalf("agent evidence during the slow uploads: %d %v", status, err)
	}
	if v.BootCount != 1 {
		t.Errorf("verdict %+v, want boot 1", v)
	}
	if elapsed := time.Since(start); elapsed > evidenceSlotWait/2 {
		t.Errorf("agent evidence took %s during the slow uploads", elapsed)
	}
}

func TestSlowEvidenceBodyTimesOut(t *testing.T) {
	h := newHarness(t, Config{})
	h.srv.mu.Lock()
	h.srv.evidenceReadBase = 300 * time.Millisecond
	h.srv.mu.Unlock()
	if err := h.newAgent(t, "slow", "").Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.challenge(t, "slow")

	start := time.Now()
	conn := slowUpload(t, h, "127.0.0.2", "slow", 1000)
	status, body, err := readResponse(t, conn, 5*time.Second)
	if err != nil {
		t.Fatalf("no response to a body that stopped arriving: %v", err)
	}
	if status != http.StatusBadRequest {
		t.Errorf("status %d, want 400", status)
	}
	if !strings.Contains(body, "timed out") {
		t.Errorf("response %q does not say that the body timed out", body)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("the server waited %s for a body of 1000 bytes, want about 300ms", elapsed)
	}
}

func TestEvidenceBudgetLimits(t *testing.T) {
	var b evidenceBudget
	for i := range maxEvidenceBodiesPerSource {
		if !b.admit("a") {
			t.Fatalf("body %d of one source not admitted", i+1)
		}
	}
	if b.admit("a") {
		t.Errorf("body %d of one source admitted over the limit of %d", maxEvidenceBodiesPerSource+1, maxEvidenceBodiesPerSource)
	}
	if !b.charge("a", maxEvidenceBufferPerSource) {
		t.Fatal("a source's first full-size buffer not charged")
	}
	if b.charge("a", 1) {
		t.Error("a source's buffer charged over its limit")
	}

	// Other sources share the global limit.
	var full int
	for i := range 2 * maxEvidenceBuffer / maxEvidenceBufferPerSource {
		source := fmt.Sprint("s", i)
		if !b.admit(source) {
			t.Fatalf("first body of source %s not admitted", source)
		}
		if b.charge(source, maxEvidenceBufferPerSource) {
			full++
		}
	}
	if want := maxEvidenceBuffer/maxEvidenceBufferPerSource - 1; full != want {
		t.Errorf("%d more sources charged a full buffer, want %d under the global limit", full, want)
	}

	b.done("a", maxEvidenceBufferPerSource)
	if !b.admit("a") {
		t.Error("source not admitted after one of its bodies ended")
	}
	if !b.charge("s0", 1) == (b.buffered >= maxEvidenceBuffer) {
		t.Errorf("charge after release: buffered %d of %d", b.buffered, maxEvidenceBuffer)
	}
}
