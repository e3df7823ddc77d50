package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/agent"
	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/tpm"
)

func newAgentCmd() *cobra.Command {
	var (
		server, fingerprint, caFile, name, stateDir, resultPath string
		tpmSpec, eventLog, simulateBoot, logLevel               string
		systemRoots, insecureHTTP                               bool
		imaPath                                                 string
		simulateIMA                                             int
		simulateIMALog                                          string
		minBackoff, maxBackoff, wait                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Enroll this machine's TPM with the verifier and answer its challenges",
		Long: `Run the vouch agent. It enrolls the TPM's EK and an AK with the verifier,
then keeps a session open to it and answers each challenge with a quote,
the PCR values of every active bank and the event log. The AK and the
enrollment are kept in --state-dir across restarts.

--simulate-boot LOG replays a recorded boot event log into a simulator or
swtpm (once per TPM power-on) and attests with that log. With it, SIGUSR1
makes the agent record an unapproved boot application in PCR 4 and in its
log, to show how the verifier reports it; SIGUSR2 extends PCR 4 without
recording an event. The agent then sends the replayed log, so --eventlog
cannot be given with it.

Exit codes: 0 stopped by SIGINT or SIGTERM; 1 the verifier rejected the
machine for good (revoked or untrusted EK, name taken, invalid AK) or the
TPM rejects the saved AK; 2 invalid flags, or a verifier certificate that
does not match --server-fingerprint or --ca at the first contact; 3 the
--simulate-boot or --simulate-ima-log file cannot be read or parsed; 4 the
TPM cannot be opened or the state directory cannot be written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if server == "" {
				server = os.Getenv("VOUCH_SERVER")
			}
			if server == "" {
				return withExitCode(exitUsage, errors.New("no verifier URL: give --server or set VOUCH_SERVER"))
			}
			if err := checkServerURL(server); err != nil {
				return withExitCode(exitUsage, err)
			}
			if fingerprint == "" {
				fingerprint = os.Getenv("VOUCH_SERVER_FINGERPRINT")
			}
			if err := checkPlainHTTP(server, insecureHTTP, fingerprint != "" || caFile != ""); err != nil {
				return withExitCode(exitUsage, err)
			}
			if fingerprint == "" && caFile == "" && !systemRoots && strings.HasPrefix(server, "https:") {
				return withExitCode(exitUsage, errors.New("missing server pin: give --server-fingerprint (or set VOUCH_SERVER_FINGERPRINT) with the fingerprint vouch server prints, --ca with the CA file, or --system-roots to trust the system's CAs"))
			}
			if name == "" {
				// The verifier takes lower-case names without a final dot.
				name = strings.TrimSuffix(strings.ToLower(hostname()), ".")
			}
			tlsConfig, err := api.TLSConfig(fingerprint, caFile)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			if simulateBoot != "" && cmd.Flags().Changed("eventlog") {
				return withExitCode(exitUsage, errors.New("--simulate-boot and --eventlog both name the event log to send: give one (the agent sends the --simulate-boot log it replayed into the TPM)"))
			}
			if err := tpm.CheckTransport(tpmSpec); err != nil {
				return withExitCode(exitUsage, fmt.Errorf("--tpm: %w", err))
			}
			var bootLog []byte
			if simulateBoot != "" {
				// Read before anything is created, so a wrong path leaves no
				// state directory behind.
				if bootLog, err = os.ReadFile(simulateBoot); err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("--simulate-boot: %w", err))
				}
			}
			if err := os.MkdirAll(stateDir, 0o700); err != nil {
				return withExitCode(exitUnavailable, fmt.Errorf("create state directory: %w", err))
			}
			t, err := tpm.Open(tpm.Config{Transport: tpmSpec, Logger: log})
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			defer t.Close()
			dev, err := agent.NewDeviceTPM(t, stateDir)
			var stale *agent.AKNotInTPMError
			if errors.As(err, &stale) {
				stale.Machine = name
				return withExitCode(exitMismatch, err)
			}
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}

			if tpmSpec == "simulator" && simulateBoot == "" {
				log.Warn("the simulator starts with every PCR at its reset value, so without --simulate-boot the event log will not replay to its quotes: give --simulate-boot LOG to replay a recorded boot into it")
			}
			freshBoot := false
			if simulateBoot != "" {
				raw := bootLog
				eventLog = filepath.Join(stateDir, "simulated-eventlog.bin")
				applied, err := agent.SimulateBoot(dev, raw)
				freshBoot = applied
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				if applied {
					log.Info("replayed a recorded boot into the TPM", "eventlog", simulateBoot)
				} else {
					log.Info("the TPM already holds a boot since its last power-on; attesting with the recorded log", "eventlog", simulateBoot)
				}
				// The copy is what the agent reads and what tampering appends
				// to; keep an existing copy, which may hold appended events.
				if _, err := os.Stat(eventLog); applied || err != nil {
					if err := os.WriteFile(eventLog, raw, 0o600); err != nil {
						return withExitCode(exitUnavailable, err)
					}
				}
			}

			if simulateBoot != "" && !cmd.Flags().Changed("ima") && !cmd.Flags().Changed("ima-log") {
				imaPath = "" // the host's IMA list does not describe a simulated boot
			}
			if simulateIMA > 0 {
				if simulateBoot == "" {
					return withExitCode(exitUsage, errors.New("--simulate-ima needs --simulate-boot"))
				}
				imaPath = filepath.Join(stateDir, "simulated-ima.bin")
				if _, err := os.Stat(imaPath); err != nil || freshBoot {
					os.Remove(imaPath)
					var files []string
					for i := range simulateIMA {
						files = append(files, fmt.Sprintf("/usr/bin/program-%d", i))
					}
					if err := agent.SimulateIMA(dev, imaPath, files); err != nil {
						return withExitCode(exitUnavailable, err)
					}
				}
			}

			agentTPM, err := simulateIMAList(dev, simulateIMALog, simulateBoot, stateDir, freshBoot, &imaPath)
			if err != nil {
				return err
			}
			a, err := agent.New(agent.Config{
				Server:       server,
				HTTP:         &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}},
				Name:         name,
				StateDir:     stateDir,
				EventLogPath: eventLog,
				IMAPath:      imaPath,
				ResultPath:   resultPath,
				TPM:          agentTPM,
				Facts:        api.Facts{Hostname: hostname(), OS: runtime.GOOS + "/" + runtime.GOARCH, AgentVersion: buildVersion(), TPM: t.String()},
				Logger:       log,
				MinBackoff:   minBackoff,
				MaxBackoff:   maxBackoff,
				Wait:         wait,
			})
			if err != nil {
				return withExitCode(exitUsage, err)
			}

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if simulateBoot != "" {
				go tamperOnSignal(ctx, dev, eventLog, log)
			}
			err = a.Run(ctx)
			var perm *agent.PermanentError
			if errors.As(err, &perm) {
				return withExitCode(exitMismatch, err)
			}
			var identity *agent.ServerIdentityError
			if errors.As(err, &identity) {
				return withExitCode(exitUsage, err)
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return withExitCode(exitUnavailable, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "verifier URL, such as https://verifier:8443 (env VOUCH_SERVER)")
	f.StringVar(&fingerprint, "server-fingerprint", "", "SHA-256 fingerprint of the verifier's CA certificate, as vouch server prints it (env VOUCH_SERVER_FINGERPRINT)")
	f.StringVar(&caFile, "ca", "", "PEM file of the CA that signed the verifier's certificate")
	f.BoolVar(&insecureHTTP, "insecure-http", false, "allow an http:// verifier URL (a server started with --insecure-http); evidence then travels unauthenticated")
	f.BoolVar(&systemRoots, "system-roots", false, "verify the verifier's certificate with the system's CAs when neither --server-fingerprint nor --ca is given")
	f.StringVar(&name, "name", "", "machine name at the verifier: lower-case letters, digits, '.', '_' or '-' (default: the host name in lower case)")
	f.StringVar(&stateDir, "state-dir", "/var/lib/vouch-agent", "directory of the AK and the enrollment state")
	f.StringVar(&resultPath, "result-file", "", "file to write the verifier's signed attestation result to after each verdict (default: result.json in --state-dir)")
	f.StringVar(&tpmSpec, "tpm", "device", "TPM to use: device, device:/dev/tpmrm0, swtpm:unix:/path, swtpm:tcp:HOST:PORT or simulator")
	f.StringVar(&eventLog, "eventlog", agent.DefaultEventLogPath, "TCG boot event log to send")
	f.StringVar(&imaPath, "ima", agent.DefaultIMAPath, "IMA measurement list to send, binary or ascii (empty: none)")
	f.StringVar(&imaPath, "ima-log", agent.DefaultIMAPath, "same as --ima")
	f.IntVar(&simulateIMA, "simulate-ima", 0, "with --simulate-boot, write an IMA list of a boot_aggregate and this many files and extend PCR 10 to match")
	f.StringVar(&simulateIMALog, "simulate-ima-log", "", "with --simulate-boot, play the kernel for a recorded IMA list (binary or ascii): before each quote, append its entries that the agent's list lacks and extend them into the TPM")
	f.StringVar(&simulateBoot, "simulate-boot", "", "event log to replay into a simulator or swtpm at start and to send in place of --eventlog (testing and demonstrations)")
	f.DurationVar(&minBackoff, "min-backoff", time.Second, "first reconnection delay; it doubles up to --max-backoff")
	f.DurationVar(&maxBackoff, "max-backoff", time.Minute, "longest reconnection delay")
	f.DurationVar(&wait, "wait", 25*time.Second, "how long each challenge request stays open")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func tamperOnSignal(ctx context.Context, dev *agent.DeviceTPM, eventLog string, log interface {
	Warn(string, ...any)
	Error(string, ...any)
}) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sig)
	for {
		var s os.Signal
		select {
		case <-ctx.Done():
			return
		case s = <-sig:
		}
		if s == syscall.SIGUSR2 {
			if err := agent.ExtendUnrecorded(dev, 4); err != nil {
				log.Error("simulated tampering failed", "err", err)
				continue
			}
			log.Warn("simulated tampering: extended PCR 4 without recording an event")
			continue
		}
		{
			n, err := agent.AppendRogueEvent(dev, eventLog, 4)
			if err != nil {
				log.Error("simulated tampering failed", "err", err)
				continue
			}
			log.Warn("simulated tampering: extended PCR 4 with an unapproved boot application", "event", n)
		}
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
