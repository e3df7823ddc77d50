// Package verifier is the vouch server. It enrolls machines by their TPM's
// endorsement key and binds each attestation key by credential activation.
// It challenges enrolled agents with fresh nonces, verifies their quotes and
// event logs, judges them with a Policy, and keeps each machine's state and
// history in a store.Store.
package verifier

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/store"
)

// EK trust modes.
const (
	// EKModeVendorRoots accepts an EK whose certificate chains to a
	// configured vendor root, or a pinned EK.
	EKModeVendorRoots = "vendor-roots"
	// EKModePinned accepts only EKs an administrator pinned.
	EKModePinned = "pinned"
	// EKModeTOFU accepts any EK the first time it is seen (trust on first use).
	EKModeTOFU = "tofu"
)

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	Store   store.Store
	Backend Backend
	Policy  Policy // default FirstBootPolicy
	Logger  *slog.Logger

	// EKMode is one of the EKMode constants (default vendor-roots).
	EKMode string
	// RequireApproval keeps newly enrolled machines pending until an
	// administrator approves them.
	RequireApproval bool
	// AutoApproveReference approves the reference values learned from a
	// machine's first attested boot without an administrator. It suits
	// demonstrations and tests, not production.
	AutoApproveReference bool

	// Interval is the default time between attestations (default 60s).
	Interval time.Duration
	// Jitter is the fraction of Interval by which each attestation is
	// randomly moved earlier or later (default 0.1).
	Jitter float64
	// ChallengeTTL is how long an agent may take to return evidence for a nonce (default 30s).
	ChallengeTTL time.Duration
	// UnreachableAfter is the number of missed intervals after which a
	// machine becomes unreachable (default 3).
	UnreachableAfter int
	// ResultValidity is how long a signed attestation result stays valid
	// after the verdict it reports (default DefaultResultValidity). Each
	// machine's results expire at its unreachable limit at the latest.
	// Results cannot be recalled, so this bounds how long a machine that
	// was revoked or judged untrusted can still present a trusted one.
	ResultValidity time.Duration
	// PCRs are quoted in every active bank (default 0-10 and 14). PCR 10 is
	// checked against the IMA list, the others against the event log.
	PCRs []int
	// MaxWait bounds how long a challenge request is held open (default 25s).
	MaxWait time.Duration

	// Registry receives the verifier's Prometheus metrics, which
	// MetricsHandler serves. The default is a new registry with the Go
	// runtime and process collectors.
	Registry *prometheus.Registry
	// MetricsPerMachine adds metrics labelled with each machine's name,
	// a series per machine.
	MetricsPerMachine bool
	// Notifier receives every change of a machine's state (default none).
	Notifier Notifier

	// Now and Rand default to time.Now and crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
}

// Server is the verifier. Create it with New, serve Handler, and call
// Close when done.
type Server struct {
	cfg    Config
	store  store.Store
	be     Backend
	policy Policy
	log    *slog.Logger
	tokens *tokenStore
	// resultKey signs attestation results.
	resultKey *bundle.PrivateKey
	// metrics is set by New and never nil.
	metrics *metrics
	now     func() time.Time
	rand    io.Reader

	mu          sync.Mutex
	enrollments map[string]*enrollment
	challenges  map[string]*challenge
	sessions    map[string]*session
	// logCache holds the last verified event log of each machine's current
	// boot, so an agent may omit an unchanged log.
	logCache map[string]cachedLog
	// machineLocks holds a lock per machine with a write in progress.
	machineLocks map[string]*machineLock
	// evidenceSlots bounds the evidence bodies decoded at once, and
	// evidenceBudget those being read.
	evidenceSlots  chan struct{}
	evidenceBudget evidenceBudget
	// evidenceReadBase is the time any evidence body may take to arrive,
	// before the time its size allows (evidenceReadTime).
	evidenceReadBase time.Duration
	// pendingBySource counts the entries of enrollments per request source
	// and per wider prefix (pendingLimits).
	pendingBySource map[string]int
	// enrollLimiter bounds the enrollment requests of each source,
	// loginLimiter its dashboard login attempts, and rejectLog the log
	// lines about rejected requests.
	enrollLimiter *sourceLimiter
	loginLimiter  *sourceLimiter
	rejectLog     *logLimiter
	// enrollLog bounds the log lines about enrollment challenges sent.
	enrollLog *logLimiter

	stop chan struct{}
	wg   sync.WaitGroup
}

