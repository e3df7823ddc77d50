//go:build unix

package tpm

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A FIFO supports poll like a TPM device does, so os.OpenFile would make
// it non-blocking; openDeviceFile must not.
func TestOpenDeviceFileBlocking(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "tpm")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}

	f, err := openDeviceFile(fifo)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nonblock, err := isNonblock(f.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if nonblock {
		t.Error("openDeviceFile returned a non-blocking descriptor")
	}

	// The same check fails for os.OpenFile, which is why it is not used.
	g, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var raw syscall.RawConn
	if raw, err = g.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	var gNonblock bool
	if err := raw.Control(func(fd uintptr) { gNonblock, _ = isNonblock(fd) }); err != nil {
		t.Fatal(err)
	}
	if !gNonblock {
		t.Log("os.OpenFile left the FIFO blocking on this Go version")
	}

	if _, err := openDeviceFile(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("missing device: err = %v, want not-exist", err)
	}
}

func isNonblock(fd uintptr) (bool, error) {
	flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	return flags&unix.O_NONBLOCK != 0, err
}
