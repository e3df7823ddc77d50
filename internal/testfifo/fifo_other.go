//go:build !unix

package testfifo

import (
	"testing"
	"time"
)

// Endless skips the test: this system has no FIFOs.
func Endless(t testing.TB, path string, size int64) {
	t.Helper()
	t.Skip("FIFOs need a unix system")
}

// Within runs read.
func Within(t testing.TB, timeout time.Duration, read func() error) error {
	return read()
}