// New returns a Server using the admin token in dataDir (created on
// first use). It starts the background loop that marks silent machines
// unreachable, and Close stops it.
func New(cfg Config, dataDir string) (*Server, error) {
	if cfg.Store == nil || cfg.Backend == nil {
		return nil, errors.New("verifier: Store and Backend are required")
	}
	if cfg.Policy == nil {
		cfg.Policy = FirstBootPolicy{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch cfg.EKMode {
	case "":
		cfg.EKMode = EKModeVendorRoots
	case EKModeVendorRoots, EKModePinned, EKModeTOFU:
	default:
		return nil, fmt.Errorf("verifier: EK mode %q: use %s, %s or %s", cfg.EKMode, EKModeVendorRoots, EKModePinned, EKModeTOFU)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 60 * time.Second
	}
	if cfg.Jitter <= 0 || cfg.Jitter >= 1 {
		cfg.Jitter = 0.1
	}
	if cfg.ChallengeTTL <= 0 {
		cfg.ChallengeTTL = 30 * time.Second
	}
	if cfg.UnreachableAfter <= 0 {
		cfg.UnreachableAfter = 3
	}
	if cfg.ResultValidity <= 0 {
		cfg.ResultValidity = DefaultResultValidity
	}
	if len(cfg.PCRs) == 0 {
		cfg.PCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, imaPCR, 14}
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 25 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if be, ok := cfg.Backend.(*AttestBackend); ok && cfg.EKMode == EKModeVendorRoots && len(be.Roots) == 0 {
		cfg.Logger.Warn("EK mode vendor-roots has no vendor roots: only EKs pinned with 'vouch ek pin' can enroll; give --ek-roots, or use --ek-mode tofu for a lab or simulated TPMs")
	}
	tokens, created, err := loadOrCreateToken(dataDir)
	if err != nil {
		return nil, err
	}
	if created {
		cfg.Logger.Info("created admin token", "file", filepath.Join(dataDir, tokenFile))
	}
	resultKey, created, err := loadOrCreateResultKey(dataDir)
	if err != nil {
		return nil, err
	}
	if created {
		cfg.Logger.Info("created attestation result signing key", "public_key", filepath.Join(dataDir, resultPubKeyFile), "key_id", resultKey.KeyID())
	}
	s := &Server{
		cfg:           cfg,
		store:         cfg.Store,
		be:            cfg.Backend,
		policy:        cfg.Policy,
		log:           cfg.Logger,
		tokens:        tokens,
		resultKey:     resultKey,
		now:           cfg.Now,
		rand:          cfg.Rand,
		enrollments:   map[string]*enrollment{},
		challenges:    map[string]*challenge{},
		sessions:      map[string]*session{},
		logCache:      map[string]cachedLog{},
		machineLocks:  map[string]*machineLock{},
		evidenceSlots: make(chan struct{}, maxConcurrentEvidence),

		evidenceReadBase: evidenceReadBase,

		pendingBySource: map[string]int{},
		enrollLimiter:   newSourceLimiter(enrollRate, enrollBurst, maxTrackedSources),
		loginLimiter:    newSourceLimiter(loginRate, loginBurst, maxTrackedSources),
		rejectLog:       &logLimiter{max: maxRejectLogsPerMinute},
		enrollLog:       &logLimiter{max: maxEnrollLogsPerMinute},
		stop:            make(chan struct{}),
	}
	if s.metrics, err = newMetrics(s, cfg.Registry); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

// Close stops the background loop and releases waiting agents. It does not
// close the store.
func (s *Server) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// RotateToken replaces the admin token and returns the new one.
func (s *Server) RotateToken() (string, error) { return s.tokens.rotate() }

// ListenAndServe serves the API with TLS on addr until ctx is done, then
// shuts down gracefully: it stops accepting connections and waits up to
// 10 seconds for running requests. A nil cert serves plain HTTP, which
// only the --insecure-http flag of vouch server requests.
func (s *Server) ListenAndServe(ctx context.Context, ln net.Listener, cert *tls.Certificate) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// ReadTimeout covers the request body, so a client that trickles
		// bytes cannot hold a connection. It does not cover long polls,
		// because they wait in the handler.
		ReadTimeout: 60 * time.Second,
		IdleTimeout: 120 * time.Second,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("verifier listening", "addr", ln.Addr().String(), "tls", cert != nil)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("verifier shutting down")
	// Waiting agents hold long polls open; closing stop releases them.
	s.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	s.log.Info("verifier stopped")
	return nil
}

// DataDirFiles returns the paths of the database and admin token in dataDir.
func DataDirFiles(dataDir string) (database, token string) {
	return filepath.Join(dataDir, databaseFile), filepath.Join(dataDir, tokenFile)
}

// EnsureDataDir creates dataDir with mode 0700 when it does not exist.
func EnsureDataDir(dataDir string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}
