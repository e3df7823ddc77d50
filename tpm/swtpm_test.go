package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/attest"
)

// swtpmProcess is a swtpm the test started. Its state directory outlives
// restarts, as the state of a real TPM outlives reboots.
type swtpmProcess struct {
	t        *testing.T
	stateDir string
	sock     string
	cmd      *exec.Cmd
}

// startSwtpm starts swtpm on a unix socket in a temporary directory. It
// skips the test when swtpm is not installed, except in CI (CI=true),
// where a missing swtpm fails the test.
func startSwtpm(t *testing.T) *swtpmProcess {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swtpm is not installed, and CI must run the swtpm tests: install Debian's swtpm package")
		}
		t.Skip("swtpm is not installed: apt-get install swtpm swtpm-tools to run this test")
	}
	dir := t.TempDir()
	p := &swtpmProcess{t: t, stateDir: filepath.Join(dir, "state"), sock: filepath.Join(dir, "tpm.sock")}
	if err := os.Mkdir(p.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *swtpmProcess) start() {
	p.t.Helper()
	os.Remove(p.sock)
	ctrl := p.sock + ".ctrl"
	os.Remove(ctrl)
	p.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+p.stateDir,
		"--server", "type=unixio,path="+p.sock,
		"--ctrl", "type=unixio,path="+ctrl,
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+filepath.Join(filepath.Dir(p.stateDir), "swtpm.log"))
	var stderr bytes.Buffer
	p.cmd.Stderr = &stderr
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("starting swtpm: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", p.sock)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			p.stop()
			p.t.Fatalf("swtpm did not open %s within 10s: %v; stderr: %s", p.sock, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the swtpm process; swtpm saves its state when it exits on
// SIGTERM.
func (p *swtpmProcess) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

func (p *swtpmProcess) transport() string { return "swtpm:unix:" + p.sock }

func (p *swtpmProcess) open() *TPM {
	p.t.Helper()
	tp, err := Open(Config{Transport: p.transport()})
	if err != nil {
		p.t.Fatalf("Open(%s): %v", p.transport(), err)
	}
	return tp
}

func closeChecked(t *testing.T, tp *TPM) {
	t.Helper()
	assertNoTransientHandles(t, tp)
	if err := tp.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestSwtpmRoundTrip(t *testing.T) {
	p := startSwtpm(t)
	for _, tc := range []struct{ ak, ek KeyType }{{ECC, RSA}, {RSA, ECC}} {
		t.Run(fmt.Sprintf("%s-ak-%s-ek", tc.ak, tc.ek), func(t *testing.T) {
			tp := p.open()
			defer closeChecked(t, tp)
			roundTrip(t, tp, tc.ak, tc.ek)
		})
	}
}

// TestSwtpmTCP opens swtpm through its TCP data channel.
func TestSwtpmTCP(t *testing.T) {
	p := startSwtpm(t)
	p.stop()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+p.stateDir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	addr := fmt.Sprintf("swtpm:tcp:127.0.0.1:%d", port)
	var tp *TPM
	for i := 0; ; i++ {
		tp, err = Open(Config{Transport: addr})
		if err == nil {
			break
		}
		if i == 200 {
			t.Fatalf("Open(%s): %v", addr, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	defer closeChecked(t, tp)
	info, err := tp.Info()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Manufacturer != "IBM" {
		t.Errorf("manufacturer %q, want IBM (swtpm's libtpms)", info.Manufacturer)
	}
}

// TestSwtpmSealAcrossRestarts seals in one swtpm process, unseals in the
// next, and checks that a PCR extend makes the TPM refuse to unseal.
func TestSwtpmSealAcrossRestarts(t *testing.T) {
	p := startSwtpm(t)
	secret := []byte("totp seed 0123456789")
	sel := attest.Selection{{Hash: attest.AlgSHA256, PCRs: []int{7, 16}}}

	tp := p.open()
	sealed, err := tp.Seal(secret, sel)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	closeChecked(t, tp)
	blob, err := sealed.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}

	// A restart resets the PCRs to the same values: the secret unseals.
	p.stop()
	p.start()
	tp = p.open()
	defer closeChecked(t, tp)
	sealed, err = UnmarshalSealed(blob)
	if err != nil {
		t.Fatalf("UnmarshalSealed: %v", err)
	}
	got, err := tp.Unseal(sealed)
	if err != nil {
		t.Fatalf("Unseal after restart: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("unsealed %q, want %q", got, secret)
	}

	d := make([]byte, 32)
	d[0] = 1
	if err := tp.ExtendPCR(16, map[attest.Algorithm][]byte{attest.AlgSHA256: d}); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}
	_, err = tp.Unseal(sealed)
	if !errors.Is(err, ErrPolicyMismatch) {
		t.Fatalf("Unseal after extend: got %v, want ErrPolicyMismatch", err)
	}
}

// TestSwtpmBusy holds swtpm's data channel open with one client, as a
// running agent does, and checks that a second Open reports the busy
// socket instead of waiting forever.
func TestSwtpmBusy(t *testing.T) {
	p := startSwtpm(t)
	holder := p.open()

	start := time.Now()
	second, err := Open(Config{Transport: p.transport(), SwtpmTimeout: 500 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		holder.Close()
		t.Fatal("second Open succeeded while another client held the socket")
	}
	if !errors.Is(err, ErrSwtpmBusy) {
		t.Errorf("error %v, expected ErrSwtpmBusy", err)
	}
	if !strings.Contains(err.Error(), p.sock) || !strings.Contains(err.Error(), "another process probably holds the socket") {
		t.Errorf("error %q does not name the socket %s and the likely cause", err, p.sock)
	}
	if elapsed > 5*time.Second {
		t.Errorf("second Open returned after %s, expected about the 500ms timeout", elapsed)
	}

	// Once the first client is gone, swtpm serves the next one.
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := Open(Config{Transport: p.transport(), SwtpmTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Open after the first client closed: %v", err)
	}
	if _, err := third.ReadPCRs(attest.Selection{{Hash: attest.AlgSHA256, PCRs: []int{0}}}); err != nil {
		t.Errorf("reading a PCR after the first client closed: %v", err)
	}
	third.Close()
}
