package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/store"
	"github.com/vouch-attest/vouch/verifier"
)

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, withExitCode(exitUsage, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", level))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func parsePCRList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 23 {
			return nil, fmt.Errorf("invalid PCR %q: use indexes 0 to 23, such as 0-9,14", part)
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(hi)
			if err != nil || b < a || b > 23 {
				return nil, fmt.Errorf("invalid PCR range %q: use indexes 0 to 23, such as 0-9,14", part)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

// loadRoots reads TPM vendor CA certificates (PEM or DER) from files and
// folders.
func loadRoots(paths []string) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for _, p := range paths {
		files := []string{p}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			files = files[:0]
			for _, e := range entries {
				if !e.IsDir() {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read EK root: %w", err)
			}
			rest, found := data, false
			for {
				var block *pem.Block
				block, rest = pem.Decode(rest)
				if block == nil {
					break
				}
				if block.Type != "CERTIFICATE" {
					continue
				}
				cert, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					return nil, fmt.Errorf("EK root %s: %w", f, err)
				}
				roots, found = append(roots, cert), true
			}
			if found {
				continue
			}
			if cert, err := x509.ParseCertificate(data); err == nil {
				roots = append(roots, cert)
			}
			// Anything else (a README, a CRL) in a roots folder is skipped.
		}
	}
	if len(paths) > 0 && len(roots) == 0 {
		return nil, fmt.Errorf("no certificate found in %s", strings.Join(paths, ", "))
	}
	return roots, nil
}

// Valid ranges of the server's schedule flags.
const (
	minServerInterval   = time.Second
	maxServerInterval   = 7 * 24 * time.Hour
	minChallengeTTL     = time.Second
	maxChallengeTTL     = time.Hour
	maxUnreachableAfter = 1000
)

// checkServerFlags rejects values that would start a server that cannot
// work. An interval of zero challenges agents in a loop, and a TTL of zero
// expires every challenge before the agent can send evidence for it.
func checkServerFlags(listen string, interval, challengeTTL time.Duration, unreachableAfter int) error {
	if interval < minServerInterval || interval > maxServerInterval {
		return fmt.Errorf("invalid --interval %s: give %s to %s", interval, minServerInterval, maxServerInterval)
	}
	if challengeTTL < minChallengeTTL || challengeTTL > maxChallengeTTL {
		return fmt.Errorf("invalid --challenge-ttl %s: give %s to %s", challengeTTL, minChallengeTTL, maxChallengeTTL)
	}
	if unreachableAfter < 1 || unreachableAfter > maxUnreachableAfter {
		return fmt.Errorf("invalid --unreachable-after %d: give 1 to %d missed intervals", unreachableAfter, maxUnreachableAfter)
	}
	return checkListenAddr("--listen", listen)
}

// checkListenAddr rejects a listen address of flag that is not host:port
// with a valid port.
func checkListenAddr(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid %s %q: give host:port, such as 127.0.0.1:8443 or [::]:8443", flag, addr)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("invalid %s %q: port %d is out of range: give 0 to 65535", flag, addr, n)
		}
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("invalid %s %q: unknown port %q: give a number from 0 to 65535", flag, addr, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
			return fmt.Errorf("invalid %s %q: host %q is neither an IP address nor a host name", flag, addr, host)
		}
	}
	return nil
}

