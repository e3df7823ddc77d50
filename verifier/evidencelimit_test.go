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

	"github.com/vouch-attest/vouch/api"
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

	// One source holds one body of the maximum size, which takes its
	// share of the small pool's first MiB, and one more small body.
	if !b.grow("a", 0, api.MaxEvidenceBytes) {
		t.Fatal("a source's first full-size buffer not counted")
	}
	if b.grow("a", 0, evidenceSmallBody+1) {
		t.Error("a source's second large buffer counted over the large pool's limit per source")
	}
	if !b.grow("a", 0, evidenceSmallBody) {
		t.Error("a source's small buffer not counted beside its large one")
	}
	if b.grow("a", 0, 1) {
		t.Error("a source's buffer counted over the small pool's limit per source")
	}

	// Other sources share each pool's global limit: 4 large bodies in all,
	// and 32 MiB of small ones.
	large := 0
	for i := range 8 {
		source := fmt.Sprint("large", i)
		b.admit(source)
		if b.grow(source, evidenceSmallBody, api.MaxEvidenceBytes) {
			large++
		}
	}
	if want := maxLargeBuffer/maxLargeBufferPerSource - 1; large != want {
		t.Errorf("%d more sources counted a large buffer, want %d under the global limit", large, want)
	}
	small := 0
	for i := range 2 * maxSmallBuffer / maxSmallBufferPerSource {
		source := fmt.Sprint("small", i)
		b.admit(source)
		b.admit(source)
		first := b.grow(source, 0, evidenceSmallBody)
		second := b.grow(source, 0, evidenceSmallBody)
		if first && second {
			small++
		}
	}
	if want := (maxSmallBuffer - 2*evidenceSmallBody) / maxSmallBufferPerSource; small != want {
		t.Errorf("%d sources counted a full small share, want %d under the global limit", small, want)
	}

	// Ending a body returns its buffer to the pools.
	b.done("a", api.MaxEvidenceBytes)
	if !b.admit("a") {
		t.Error("source not admitted after one of its bodies ended")
	}
	if !b.grow("large0", api.MaxEvidenceBytes, api.MaxEvidenceBytes) {
		t.Error("a growth of nothing not counted")
	}
	b.admit("b")
	if !b.grow("b", evidenceSmallBody, api.MaxEvidenceBytes) {
		t.Errorf("large buffer not counted after a large body ended: large pool %d of %d", b.large, maxLargeBuffer)
	}
}

// TestLargeEvidenceDoesNotBlockSmall fills the pool of large evidence
// buffers, as clients holding back the end of 32 MiB bodies do, and
// checks that an agent's evidence still arrives.
func TestLargeEvidenceDoesNotBlockSmall(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.newAgent(t, "small", "")
	if err := a.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := &h.srv.evidenceBudget
	for i := range maxLargeBuffer / maxLargeBufferPerSource {
		source := fmt.Sprintf("10.%d.0.1:4000", i) // one /24 each
		b.admit(source)
		if !b.grow(source, 0, api.MaxEvidenceBytes) {
			t.Fatalf("large body %d not counted", i)
		}
	}
	if b.large != maxLargeBuffer {
		t.Fatalf("large pool holds %d, want it full at %d", b.large, maxLargeBuffer)
	}
	if v := h.attest(t, a); v.BootCount != 1 {
		t.Errorf("verdict %+v with the large pool full, want boot 1", v)
	}

	// With the small pool full too, evidence waits for room.
	for i := range maxSmallBuffer / evidenceSmallBody {
		source := fmt.Sprintf("10.%d.1.1:4000", 100+i) // one /24 each
		b.admit(source)
		b.grow(source, 0, evidenceSmallBody)
	}
	ch := h.challenge(t, "small")
	ev, err := a.Evidence(ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, status, err := h.send("small", ev); status != http.StatusServiceUnavailable || api.ErrorCode(err) != api.CodeUnavailable {
		t.Errorf("evidence with both pools full: status %d, %v; want 503 %s", status, err, api.CodeUnavailable)
	}
}

func TestOversizedEvidenceRejectedUnread(t *testing.T) {
	h := newHarness(t, Config{})
	if err := h.newAgent(t, "big", "").Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.challenge(t, "big")

	// The body never arrives: the declared size alone is rejected.
	conn := slowUpload(t, h, "127.0.0.2", "big", api.MaxEvidenceBytes+1)
	status, body, err := readResponse(t, conn, 5*time.Second)
	if err != nil {
		t.Fatalf("no response to an oversized Content-Length: %v", err)
	}
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, api.CodeTooLarge) {
		t.Errorf("oversized evidence: %d %s, want 413 %s", status, body, api.CodeTooLarge)
	}
}

// TestEvidenceBudgetPrefixCaps checks that the clients of one IPv4 /24 or
// IPv6 /56 hold at most a quarter of the small pool together, however many
// addresses they use, so that agents elsewhere keep room.
func TestEvidenceBudgetPrefixCaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		source func(i int) string
	}{
		{"ipv4 /24", func(i int) string { return fmt.Sprintf("192.0.2.%d:4000", i+1) }},
		{"ipv6 /56", func(i int) string { return fmt.Sprintf("[2001:db8:0:%x::1]:4000", i) }},
	} {
		var b evidenceBudget
		held := int64(0)
		for i := range 32 {
			source := tc.source(i)
			if !b.admit(source) {
				continue
			}
			if b.grow(source, 0, evidenceSmallBody) {
				held += evidenceSmallBody
			}
		}
		if held > 8<<20 {
			t.Errorf("%s: 32 addresses hold %d MiB of the small pool, want at most 8", tc.name, held>>20)
		}
		if !b.admit("198.51.100.7:4000") || !b.grow("198.51.100.7:4000", 0, evidenceSmallBody) {
			t.Errorf("%s: an agent in another prefix found no room", tc.name)
		}
	}
}
