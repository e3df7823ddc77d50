//go:build unix

package tpm

import (
	"os"
	"syscall"
)

// openDeviceFile opens a TPM character device in blocking mode.
//
// os.OpenFile would register the descriptor with Go's poller and switch it
// to O_NONBLOCK, because the TPM devices support poll. The Linux TPM driver
// then sends each command asynchronously: a read right after the write
// returns 0 bytes, not EAGAIN, while the TPM is still working, so a slow
// command (an RSA CreatePrimary) would read as an empty response. os.NewFile
// leaves a blocking descriptor blocking, so write sends the command and read
// waits for its response.
func openDeviceFile(path string) (*os.File, error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
