package verifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/api"
)

// remoteAddrHeader names the request header from which prefixServer takes
// a request's RemoteAddr, so one loopback client can stand for sources in
// many IPv6 prefixes.
const remoteAddrHeader = "X-Test-Remote-Addr"

// prefixServer serves h's API on loopback with each request's RemoteAddr
// taken from remoteAddrHeader.
func prefixServer(t *testing.T, h *harness) *httptest.Server {
	t.Helper()
	handler := h.srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if addr := r.Header.Get(remoteAddrHeader); addr != "" {
			r.RemoteAddr = addr
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs
}

// enrollFrom posts req to hs as if from remote and returns the status and
// the response body.
func enrollFrom(t *testing.T, hs *httptest.Server, remote string, req api.EnrollRequest) (int, string) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.NewRequest(http.MethodPost, hs.URL+"/v1/enroll", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(remoteAddrHeader, remote)
	resp, err := hs.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

// floodRounds sends rounds enrollment requests from each of remotes, one
// from each per round, with the clock one second later after each round
// so that the rate limit never applies. Each source uses another EK per
// request, so none replaces another. It returns the count per status and
// per prefix named in 429 responses.
func floodRounds(t *testing.T, hs *httptest.Server, clock *testClock, remotes []string, rounds int, eks [][]byte, ak []byte) (map[int]int, map[string]int) {
	t.Helper()
	statuses, named := map[int]int{}, map[string]int{}
	for round := range rounds {
		for i, remote := range remotes {
			req := api.EnrollRequest{Name: fmt.Sprintf("n%d-%d", i, round), EKPublicArea: eks[round], AKPublic: ak}
			status, msg := enrollFrom(t, hs, remote, req)
			statuses[status]++
			if status == http.StatusTooManyRequests {
				var e api.Error
				json.Unmarshal([]byte(msg), &e)
				_, prefix, _ := strings.Cut(e.Message, " enrollments from ")
				prefix, _, _ = strings.Cut(prefix, " are in progress")
				named[prefix]++
			}
		}
		clock.Advance(time.Second)
	}
	return statuses, named
}

// ipv6Remote returns the RemoteAddr of host 1 in the /64 with the given
// fourth group within fd00:1::/48.
func ipv6Remote(group4 int) string {
	return fmt.Sprintf("[fd00:1:0:%x::1]:40000", group4)
}

func TestEnrollmentCapsPerIPv6Prefix(t *testing.T) {
	var challengeLogs atomic.Int64
	logger := slog.New(countingHandler{Handler: slog.NewTextHandler(testWriter{t}, nil), prefix: "enrollment challenge sent", n: &challengeLogs})
	clock := newTestClock()
	start := clock.Now()
	h := newHarness(t, Config{Now: clock.Now, Logger: logger})
	hs := prefixServer(t, h)
	ak := newSoftwareAK(t).public
	eks := make([][]byte, maxPendingPerSource+1)
	for i := range eks {
		eks[i] = randomECCEK(t)
	}
	pending := func(key string) int {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return h.srv.pendingBySource[key]
	}

	// Nine /64 prefixes of one /56 could hold 9 × 32 enrollments: the /56
	// cap stops them at 256.
	var remotes []string
	for j := range 9 {
		remotes = append(remotes, ipv6Remote(j))
	}
	statuses, named := floodRounds(t, hs, clock, remotes, maxPendingPerSource+1, eks, ak)
	if got := pending("fd00:1::/56"); got != 256 {
		t.Errorf("%d enrollments in progress from fd00:1::/56, want its cap of 256 (statuses %v)", got, statuses)
	}
	if named["fd00:1::/56"] == 0 {
		t.Errorf("no 429 response named the /56 prefix: %v", named)
	}

	// Four more /56 prefixes of the same /48, 8 /64 prefixes each: the
	// /48 cap stops the site at 1024.
	remotes = nil
	for n := 1; n <= 4; n++ {
		for j := range 8 {
			remotes = append(remotes, ipv6Remote(n<<8|j))
		}
	}
	statuses, named = floodRounds(t, hs, clock, remotes, maxPendingPerSource, eks, ak)
	if got := pending("fd00:1::/48"); got != 1024 {
		t.Errorf("%d enrollments in progress from fd00:1::/48, want its cap of 1024 (statuses %v)", got, statuses)
	}
	if named["fd00:1::/48"] == 0 {
		t.Errorf("no 429 response named the /48 prefix: %v", named)
	}
	h.srv.mu.Lock()
	total := len(h.srv.enrollments)
	h.srv.mu.Unlock()
	if total != 1024 {
		t.Errorf("%d enrollments in progress in all, want the site's 1024", total)
	}

	// A new /64 of the site is turned away, another site is not.
	req := api.EnrollRequest{Name: "late", EKPublicArea: randomECCEK(t), AKPublic: ak}
	if status, msg := enrollFrom(t, hs, ipv6Remote(0x900), req); status != http.StatusTooManyRequests || !strings.Contains(msg, "fd00:1::/48") {
		t.Errorf("new /64 of the full site: %d %s, want 429 naming fd00:1::/48", status, msg)
	}
	req = api.EnrollRequest{Name: "elsewhere", EKPublicArea: randomECCEK(t), AKPublic: ak}
	if status, msg := enrollFrom(t, hs, "[fd00:2::1]:40000", req); status != http.StatusOK {
		t.Errorf("enrollment from another site: %d %s", status, msg)
	}

	// Over 1000 challenges were sent: their log lines stay within the
	// limit of each minute of the test clock.
	minutes := int64(clock.Now().Sub(start)/time.Minute) + 1
	if n := challengeLogs.Load(); n > minutes*maxEnrollLogsPerMinute {
		t.Errorf("%d log lines for enrollment challenges over %d minutes, want at most %d a minute", n, minutes, maxEnrollLogsPerMinute)
	}
}

func TestEnrollmentCapPerIPv4Prefix(t *testing.T) {
	clock := newTestClock()
	h := newHarness(t, Config{Now: clock.Now})
	hs := prefixServer(t, h)
	ak := newSoftwareAK(t).public
	eks := make([][]byte, maxPendingPerSource+1)
	for i := range eks {
		eks[i] = randomECCEK(t)
	}
	// 17 addresses of one /24 could hold 17 × 32 enrollments.
	var remotes []string
	for i := 1; i <= 17; i++ {
		remotes = append(remotes, fmt.Sprintf("198.51.100.%d:40000", i))
	}
	statuses, named := floodRounds(t, hs, clock, remotes, maxPendingPerSource+1, eks, ak)
	h.srv.mu.Lock()
	got := h.srv.pendingBySource["198.51.100.0/24"]
	h.srv.mu.Unlock()
	if got != 512 {
		t.Errorf("%d enrollments in progress from 198.51.100.0/24, want its cap of 512 (statuses %v)", got, statuses)
	}
	if named["198.51.100.0/24"] == 0 {
		t.Errorf("no 429 response named the /24 prefix: %v", named)
	}
}

func TestEnrollmentTableReserve(t *testing.T) {
	h := newHarness(t, Config{})
	s := h.srv
	now := s.now()
	add := func(id, remote string) error {
		limits := pendingLimits(remote)
		e := &enrollment{source: limits[0].key, limits: limits, name: id, ekHash: id, expires: now.Add(enrollmentTTL)}
		_, err := s.addEnrollmentLocked(id, e, now)
		return err
	}
	// remote returns an address in the i-th /24 of 10.0.0.0/8.
	remote := func(i int) string {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		return a.String() + ":40000"
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	open := maxPendingEnrollments - reservedPendingEnrollments
	for i := range open {
		if err := add(fmt.Sprint("e", i), remote(i)); err != nil {
			t.Fatalf("enrollment %d: %v", i, err)
		}
	}
	// Past the open part, a /24 that already has an enrollment in progress
	// gets no more, and a /24 without one does.
	if err := add("again", "10.0.0.2:40000"); err != errTableFull {
		t.Errorf("second enrollment of a /24 in the reserve: %v, want %v", err, errTableFull)
	}
	for i := range reservedPendingEnrollments {
		if err := add(fmt.Sprint("r", i), remote(open+i)); err != nil {
			t.Fatalf("reserved enrollment %d of a new /24: %v", i, err)
		}
	}
	if err := add("over", remote(maxPendingEnrollments)); err != errTableFull {
		t.Errorf("enrollment over the table's size: %v, want %v", err, errTableFull)
	}
}
