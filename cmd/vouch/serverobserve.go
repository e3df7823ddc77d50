package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"

	"github.com/vouch-attest/vouch/notify"
	"github.com/vouch-attest/vouch/verifier"
)

// observeFlags are the metrics and webhook flags of vouch server.
type observeFlags struct {
	metricsListen     string
	metricsPerMachine bool
	webhooks          []string
	webhookSecretFile string
	webhookCA         string
	insecureHTTP      bool
}

func (o *observeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&o.metricsListen, "metrics-listen", "", "address (host:port) of a separate plain-HTTP listener serving Prometheus metrics at /metrics, without authentication; off when empty")
	f.BoolVar(&o.metricsPerMachine, "metrics-per-machine", false, "add metrics labelled with each machine's name (one series per machine)")
	f.StringArrayVar(&o.webhooks, "webhook", nil, "URL that receives a signed JSON POST on every machine state change: https, or http to a loopback address (repeatable)")
	f.StringVar(&o.webhookSecretFile, "webhook-secret-file", "", "file (mode 0600) holding the secret that signs webhook bodies with HMAC-SHA256, at least 16 bytes; required with --webhook")
	f.StringVar(&o.webhookCA, "webhook-ca", "", "PEM CA certificates that webhook servers' certificates must chain to (default the system roots)")
	f.BoolVar(&o.insecureHTTP, "insecure-webhook-http", false, "allow http webhook URLs to hosts that are not loopback (bodies and signatures travel in clear)")
}

// observability holds what the flags set up: the metrics registry and
// listener, and the webhook dispatcher.
type observability struct {
	registry   *prometheus.Registry
	metricsLn  net.Listener
	dispatcher *notify.Dispatcher
	log        *slog.Logger
}

// setup checks the flags, binds the metrics listener and starts the
// webhook dispatcher. The caller must call close.
func (o *observeFlags) setup(log *slog.Logger) (*observability, error) {
	if len(o.webhooks) == 0 && (o.webhookSecretFile != "" || o.webhookCA != "" || o.insecureHTTP) {
		return nil, withExitCode(exitUsage, errors.New("--webhook-secret-file, --webhook-ca and --insecure-webhook-http apply to webhooks: give --webhook URL"))
	}
	ob := &observability{registry: prometheus.NewRegistry(), log: log}
	ob.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if len(o.webhooks) > 0 {
		if err := o.startWebhooks(ob, log); err != nil {
			return nil, err
		}
	}
	if o.metricsListen != "" {
		ln, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			ob.close()
			return nil, withExitCode(exitUnavailable, fmt.Errorf("listen on --metrics-listen %s: %w: stop the process that uses it or give another address", o.metricsListen, err))
		}
		ob.metricsLn = ln
		if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
			log.Warn("metrics listener is not on a loopback address: /metrics has no authentication, so limit who can reach it with a firewall", "addr", ln.Addr().String())
		}
	}
	return ob, nil
}

func (o *observeFlags) startWebhooks(ob *observability, log *slog.Logger) error {
	if o.webhookSecretFile == "" {
		return withExitCode(exitUsage, errors.New("--webhook needs --webhook-secret-file: receivers verify each body's HMAC-SHA256 signature with that secret"))
	}
	secret, err := readSecretFile(o.webhookSecretFile)
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	var roots *x509.CertPool
	if o.webhookCA != "" {
		data, err := os.ReadFile(o.webhookCA)
		if err != nil {
			return withExitCode(exitUnreadable, fmt.Errorf("read --webhook-ca: %w", err))
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(data) {
			return withExitCode(exitUsage, fmt.Errorf("--webhook-ca %s contains no PEM certificate", o.webhookCA))
		}
	}
	ob.dispatcher, err = notify.New(notify.Config{
		URLs:              o.webhooks,
		Secret:            secret,
		AllowInsecureHTTP: o.insecureHTTP,
		RootCAs:           roots,
		Logger:            log,
		Registerer:        ob.registry,
	})
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	return nil
}

// readSecretFile reads a secret that group and others may not read, with
// surrounding white space removed.
func readSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--webhook-secret-file %s is readable by group or others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file: %w", err)
	}
	secret := []byte(strings.TrimSpace(string(data)))
	if len(secret) < notify.MinSecretBytes {
		return nil, fmt.Errorf("--webhook-secret-file %s contains %d bytes: give at least %d, such as the output of 'openssl rand -hex 32'", path, len(secret), notify.MinSecretBytes)
	}
	return secret, nil
}

// apply sets the verifier configuration's metrics and notifier.
func (ob *observability) apply(cfg *verifier.Config, perMachine bool) {
	cfg.Registry = ob.registry
	cfg.MetricsPerMachine = perMachine
	if ob.dispatcher != nil {
		cfg.Notifier = ob.dispatcher
	}
}

// serveMetrics serves srv's metrics on the metrics listener, if any,
// until ctx is done.
func (ob *observability) serveMetrics(ctx context.Context, srv *verifier.Server) {
	if ob.metricsLn == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.MetricsHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found: metrics are at /metrics", http.StatusNotFound)
	})
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(ob.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := hs.Serve(ob.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			ob.log.Error("metrics listener failed", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(shutdownCtx)
	}()
	ob.log.Info("metrics listening", "addr", ob.metricsLn.Addr().String(), "path", "/metrics")
}

// webhookDrainTimeout bounds the wait for queued webhook deliveries at
// shutdown.
const webhookDrainTimeout = 10 * time.Second

// close drains the webhook queues for up to webhookDrainTimeout and closes
// the metrics listener.
func (ob *observability) close() {
	if ob.dispatcher != nil {
		ctx, cancel := context.WithTimeout(context.Background(), webhookDrainTimeout)
		defer cancel()
		if err := ob.dispatcher.Close(ctx); err != nil {
			ob.log.Error("webhook deliveries left undelivered at shutdown", "err", err)
		}
	}
	if ob.metricsLn != nil {
		ob.metricsLn.Close()
	}
}
