// Package notify delivers the verifier's machine state changes to
// webhooks. Each change is a JSON document (api.StateChange) sent by POST
// to every configured URL and signed with HMAC-SHA256 over the body.
//
// Delivery is asynchronous: Notify queues the change and returns at once.
// Each URL has its own bounded queue, split into shards by machine name,
// and one worker per shard sends its changes in order, so the changes of
// one machine arrive in the order they happened. A failed attempt is
// retried with exponential backoff up to a maximum number of attempts.
// When a shard's queue is full, its oldest change is dropped, counted and
// logged.
package notify

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-attest/vouch/api"
)

// HTTP headers of each delivery.
const (
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the
	// body, keyed with the shared secret.
	HeaderSignature = "X-Vouch-Signature-256"
	// HeaderDelivery carries the change's delivery ID, also in the body.
	HeaderDelivery = "X-Vouch-Delivery"
	// HeaderEvent carries the document type, api.StateChangeType.
	HeaderEvent = "X-Vouch-Event"
	// HeaderAttempt carries the attempt number, counted from 1.
	HeaderAttempt = "X-Vouch-Attempt"
)

// MinSecretBytes is the shortest accepted signing secret.
const MinSecretBytes = 16

// Config configures a Dispatcher. Zero values take the defaults noted.
type Config struct {
	// URLs are the webhook endpoints. Each must be https, or http to a
	// loopback address (127.0.0.0/8, ::1, localhost) unless
	// AllowInsecureHTTP is set.
	URLs []string
	// Secret keys the HMAC-SHA256 signature of each body. It must have at
	// least MinSecretBytes bytes.
	Secret []byte
	// AllowInsecureHTTP accepts http URLs to any host.
	AllowInsecureHTTP bool
	// RootCAs verifies the endpoints' certificates (default the system's
	// roots). It is not used when Client is set.
	RootCAs *x509.CertPool
	// Client sends the requests (default: TLS 1.2 or later, RootCAs,
	// proxies from the environment, no redirects followed).
	Client *http.Client
	// Timeout bounds each attempt, the response included (default 10s).
	Timeout time.Duration
	// MaxAttempts bounds the attempts per change and URL (default 8).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait before a retry (defaults 1s
	// and 60s). It doubles after each failed attempt, and jitter spreads
	// it over its upper half. A Retry-After header lengthens it, up to
	// MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// QueueSize bounds the changes queued per URL (default 1024).
	QueueSize int
	// Workers is the number of shards, each with one worker, per URL
	// (default 4).
	Workers int
	Logger  *slog.Logger
	// Registerer receives the delivery metrics (default none).
	Registerer prometheus.Registerer
	// Rand generates delivery IDs (default crypto/rand.Reader).
	Rand io.Reader
}

// Dispatcher queues state changes and delivers them to the webhooks.
// Create it with New and stop it with Close.
type Dispatcher struct {
	cfg       Config
	client    *http.Client
	log       *slog.Logger
	endpoints []*endpoint
	metrics   *metrics

	// abort is closed when Close gives up waiting: in-flight attempts and
	// retry waits end, and what remains is reported as abandoned.
	abort     chan struct{}
	abortCtx  context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

type endpoint struct {
	index  string // label of the metrics: the URL's position in Config.URLs
	url    string
	shown  string // the URL without path, query or user information, for logs
	shards []*shard
}

// item is one queued change with its encoded body.
type item struct {
	change api.StateChange
	body   []byte
}

type shard struct {
	mu      sync.Mutex
	queue   []item
	limit   int
	wake    chan struct{}
	closing bool
	// Dropped changes since the last log line about them.
	droppedSinceLog int
	lastDropLog     time.Time
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(60*time.Second, c.MinBackoff)
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	c.Workers = min(c.Workers, c.QueueSize)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rand == nil {
		c.Rand = cryptorand.Reader
	}
}

// New validates cfg and starts the workers.
func New(cfg Config) (*Dispatcher, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("notify: no webhook URL given")
	}
	if len(cfg.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("notify: webhook secret of %d bytes is too short: give at least %d random bytes", len(cfg.Secret), MinSecretBytes)
	}
	cfg.setDefaults()

	d := &Dispatcher{cfg: cfg, client: cfg.Client, log: cfg.Logger, abort: make(chan struct{})}
	if d.client == nil {
		d.client = defaultClient(cfg)
	}

	perShard := (cfg.QueueSize + cfg.Workers - 1) / cfg.Workers
	for i, raw := range cfg.URLs {
		shown, err := checkURL(raw, cfg.AllowInsecureHTTP)
		if err != nil {
			return nil, err
		}
		ep := &endpoint{index: strconv.Itoa(i), url: raw, shown: shown}
		for range cfg.Workers {
			ep.shards = append(ep.shards, &shard{limit: perShard, wake: make(chan struct{}, 1)})
		}
		d.endpoints = append(d.endpoints, ep)
	}

	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	d.metrics = m
	d.abortCtx, d.cancel = context.WithCancel(context.Background())
	for _, ep := range d.endpoints {
		d.log.Info("webhook configured", "webhook", ep.index, "url", ep.shown)
		for _, sh := range ep.shards {
			d.wg.Add(1)
			go d.work(ep, sh)
		}
	}
	return d, nil
}

