//go:build !unix

package tpm

import "os"

// openDeviceFile opens a TPM device file.
func openDeviceFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR, 0)
}