// validHostName reports whether name has the form of a DNS host name.
func validHostName(name string) bool {
	if len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

func newServerCmd() *cobra.Command {
	var (
		listen, dataDir, ekMode, pcrs, logLevel   string
		database                                  string
		tlsCert, tlsKey, tlsCA                    string
		hosts, ekRoots, ekIntermediates           []string
		requireApproval, autoApproveRef, insecure bool
		interval, challengeTTL, resultValidity    time.Duration
		unreachableAfter                          int
		pol                                       serverPolicyFlags
		imaPolicy                                 imaPolicyFlags
		observe                                   observeFlags
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the verifier: enrollment, challenges, verdicts and the admin API",
		Long: `Run the vouch verifier.

On first start it creates, in --data-dir, a SQLite database (unless
--database names a PostgreSQL one), a CA and a server certificate (unless
--tls-cert is given), an admin token (admin-token, mode 0600) and the key
that signs attestation results (result-key.pem, mode 0600, with its public
key in result-key.pub). It prints the CA fingerprint that agents pin with
--server-fingerprint.
SIGINT or SIGTERM stops it gracefully.

By default each machine's first verified boot becomes its reference values
once approved. With --bundles, machines are judged against signed bundles
(--trust names the publisher keys), their own firmware values (learned at
enrollment, approved with 'vouch hosts approve') and --policy-rules. SIGHUP
reloads the bundles and logs each one accepted or rejected.

A read-only dashboard is served at /dashboard. --metrics-listen serves
Prometheus metrics on a separate address, and --webhook sends each change
of a machine's state to a URL, signed with --webhook-secret-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if err := checkServerFlags(listen, interval, challengeTTL, unreachableAfter); err != nil {
				return withExitCode(exitUsage, err)
			}
			if observe.metricsListen != "" {
				if err := checkListenAddr("--metrics-listen", observe.metricsListen); err != nil {
					return withExitCode(exitUsage, err)
				}
			}
			if resultValidity < time.Second {
				return withExitCode(exitUsage, fmt.Errorf("invalid --result-validity %s: give at least 1s", resultValidity))
			}
			pcrList, err := parsePCRList(pcrs)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			roots, err := loadRoots(ekRoots)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("--ek-roots: %w", err))
			}
			intermediates, err := loadRoots(ekIntermediates)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("--ek-intermediates: %w", err))
			}
			if err := checkDatabaseFlag(database); err != nil {
				return err
			}
			switch ekMode {
			case verifier.EKModeVendorRoots, verifier.EKModePinned, verifier.EKModeTOFU:
			default:
				return withExitCode(exitUsage, fmt.Errorf("invalid --ek-mode %q: use vendor-roots, pinned or tofu", ekMode))
			}
			if tlsCert != "" && (tlsKey == "" || tlsCA == "") {
				return withExitCode(exitUsage, errors.New("--tls-cert needs --tls-key and --tls-ca (the CA agents pin)"))
			}
			imaPol, err := imaPolicy.load(cmd.Context(), cmd.ErrOrStderr(), log)
			if err != nil {
				return err
			}
			// Bind first: a taken port must not leave a populated data
			// directory behind.
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return withExitCode(exitUnavailable, fmt.Errorf("listen on %s: %w: stop the process that holds it or give another --listen", listen, err))
			}
			defer ln.Close()
			obs, err := observe.setup(log)
			if err != nil {
				return err
			}
			// Deferred first, so it runs after the server stopped: queued
			// webhook deliveries drain last.
			defer obs.close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()

			// Load the policy before the data directory is created, so a
			// bundle or rules file that fails leaves nothing behind.
			policy, bundles, err := pol.build(ctx, log)
			if err != nil {
				return err
			}
			// A PostgreSQL store is opened before the data directory is
			// created, so a failed connection leaves nothing behind.
			var st store.Store
			if database != "" {
				if st, err = openServerStore(ctx, log, database, dataDir); err != nil {
					return err
				}
				defer st.Close()
			}
			if err := verifier.EnsureDataDir(dataDir); err != nil {
				return withExitCode(exitUnavailable, err)
			}
			pol.runReloads(ctx, bundles)

			_, tokenPath := verifier.DataDirFiles(dataDir)
			if st == nil {
				if st, err = openServerStore(ctx, log, database, dataDir); err != nil {
					return err
				}
				defer st.Close()
			}
			backend := &verifier.AttestBackend{Roots: roots, Intermediates: intermediates, IMA: verifier.IMAOptions{Policy: imaPol}}
			imaPolicy.runReloads(ctx, backend, pol.refresh, sighupReloads(ctx))
			cfg := verifier.Config{
				Store:                st,
				Backend:              backend,
				Policy:               policy,
				Logger:               log,
				EKMode:               ekMode,
				RequireApproval:      requireApproval,
				AutoApproveReference: autoApproveRef,
				Interval:             interval,
				ChallengeTTL:         challengeTTL,
				UnreachableAfter:     unreachableAfter,
				ResultValidity:       resultValidity,
				PCRs:                 pcrList,
			}
			// The next result arrives up to an interval plus 10 % jitter and
			// the challenge TTL after the last verdict.
			if due := interval + interval/10 + challengeTTL; resultValidity < due {
				log.Warn("signed attestation results expire before the next attestation is due; raise --result-validity to keep them valid in between, which also lengthens how long a result outlives a revocation",
					"result_validity", resultValidity, "next_result_within", due)
			}
			obs.apply(&cfg, observe.metricsPerMachine)
			srv, err := verifier.New(cfg, dataDir)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			defer srv.Close()

			var cert *tls.Certificate
			var fingerprint string
			if !insecure {
				var c tls.Certificate
				if tlsCert != "" {
					c, fingerprint, err = verifier.LoadTLS(tlsCert, tlsKey, tlsCA)
				} else {
					c, fingerprint, err = verifier.LoadOrCreateTLS(dataDir, hosts, time.Now())
				}
				if err != nil {
					return withExitCode(exitUnavailable, err)
				}
				cert = &c
			}
			out := cmd.OutOrStdout()
			scheme := "https"
			if insecure {
				scheme = "http"
			}
			fmt.Fprintf(out, "vouch server listening on %s://%s\n", scheme, ln.Addr())
			if fingerprint != "" {
				fmt.Fprintf(out, "server CA fingerprint (agents pin it with --server-fingerprint): %s\n", fingerprint)
			}
			fmt.Fprintf(out, "admin token file: %s\n", tokenPath)
			fmt.Fprintf(out, "dashboard (log in with the admin token): %s://%s/dashboard\n", scheme, ln.Addr())
			log.Info("verifier configured", "ek_mode", ekMode, "ek_roots", len(roots), "require_approval", requireApproval,
				"interval", interval, "result_validity", resultValidity, "pcrs", pcrs, "data_dir", dataDir)
			obs.serveMetrics(ctx, srv)
			if err := srv.ListenAndServe(ctx, ln, cert); err != nil {
				return withExitCode(exitUnavailable, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8443", "address to listen on (host:port)")
	f.StringVar(&dataDir, "data-dir", "/var/lib/vouch", "directory of the database, TLS files and admin token")
	f.StringVar(&database, "database", "", "PostgreSQL URL (postgres://user@host/dbname) of a database that several verifier replicas share; empty keeps SQLite in --data-dir. Give the password in PGPASSFILE or PGPASSWORD, not in the URL")
	f.StringVar(&ekMode, "ek-mode", verifier.EKModeVendorRoots, "how EKs are trusted: vendor-roots (certificate chains to --ek-roots), pinned (only EKs pinned with 'vouch ek pin'), or tofu (trust on first use); pinned EKs are accepted in every mode")
	f.StringSliceVar(&ekRoots, "ek-roots", nil, "PEM or DER TPM vendor CA certificates, files or folders (vendor-roots mode)")
	f.StringSliceVar(&ekIntermediates, "ek-intermediates", nil, "PEM or DER intermediate CA certificates of TPM vendors, files or folders")
	f.BoolVar(&requireApproval, "require-approval", false, "keep newly enrolled machines pending until 'vouch hosts approve'")
	f.BoolVar(&autoApproveRef, "insecure-auto-approve-reference", false, "trust the reference values learned from each machine's first boot without an administrator's approval")
	f.DurationVar(&interval, "interval", 60*time.Second, "time between attestations of a machine, 1s to 168h (jittered by 10%)")
	f.DurationVar(&challengeTTL, "challenge-ttl", 30*time.Second, "time an agent has to answer a nonce, 1s to 1h")
	f.IntVar(&unreachableAfter, "unreachable-after", 3, "number of missed intervals, 1 to 1000, after which a machine is unreachable")
	f.DurationVar(&resultValidity, "result-validity", verifier.DefaultResultValidity, "time a signed attestation result stays valid after its verdict; a machine's results expire when it would become unreachable at the latest")
	f.StringVar(&pcrs, "pcrs", "0-10,14", "PCRs to quote in every bank; PCR 10 is checked against the IMA list, the others against the event log")
	f.StringSliceVar(&hosts, "host", []string{"localhost", "127.0.0.1", "::1"}, "names and addresses of the generated server certificate")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM server certificate chain to use instead of the generated one")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&tlsCA, "tls-ca", "", "PEM certificate agents pin (the CA of --tls-cert)")
	f.BoolVar(&insecure, "insecure-http", false, "serve plain HTTP without TLS (tokens and evidence travel in clear)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pol.register(cmd)
	imaPolicy.register(f)
	observe.register(f)
	return cmd
}
