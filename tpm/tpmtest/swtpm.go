// Package tpmtest starts TPMs for tests: a swtpm process with a fresh
// state directory.
package tpmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Swtpm starts a swtpm TPM 2.0 process with a fresh state in a temporary
// directory and returns its transport string for tpm.Config, such as
// "swtpm:unix:/tmp/.../data.sock". The process is stopped when the test
// ends. Without the swtpm binary the test is skipped, unless the
// environment variable CI is set, where the test fails instead.
//
// The swtpm state lives as long as the process, so one process can serve
// several connections in a row: one per vouch command, for example.
func Swtpm(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("swtpm is not installed, and CI is set: install Debian's swtpm package")
		}
		t.Skip("swtpm is not installed: apt-get install swtpm to run this test")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "data.sock")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear",
	)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting swtpm: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return "swtpm:unix:" + sock
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("swtpm exited before opening its socket: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not open %s within 10s\n%s", sock, stderr.String())
		}
	}
}
