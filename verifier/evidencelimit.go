package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/internal/strictjson"
)

// Evidence bodies are large (up to api.MaxEvidenceBytes) and arrive before
// their signature can be checked. The server therefore reads none for a
// machine that it has issued no challenge to. It reads each body in full
// before the body takes one of the decoding slots, so a client that sends
// its body slowly holds no slot. The limits below bound what bodies still
// arriving can hold.
const (
	// maxConcurrentEvidence bounds the evidence bodies decoded at once.
	maxConcurrentEvidence = 4
	// evidenceSlotWait bounds the wait for a decoding slot once the body
	// has arrived.
	evidenceSlotWait = 10 * time.Second
	// maxEvidenceBodiesPerSource bounds the evidence bodies that one
	// request source (requestSource) uploads at once. Machines behind one
	// NAT address share it, and an agent over it gets 429 and retries.
	maxEvidenceBodiesPerSource = 8
	// The first evidenceSmallBody bytes of each body's buffer come from
	// one pool of memory and the rest from another. Agents' bodies are
	// usually below 1 MiB (an event log of tens of KiB and new IMA
	// entries), so clients that hold large bodies cannot starve them.
	// Each pool has a cap per source and one for all sources together.
	evidenceSmallBody = 1 << 20
	// maxSmallBufferPerSource and maxSmallBuffer bound the small pool:
	// to fill it, clients need 16 sources.
	maxSmallBufferPerSource = 2 << 20
	maxSmallBuffer          = 32 << 20
	// maxLargeBufferPerSource and maxLargeBuffer bound the large pool:
	// one body of the maximum size per source, 4 in all.
	maxLargeBufferPerSource = api.MaxEvidenceBytes - evidenceSmallBody
	maxLargeBuffer          = 4 * maxLargeBufferPerSource
	// evidenceMinRate is the slowest upload, in bytes per second, that
	// the read deadline of an evidence body allows for after
	// evidenceReadBase: 256 KiB/s, or about 2 Mbit/s.
	evidenceMinRate  = 256 << 10
	evidenceReadBase = 10 * time.Second
	// evidenceFirstBuffer is the buffer a body starts with. It doubles as
	// bytes arrive, so a client that declares a large body and sends
	// little of it makes the server allocate little.
	evidenceFirstBuffer = 64 << 10
)

// evidenceCap bounds the evidence bodies being read, and the bytes their
// buffers hold in each pool, for the sources in one network prefix.
type evidenceCap struct {
	bits         int
	bodies       int
	small, large int64
}

// Caps per network prefix, narrowest first: the request source (an IPv4
// address or IPv6 /64), then the prefixes one site or customer usually
// holds (an IPv4 /24, an IPv6 /56 and /48). Without the wider caps, 16
// addresses of one /24 could fill the small pool and block every agent.
// With them, clients need 4 IPv4 /24 prefixes, or 2 IPv6 /48 prefixes, to
// fill it.
var (
	sourceEvidenceCap = evidenceCap{bodies: maxEvidenceBodiesPerSource, small: maxSmallBufferPerSource, large: maxLargeBufferPerSource}
	ipv4EvidenceCaps  = []evidenceCap{withBits(sourceEvidenceCap, 32), {24, 32, 8 << 20, 2 * maxLargeBufferPerSource}}
	ipv6EvidenceCaps  = []evidenceCap{withBits(sourceEvidenceCap, 64), {56, 32, 8 << 20, 2 * maxLargeBufferPerSource}, {48, 64, 16 << 20, 2 * maxLargeBufferPerSource}}
)

func withBits(c evidenceCap, bits int) evidenceCap {
	c.bits = bits
	return c
}

// evidenceLimit is one cap with the key of the prefix it applies to.
type evidenceLimit struct {
	key string
	evidenceCap
}

// evidenceLimits returns the caps that apply to a client at remoteAddr,
// narrowest first. A host that is not an IP address gets the source cap
// alone.
func evidenceLimits(remoteAddr string) []evidenceLimit {
	host, addr, ok := remoteHost(remoteAddr)
	if !ok {
		return []evidenceLimit{{host, sourceEvidenceCap}}
	}
	caps := ipv4EvidenceCaps
	if addr.Is6() {
		caps = ipv6EvidenceCaps
	}
	limits := make([]evidenceLimit, len(caps))
	for i, c := range caps {
		limits[i] = evidenceLimit{prefixKey(addr, c.bits), c}
	}
	return limits
}

