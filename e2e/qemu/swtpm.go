package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// TPM is the persistent state of one swtpm TPM 2.0, manufactured by
// swtpm_setup with EK certificates from swtpm-localca.
type TPM struct {
	// StateDir holds swtpm's NVRAM; booting again with it is a reboot of
	// the same machine.
	StateDir string
	// CADir is swtpm-localca's directory, shared by every TPM made with it.
	CADir string
	// CertDir holds the EK certificates swtpm_setup wrote (ek-rsa2048.crt,
	// ek-secp384r1.crt) in DER.
	CertDir string
}

// RootCA returns the path of the swtpm-localca root certificate (PEM), the
// trust anchor of every EK certificate made with the TPM's CADir.
func (t *TPM) RootCA() string {
	return filepath.Join(t.CADir, "swtpm-localca-rootca-cert.pem")
}

// IssuerCA returns the path of the intermediate certificate (PEM) that
// signed the EK certificates.
func (t *TPM) IssuerCA() string {
	return filepath.Join(t.CADir, "issuercert.pem")
}

// ManufactureTPM creates a new TPM in dir with swtpm_setup: SHA-1 and
// SHA-256 PCR banks, RSA 2048 and ECC P-384 EKs with certificates in NV,
// and a platform certificate. The certificates are signed by the
// swtpm-localca in caDir, which is created on first use, so that several
// TPMs share one root like the TPMs of one vendor.
func ManufactureTPM(ctx context.Context, dir, caDir string) (*TPM, error) {
	t := &TPM{
		StateDir: filepath.Join(dir, "state"),
		CADir:    caDir,
		CertDir:  filepath.Join(dir, "certs"),
	}
	for _, d := range []string{t.StateDir, t.CADir, t.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	conf := filepath.Join(dir, "swtpm_setup.conf")
	caConf := filepath.Join(dir, "swtpm-localca.conf")
	caOpts := filepath.Join(dir, "swtpm-localca.options")
	files := map[string]string{
		conf:   fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\nactive_pcr_banks = sha1,sha256\n", caConf, caOpts),
		caConf: fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", caDir),
		caOpts: "--platform-manufacturer Vouch\n--platform-version 2.1\n--platform-model QEMU\n",
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	logFile := filepath.Join(dir, "swtpm_setup.log")
	err := run(ctx, nil, "swtpm_setup", "--tpm2", "--tpmstate", t.StateDir,
		"--create-ek-cert", "--create-platform-cert", "--lock-nvram",
		"--pcr-banks", "sha1,sha256", "--config", conf,
		"--write-ek-cert-files", t.CertDir, "--logfile", logFile)
	if err != nil {
		msg, _ := os.ReadFile(logFile)
		return nil, fmt.Errorf("manufacture TPM in %s: %w\n%s", dir, err, msg)
	}
	if _, err := os.Stat(t.RootCA()); err != nil {
		return nil, fmt.Errorf("swtpm_setup wrote no swtpm-localca root: %w (is swtpm-tools with certtool installed?)", err)
	}
	return t, nil
}

// SWTPM is a running swtpm serving one TPM on a control socket for QEMU.
type SWTPM struct {
	Socket string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
}

// Start runs swtpm on the TPM's state with its control channel on the Unix
// socket sock. swtpm ends when QEMU disconnects; Stop ends it otherwise.
func (t *TPM) Start(ctx context.Context, sock, logFile string) (*SWTPM, error) {
	_ = os.Remove(sock)
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--terminate",
		"--tpmstate", "dir="+t.StateDir,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+logFile+",level=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w (install swtpm)", err)
	}
	s := &SWTPM{Socket: sock, cmd: cmd, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			msg, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("swtpm exited before creating %s: %v: %s", sock, s.err, strings.TrimSpace(string(msg)))
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, errors.New("swtpm did not create its socket within 10s")
		}
	}
}

// Stop ends swtpm if it is still running and waits for it.
func (s *SWTPM) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
