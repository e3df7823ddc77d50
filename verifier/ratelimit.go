package verifier

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// requestSource returns the key under which the server counts a client's
// requests: its IP address, or for IPv6 its /64 prefix, because one host
// usually holds a whole /64. Requests that arrive through a proxy all count
// as the proxy's.
func requestSource(r *http.Request) string {
	return pendingLimits(r.RemoteAddr)[0].key
}

// remoteHost returns the host of a request's RemoteAddr, and its address
// when the host is an IP address.
func remoteHost(remoteAddr string) (string, netip.Addr, bool) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host, netip.Addr{}, false
	}
	return host, addr.Unmap().WithZone(""), true
}

// pendingLimit caps the enrollments in progress whose source lies in one
// network prefix.
type pendingLimit struct {
	// key is the prefix, or for the narrowest limit the request source.
	key string
	max int
}

// prefixCap caps the enrollments in progress from one prefix of bits.
type prefixCap struct{ bits, max int }

// Caps on the enrollments in progress per network prefix, narrowest
// first. A site usually has an IPv6 /48 or /56 (65,536 or 256 /64
// prefixes), and a provider may give a customer many IPv4 addresses of a
// /24. A per-source cap alone would therefore let one site fill the table
// of maxPendingEnrollments. With these caps it takes 9 /48 prefixes, or 18
// IPv4 /24 prefixes, to fill the part of the table that is not reserved
// (reservedPendingEnrollments). Machines behind one NAT address share its
// cap of maxPendingPerSource, which the /24 cap does not lower.
var (
	ipv4PendingCaps = []prefixCap{{32, maxPendingPerSource}, {24, 512}}
	ipv6PendingCaps = []prefixCap{{64, maxPendingPerSource}, {56, 256}, {48, 1024}}
)

// pendingLimits returns the keys under which the enrollments in progress
// of a client at remoteAddr are counted, with their caps, narrowest first.
// The first key is the request source (requestSource): the IPv4 address
// or the IPv6 /64 prefix.
func pendingLimits(remoteAddr string) []pendingLimit {
	host, addr, ok := remoteHost(remoteAddr)
	if !ok {
		return []pendingLimit{{key: host, max: maxPendingPerSource}}
	}
	caps := ipv4PendingCaps
	if addr.Is6() {
		caps = ipv6PendingCaps
	}
	limits := make([]pendingLimit, len(caps))
	for i, c := range caps {
		limits[i] = pendingLimit{key: prefixKey(addr, c.bits), max: c.max}
	}
	return limits
}

// prefixKey returns the key of addr's prefix of bits: the prefix, or the
// address itself for a full-length prefix.
func prefixKey(addr netip.Addr, bits int) string {
	if bits == addr.BitLen() {
		return addr.String()
	}
	prefix, _ := addr.Prefix(bits)
	return prefix.String()
}

// sourceLimiter is a token bucket per request source: each source may send
// burst requests at once and rate per second after that.
type sourceLimiter struct {
	rate, burst float64
	// maxSources bounds the buckets held. When more sources are active,
	// full buckets are dropped, and a source that still finds no room is
	// let through: the caps on pending enrollments bound what it can hold.
	maxSources int

	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

func newSourceLimiter(rate, burst float64, maxSources int) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: burst, maxSources: maxSources, buckets: map[string]*tokenBucket{}}
}

// allow takes a token from source's bucket. Without one it returns false
// and the time until the next token.
func (l *sourceLimiter) allow(source string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[source]
	if !ok {
		if len(l.buckets) >= l.maxSources {
			l.dropFullLocked(now)
		}
		if len(l.buckets) >= l.maxSources {
			return true, 0
		}
		b = &tokenBucket{tokens: l.burst, at: now}
		l.buckets[source] = b
	}
	b.tokens = l.refill(b, now)
	b.at = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
		return false, wait
	}
	b.tokens--
	return true, 0
}

func (l *sourceLimiter) refill(b *tokenBucket, now time.Time) float64 {
	elapsed := max(now.Sub(b.at).Seconds(), 0)
	return math.Min(l.burst, b.tokens+elapsed*l.rate)
}

func (l *sourceLimiter) dropFullLocked(now time.Time) {
	for source, b := range l.buckets {
		if l.refill(b, now) >= l.burst {
			delete(l.buckets, source)
		}
	}
}

// logLimiter bounds the log lines of one kind, such as rejected requests
// from unauthenticated clients, to max per minute, so a flood of requests
// cannot flood the log. The first line allowed after dropped ones carries
// their number.
type logLimiter struct {
	max int

	mu         sync.Mutex
	window     time.Time
	logged     int
	suppressed int
}

// log writes msg at level unless this minute's allowance is spent. A line
// written after dropped ones carries their number as suppressed_before.
func (l *logLimiter) log(logger *slog.Logger, now time.Time, level slog.Level, msg string, args ...any) {
	l.mu.Lock()
	if now.Sub(l.window) >= time.Minute {
		l.window, l.logged = now, 0
	}
	if l.logged >= l.max {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.logged++
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed_before", suppressed)
	}
	logger.Log(context.Background(), level, msg, args...)
}

// logRejected logs a rejected agent request through s.rejectLog.
func (s *Server) logRejected(logger *slog.Logger, msg string, args ...any) {
	s.rejectLog.log(logger, s.now(), slog.LevelWarn, msg, args...)
}

// writeRetryAfter sets the Retry-After header to wait, in whole seconds.
func writeRetryAfter(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retrySecondsInt(wait)))
}

func retrySecondsInt(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

// retrySeconds formats wait as the whole seconds of Retry-After.
func retrySeconds(wait time.Duration) string {
	return strconv.Itoa(retrySecondsInt(wait)) + "s"
}