func defaultClient(cfg Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A redirect could lead the signed body to another host or to
		// plain HTTP: the response counts as a failure instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// checkURL validates a webhook URL and returns the form shown in logs.
func checkURL(raw string, allowHTTP bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("notify: invalid webhook URL %q: give an absolute URL such as https://alerts.example.net/vouch", redact(raw))
	}
	shown := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		shown += "/…"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP && !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("notify: webhook URL %s uses plain http to a host that is not loopback: use https, or pass --insecure-webhook-http to send the signed body in clear", shown)
		}
	default:
		return "", fmt.Errorf("notify: webhook URL %s: the scheme must be https (or http to a loopback address)", shown)
	}
	return shown, nil
}

// redact cuts a URL that did not parse down to its first characters.
func redact(raw string) string {
	if len(raw) > 24 {
		return raw[:24] + "…"
	}
	return raw
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Notify queues change for every webhook and returns without waiting. It
// sets change.DeliveryID. After Close it drops the change and logs it.
func (d *Dispatcher) Notify(change api.StateChange) {
	var id [16]byte
	if _, err := io.ReadFull(d.cfg.Rand, id[:]); err != nil {
		d.log.Error("webhook change dropped: no random delivery ID", "machine", change.Machine, "err", err)
		return
	}
	change.DeliveryID = hex.EncodeToString(id[:])

	if change.Type == "" {
		change.Type = api.StateChangeType
	}
	body, err := json.Marshal(change)
	if err != nil {
		d.log.Error("webhook change dropped: cannot encode it", "machine", change.Machine, "err", err)
		return
	}

	// The lock keeps Close from finishing between the check and the push,
	// which would leave the change in a queue that no worker reads.
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.log.Warn("webhook change dropped: the dispatcher is closed", "machine", change.Machine, "delivery", change.DeliveryID)
		for _, ep := range d.endpoints {
			d.metrics.dropped.WithLabelValues(ep.index).Inc()
		}
		return
	}

	h := fnv.New32a()
	h.Write([]byte(change.Machine))
	for _, ep := range d.endpoints {
		sh := ep.shards[int(h.Sum32()%uint32(len(ep.shards)))]
		d.push(ep, sh, item{change: change, body: body})
	}
}