// evidenceBudget counts the evidence bodies being read and the bytes
// their buffers hold in each pool, per network prefix (evidenceLimits) and
// in all.
type evidenceBudget struct {
	mu           sync.Mutex
	small, large int64
	sources      map[string]*sourceUse
}

type sourceUse struct {
	bodies       int
	small, large int64
}

// splitBuffer returns how much of a buffer of size bytes comes from the
// small pool and how much from the large one.
func splitBuffer(size int64) (small, large int64) {
	small = min(size, evidenceSmallBody)
	return small, size - small
}

// admit counts a new body from the client at remote (a RemoteAddr), or
// returns false when a prefix of the client already uploads its cap of
// bodies.
func (b *evidenceBudget) admit(remote string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sources == nil {
		b.sources = map[string]*sourceUse{}
	}
	limits := evidenceLimits(remote)
	for _, l := range limits {
		if u := b.sources[l.key]; u != nil && u.bodies >= l.bodies {
			return false
		}
	}
	for _, l := range limits {
		u := b.sources[l.key]
		if u == nil {
			u = &sourceUse{}
			b.sources[l.key] = u
		}
		u.bodies++
	}
	return true
}

// grow counts the growth of an admitted body's buffer of the client at
// remote from size from to size to. It returns false when that would pass
// a cap of either pool, for a prefix of the client or for all clients.
func (b *evidenceBudget) grow(remote string, from, to int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	smallFrom, largeFrom := splitBuffer(from)
	smallTo, largeTo := splitBuffer(to)
	small, large := smallTo-smallFrom, largeTo-largeFrom
	if b.small+small > maxSmallBuffer || b.large+large > maxLargeBuffer {
		return false
	}
	limits := evidenceLimits(remote)
	for _, l := range limits {
		u := b.sources[l.key]
		if u.small+small > l.small || u.large+large > l.large {
			return false
		}
	}
	for _, l := range limits {
		u := b.sources[l.key]
		u.small += small
		u.large += large
	}
	b.small += small
	b.large += large
	return true
}

// done ends an admitted body of the client at remote whose buffer grew to
// size bytes.
func (b *evidenceBudget) done(remote string, size int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	small, large := splitBuffer(size)
	for _, l := range evidenceLimits(remote) {
		u := b.sources[l.key]
		u.small -= small
		u.large -= large
		if u.bodies--; u.bodies == 0 {
			delete(b.sources, l.key)
		}
	}
	b.small -= small
	b.large -= large
}

// hasChallenge reports whether the server holds a challenge issued to the
// machine. Used and expired challenges count, so that the evidence handler
// still reports a replayed nonce or a late response as such.
func (s *Server) hasChallenge(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.challenges {
		if ch.machine == name {
			return true
		}
	}
	return false
}

