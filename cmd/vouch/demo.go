package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/result"
	"github.com/vouch-attest/vouch/store"
	"github.com/vouch-attest/vouch/tpm"
	"github.com/vouch-attest/vouch/verifier"
)

// demoLogs are real boot event logs (see testdata/demo/SOURCES.md).
//
//go:embed testdata/demo/*.bin
var demoLogs embed.FS

var demoMachines = []struct{ name, log, about string }{
	{"rhel-web", "rhel8-uefi.bin", "RHEL 8, Secure Boot on"},
	{"cos-node", "cos-85-amd-sev.bin", "Container-Optimized OS 85 on AMD SEV"},
	{"ubuntu-db", "ubuntu-2104-no-secure-boot.bin", "Ubuntu 21.04, Secure Boot off"},
}

func newDemoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch a verifier attest three simulated machines and catch tampered ones",
		Long: `Start a verifier on loopback with a temporary data directory and three
agents on simulated TPMs, each booted from a real recorded event log; approve
them, then tamper with two (an unapproved boot application measured into
PCR 4 and logged, and an extend of PCR 4 the log does not record) and show
how the verifier reports each. Needs a build with cgo (the
TPM simulator). Once built it runs in 5 to 15 seconds; the first build
compiles the simulator, which takes about a minute on two cores. It deletes
its temporary directory, with the logs, at the end unless --keep is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory (database, logs) for a look afterwards")
	return cmd
}

// workDirLine names the demo's directory and whether it is kept.
func workDirLine(dir string, keep bool) string {
	if keep {
		return fmt.Sprintf("Working directory: %s (logs of the server and agents; kept after the demo)", dir)
	}
	return fmt.Sprintf("Working directory: %s (logs of the server and agents; deleted at the end unless you pass --keep)", dir)
}

type demo struct {
	out    io.Writer
	dir    string
	client *api.Client
	agents map[string]*exec.Cmd
	step   int
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) section(title string) {
	d.step++
	fmt.Fprintf(d.out, "\n== %d. %s\n", d.step, title)
}

func runDemo(ctx context.Context, out io.Writer, keep bool) error {
	if !tpm.SimulatorAvailable {
		return withExitCode(exitUnavailable, errors.New("this build has no TPM simulator (built with CGO_ENABLED=0): build vouch with cgo and libssl-dev to run the demo"))
	}
	self, err := os.Executable()
	if err != nil {
		return withExitCode(exitUnavailable, err)
	}
	dir, err := os.MkdirTemp("", "vouch-demo-")
	if err != nil {
		return withExitCode(exitUnavailable, err)
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	d := &demo{out: out, dir: dir, agents: map[string]*exec.Cmd{}}
	d.say("Vouch demo: one verifier, three machines with simulated TPMs, two of them tampered with.")
	d.say("%s", workDirLine(dir, keep))

	// The verifier, in this process.
	dataDir := filepath.Join(dir, "server")
	if err := verifier.EnsureDataDir(dataDir); err != nil {
		return err
	}
	serverLog, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	defer serverLog.Close()
	dbPath, tokenPath := verifier.DataDirFiles(dataDir)
	st, err := store.OpenSQLite(ctx, dbPath, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := verifier.New(verifier.Config{
		Store:   st,
		Backend: &verifier.AttestBackend{},
		Logger:  slog.New(slog.NewTextHandler(serverLog, nil)),
		// Simulated TPMs carry no vendor EK certificate, so the demo trusts
		// each EK on first use.
		EKMode:           verifier.EKModeTOFU,
		Interval:         time.Second,
		UnreachableAfter: 5,
	}, dataDir)
	if err != nil {
		return err
	}
	defer srv.Close()
	cert, fingerprint, err := verifier.LoadOrCreateTLS(dataDir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return withExitCode(exitUnavailable, err)
	}
	serverURL := "https://" + ln.Addr().String()
	serveCtx, stopServer := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(serveCtx, ln, &cert) }()
	defer func() {
		stopServer()
		<-served
	}()

	token, err := os.ReadFile(tokenPath)
	if err != nil {
		return err
	}
	tlsConfig, err := api.TLSConfig(fingerprint, "")
	if err != nil {
		return err
	}
	d.client = &api.Client{
		BaseURL: serverURL,
		Token:   strings.TrimSpace(string(token)),
		HTTP:    &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}},
	}

	d.section("Start the verifier")
	d.say("vouch server is listening on %s with a new CA; agents pin its fingerprint:", serverURL)
	d.say("  %s", fingerprint)
	d.say("EK mode: trust on first use (simulated TPMs have no vendor certificate). Attestation interval: 1s.")

	d.section("Start three agents, each on a simulated TPM booted from a real event log")
	defer d.stopAgents()
	for _, m := range demoMachines {
		if err := d.startAgent(self, serverURL, fingerprint, m.name, m.log); err != nil {
			return err
		}
		d.say("  %-10s replays %s (%s)", m.name, m.log, m.about)
	}
	d.say("Each agent enrolls its EK and AK (credential activation proves they share a TPM),")
	d.say("then responds to nonces with quotes and its event log. The verifier learns each")
	d.say("machine's reference values from its first verified boot and waits for approval.")
	if err := d.waitAll(ctx, func(m api.Machine) bool {
		return m.State == api.StatePending && strings.Contains(strings.Join(m.ReasonCodes, ","), verifier.ReasonReferenceUnapproved)
	}); err != nil {
		return err
	}
	if err := d.hostsList(ctx, "$ vouch hosts list"); err != nil {
		return err
	}

	d.section("An administrator approves the machines and their reference values")
	for _, m := range demoMachines {
		if _, err := d.client.Do(ctx, http.MethodPost, "/v1/machines/"+m.name+"/approve", nil, nil); err != nil {
			return err
		}
		d.say("$ vouch hosts approve %s", m.name)
	}
	if err := d.waitAll(ctx, func(m api.Machine) bool { return m.State == api.StateTrusted }); err != nil {
		return err
	}
	if err := d.hostsList(ctx, "$ vouch hosts list"); err != nil {
		return err
	}
	if err := d.showResult(ctx, demoMachines[0].name, filepath.Join(dataDir, "result-key.pub")); err != nil {
		return err
	}

	victim := demoMachines[1].name
	d.section("Tamper with " + victim)
	d.say("An unapproved boot application is measured into PCR 4 of %s's TPM, and the", victim)
	d.say("firmware records it in the event log, as a real boot would.")
	if err := d.agents[victim].Process.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	if err := d.waitFor(ctx, victim, func(m api.Machine) bool { return m.State == api.StateUntrusted }); err != nil {
		return err
	}
	if err := d.hostsList(ctx, "$ vouch hosts list"); err != nil {
		return err
	}
	var detail api.MachineDetail
	if _, err := d.client.Do(ctx, http.MethodGet, "/v1/machines/"+victim, nil, &detail); err != nil {
		return err
	}
	d.say("\n$ vouch hosts show %s", victim)
	printMachineDetail(d.out, detail)

	hidden := demoMachines[2].name
	d.section("Tamper with " + hidden + " without a trace in the event log")
	d.say("Something extends PCR 4 of %s's TPM and records no event: the log no longer", hidden)
	d.say("replays to the quoted PCR, so no event of the log can be trusted.")
	if err := d.agents[hidden].Process.Signal(syscall.SIGUSR2); err != nil {
		return err
	}
	if err := d.waitFor(ctx, hidden, func(m api.Machine) bool { return m.State == api.StateUntrusted }); err != nil {
		return err
	}
	if _, err := d.client.Do(ctx, http.MethodGet, "/v1/machines/"+hidden, nil, &detail); err != nil {
		return err
	}
	d.say("\n$ vouch hosts show %s", hidden)
	detail.History = nil
	printMachineDetail(d.out, detail)

	d.section("Done")
	d.say("A verified quote proves the event log; the log names the event the reference")
	d.say("values lack, and a log that does not replay is rejected outright.")
	d.say("Try it yourself: vouch server, vouch agent, vouch hosts (see docs/server.md).")
	if keep {
		d.say("Kept %s; the admin token is %s.", dir, tokenPath)
	}
	return nil
}

func (d *demo) startAgent(self, serverURL, fingerprint, name, logName string) error {
	raw, err := demoLogs.ReadFile("testdata/demo/" + logName)
	if err != nil {
		return err
	}
	logPath := filepath.Join(d.dir, logName)
	if err := os.WriteFile(logPath, raw, 0o600); err != nil {
		return err
	}
	agentLog, err := os.Create(filepath.Join(d.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "agent",
		"--server", serverURL, "--server-fingerprint", fingerprint,
		"--name", name, "--state-dir", filepath.Join(d.dir, name),
		"--tpm", "simulator", "--simulate-boot", logPath, "--simulate-ima", "25",
		"--min-backoff", "200ms", "--max-backoff", "2s", "--wait", "5s")
	cmd.Stdout = agentLog
	cmd.Stderr = agentLog
	if err := cmd.Start(); err != nil {
		agentLog.Close()
		return fmt.Errorf("start agent %s: %w", name, err)
	}
	agentLog.Close()
	d.agents[name] = cmd
	return nil
}

func (d *demo) stopAgents() {
	for _, cmd := range d.agents {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, cmd := range d.agents {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

func (d *demo) machines(ctx context.Context) ([]api.Machine, error) {
	var ms []api.Machine
	_, err := d.client.Do(ctx, http.MethodGet, "/v1/machines", nil, &ms)
	return ms, err
}

func (d *demo) waitAll(ctx context.Context, ok func(api.Machine) bool) error {
	for _, m := range demoMachines {
		if err := d.waitFor(ctx, m.name, ok); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) waitFor(ctx context.Context, name string, ok func(api.Machine) bool) error {
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		ms, err := d.machines(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name == name && ok(m) {
				return nil
			}
		}
		for _, a := range d.agents {
			if a.ProcessState != nil {
				return fmt.Errorf("an agent exited early: see the logs in %s", d.dir)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return withExitCode(exitUnavailable, fmt.Errorf("machine %s did not reach the expected state in 45s: see the logs in %s (run with --keep to keep them)", name, d.dir))
}

func (d *demo) hostsList(ctx context.Context, prompt string) error {
	ms, err := d.machines(ctx)
	if err != nil {
		return err
	}
	d.say("\n%s", prompt)
	printMachines(d.out, ms, time.Now())
	return nil
}

// showResult waits for the agent of name to store a signed attestation
// result whose state is trusted, and verifies it as a relying party would.
func (d *demo) showResult(ctx context.Context, name, keyFile string) error {
	d.section("A relying party checks " + name + "'s signed attestation result")
	d.say("Each agent stores the verifier's signed verdict; anyone with the verifier's public")
	d.say("key can check it offline, without the admin token.")
	pub, err := readResultKey(keyFile)
	if err != nil {
		return err
	}
	path := filepath.Join(d.dir, name, "result.json")
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			if r, err := result.Verify(data, pub, time.Now()); err == nil && r.Trusted() {
				d.say("\n$ vouch result verify %s --key %s --machine %s", path, keyFile, name)
				return printResult(d.out, "table", r)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %s stored no trusted attestation result in %s: %w", name, path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