// push appends it to the shard's queue, dropping the oldest change when
// the queue is full.
func (d *Dispatcher) push(ep *endpoint, sh *shard, it item) {
	sh.mu.Lock()
	var dropped *item
	if len(sh.queue) >= sh.limit {
		dropped = &sh.queue[0]
		sh.queue = sh.queue[1:]
		sh.droppedSinceLog++
	}
	sh.queue = append(sh.queue, it)
	logDrop := dropped != nil && time.Since(sh.lastDropLog) >= dropLogInterval
	var droppedCount int
	if logDrop {
		droppedCount, sh.droppedSinceLog = sh.droppedSinceLog, 0
		sh.lastDropLog = time.Now()
	}
	sh.mu.Unlock()
	d.metrics.queued.WithLabelValues(ep.index).Inc()
	if dropped != nil {
		d.metrics.dropped.WithLabelValues(ep.index).Inc()
		d.metrics.queued.WithLabelValues(ep.index).Dec()
	}
	if logDrop {
		d.log.Warn("webhook queue full: dropped the oldest change", "webhook", ep.index, "url", ep.shown,
			"machine", dropped.change.Machine, "delivery", dropped.change.DeliveryID, "dropped_since_last_report", droppedCount,
			"queue_limit", sh.limit)
	}
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// dropLogInterval is the least time between two log lines about dropped
// changes of one shard. The metric counts every drop.
const dropLogInterval = 10 * time.Second

// next returns the shard's next change, waiting for one. It returns false
// once the shard is closing and empty.
func (sh *shard) next() (item, bool) {
	for {
		sh.mu.Lock()
		if len(sh.queue) > 0 {
			it := sh.queue[0]
			sh.queue[0] = item{}
			sh.queue = sh.queue[1:]
			sh.mu.Unlock()
			return it, true
		}
		closing := sh.closing
		sh.mu.Unlock()
		if closing {
			return item{}, false
		}
		<-sh.wake
	}
}

func (d *Dispatcher) work(ep *endpoint, sh *shard) {
	defer d.wg.Done()
	for {
		it, ok := sh.next()
		if !ok {
			return
		}
		d.metrics.queued.WithLabelValues(ep.index).Dec()
		d.deliver(ep, it)
	}
}

// deliver sends one change to one webhook, retrying failed attempts.
func (d *Dispatcher) deliver(ep *endpoint, it item) {
	log := d.log.With("webhook", ep.index, "url", ep.shown, "machine", it.change.Machine, "delivery", it.change.DeliveryID)
	backoff := d.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		status, retryAfter, err := d.post(ep, it, attempt)
		d.metrics.attempts.WithLabelValues(ep.index, statusClass(status, err)).Inc()
		if err == nil && status >= 200 && status < 300 {
			d.metrics.deliveries.WithLabelValues(ep.index, "delivered").Inc()
			log.Debug("webhook delivered", "attempt", attempt, "status", status)
			return
		}
		if d.aborted() {
			d.metrics.deliveries.WithLabelValues(ep.index, "abandoned").Inc()
			log.Warn("webhook delivery abandoned at shutdown", "attempt", attempt)
			return
		}
		failure := fmt.Sprintf("status %d", status)
		if err != nil {
			failure = err.Error()
		}
		if !retryable(status, err) || attempt >= d.cfg.MaxAttempts {
			d.metrics.deliveries.WithLabelValues(ep.index, "failed").Inc()
			log.Error("webhook delivery failed", "attempts", attempt, "err", failure,
				"retryable", retryable(status, err))
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if retryAfter > wait {
			wait = min(retryAfter, d.cfg.MaxBackoff)
		}
		backoff = min(2*backoff, d.cfg.MaxBackoff)
		log.Warn("webhook attempt failed, retrying", "attempt", attempt, "err", failure, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.abort:
			t.Stop()
			d.metrics.deliveries.WithLabelValues(ep.index, "abandoned").Inc()
			log.Warn("webhook delivery abandoned at shutdown", "attempts", attempt)
			return
		}
	}
}

func (d *Dispatcher) aborted() bool {
	select {
	case <-d.abort:
		return true
	default:
		return false
	}
}

// post makes one attempt. It returns the response status, the wait that
// the response's Retry-After header requests, and an error when no response came.
func (d *Dispatcher) post(ep *endpoint, it item, attempt int) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(d.abortCtx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(it.body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vouch-webhook/1")
	req.Header.Set(HeaderEvent, it.change.Type)
	req.Header.Set(HeaderDelivery, it.change.DeliveryID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	req.Header.Set(HeaderSignature, Sign(d.cfg.Secret, it.body))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, 0, scrubURL(err)
	}
	defer resp.Body.Close()
	// Draining a bounded part of the body lets the connection be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After")), nil
}

// scrubURL removes the request URL, which may hold a secret, from a
// client error.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter reads a Retry-After header given in seconds. The HTTP-date
// form is ignored, and the normal backoff applies.
func retryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(v)
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// retryable reports whether a failed attempt may succeed later: no
// response, a server error, 408 Request Timeout or 429 Too Many Requests.
// Other statuses (redirects, client errors) would repeat.
func retryable(status int, err error) bool {
	if err != nil {
		return true
	}
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
}

func statusClass(status int, err error) string {
	if err != nil {
		return "error"
	}
	return strconv.Itoa(status/100) + "xx"
}

// Close stops accepting changes and waits for the queued ones to be
// delivered, retries included, until ctx is done. It then cancels the
// attempts in progress and returns an error that counts the changes left
// undelivered.
func (d *Dispatcher) Close(ctx context.Context) error {
	var err error
	d.closeOnce.Do(func() { err = d.close(ctx) })
	return err
}

func (d *Dispatcher) close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()

	for _, ep := range d.endpoints {
		for _, sh := range ep.shards {
			sh.mu.Lock()
			sh.closing = true
			sh.mu.Unlock()
			select {
			case sh.wake <- struct{}{}:
			default:
			}
		}
	}

	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		d.cancel()
		return nil
	case <-ctx.Done():
	}

	// The abort ends the attempts and retry waits in progress, and what is
	// still queued is abandoned.
	close(d.abort)
	d.cancel()
	var queued int
	for _, ep := range d.endpoints {
		for _, sh := range ep.shards {
			sh.mu.Lock()
			n := len(sh.queue)
			sh.queue = nil
			sh.mu.Unlock()
			queued += n
			d.metrics.deliveries.WithLabelValues(ep.index, "abandoned").Add(float64(n))
			d.metrics.queued.WithLabelValues(ep.index).Sub(float64(n))
		}
	}
	<-done
	d.log.Warn("webhook dispatcher closed with undelivered changes", "queued_abandoned", queued)
	return fmt.Errorf("notify: shutdown cut webhook deliveries short: %d queued changes and the attempts in progress were abandoned (the log names each attempt)", queued)
}