// acquireEvidenceSlot waits up to evidenceSlotWait for one of the
// maxConcurrentEvidence decoding slots. It returns the function that frees
// the slot, or false when none came free in time.
func (s *Server) acquireEvidenceSlot(ctx context.Context) (func(), bool) {
	timer := time.NewTimer(evidenceSlotWait)
	defer timer.Stop()
	select {
	case s.evidenceSlots <- struct{}{}:
		return func() { <-s.evidenceSlots }, true
	case <-timer.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

// evidenceReadTime returns the time that an evidence body of size bytes
// may take to arrive. An unknown size (-1) counts as the maximum.
func (s *Server) evidenceReadTime(size int64) time.Duration {
	if size < 0 || size > api.MaxEvidenceBytes {
		size = api.MaxEvidenceBytes
	}
	s.mu.Lock()
	base := s.evidenceReadBase
	s.mu.Unlock()
	return base + time.Duration(size)*time.Second/evidenceMinRate
}

var (
	errEvidenceBudget = errors.New("the verifier is buffering too much evidence")
	errEvidenceSize   = errors.New("evidence body too large")
)

// readEvidenceBody reads r's body of at most api.MaxEvidenceBytes into a
// buffer that grows as bytes arrive, counting each growth in the budget of
// the client at remote. It returns the size the buffer grew to, which the
// caller releases, also on error.
func (s *Server) readEvidenceBody(r *http.Request, remote string) (body []byte, charged int64, err error) {
	limit := int64(api.MaxEvidenceBytes)
	if r.ContentLength >= 0 {
		limit = r.ContentLength
	}
	buf := make([]byte, 0)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == limit {
				// One byte more than the limit means the body is too long.
				var extra [1]byte
				n, err := io.ReadFull(r.Body, extra[:])
				if n > 0 {
					return nil, charged, errEvidenceSize
				}
				if err != io.EOF {
					return nil, charged, err
				}
				return buf, charged, nil
			}
			grown := min(max(2*int64(cap(buf)), evidenceFirstBuffer), limit)
			if !s.evidenceBudget.grow(remote, int64(cap(buf)), grown) {
				return nil, charged, errEvidenceBudget
			}
			charged = grown
			next := make([]byte, len(buf), grown)
			copy(next, buf)
			buf = next
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, charged, nil
		}
		if err != nil {
			return nil, charged, err
		}
	}
}

// readEvidence runs the checks that come before decoding an evidence body,
// reads the body and decodes it into ev. It writes the error response and
// returns false when any step fails.
func (s *Server) readEvidence(w http.ResponseWriter, r *http.Request, name string, ev *api.Evidence) bool {
	if !s.hasChallenge(name) {
		s.logRejected(s.log, "evidence rejected before reading: no challenge issued", "machine", name)
		writeError(w, http.StatusBadRequest, api.CodeChallenge, "no challenge was issued to machine "+name+": request a new one")
		return false
	}
	if r.ContentLength > api.MaxEvidenceBytes {
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, api.MaxEvidenceBytes))
		return false
	}
	source := requestSource(r)
	if !s.evidenceBudget.admit(r.RemoteAddr) {
		s.logRejected(s.log, "evidence rejected: too many evidence uploads from one source", "machine", name, "source", source, "remote", r.RemoteAddr, "limit", maxEvidenceBodiesPerSource)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, api.CodeRateLimited, fmt.Sprintf("%d evidence uploads from %s are in progress: retry in a few seconds", maxEvidenceBodiesPerSource, source))
		return false
	}
	var charged int64
	defer func() { s.evidenceBudget.done(r.RemoteAddr, charged) }()

	readTime := s.evidenceReadTime(r.ContentLength)
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(readTime)); err != nil {
		s.log.Warn("cannot set the read deadline of an evidence body: it is bounded by the server's read timeout only", "err", err)
	}
	body, charged, err := s.readEvidenceBody(r, r.RemoteAddr)
	switch {
	case errors.Is(err, errEvidenceSize):
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "request body exceeds its Content-Length or the limit of "+itoa(api.MaxEvidenceBytes)+" bytes")
		return false
	case errors.Is(err, errEvidenceBudget):
		s.logRejected(s.log, "evidence rejected: evidence buffer limit reached", "machine", name, "source", source, "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the verifier is receiving too much evidence at once: retry in a few seconds")
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.logRejected(s.log, "evidence rejected: the body timed out", "machine", name, "remote", r.RemoteAddr, "limit", readTime)
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("the evidence body timed out: a body of this size must arrive within %s (at least %d KiB/s)", readTime.Round(time.Second), evidenceMinRate>>10))
		return false
	case err != nil:
		s.logRejected(s.log, "evidence rejected: reading the body failed", "machine", name, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("read body: %v (a body of this size must arrive within %s)", err, readTime.Round(time.Second)))
		return false
	}

	release, ok := s.acquireEvidenceSlot(r.Context())
	if !ok {
		s.logRejected(s.log, "evidence rejected: too many concurrent evidence requests", "machine", name, "limit", maxConcurrentEvidence)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the verifier is busy decoding other evidence: retry in a few seconds")
		return false
	}
	defer release()
	if err := strictjson.DecodeLarge(body, ev, strictjson.Options{}); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("invalid JSON: %v", err))
		return false
	}
	return true
}
