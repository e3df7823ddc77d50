//go:build unix

// Package testfifo makes named pipes that never reach end of file, for
// tests of readers that must stop at a size limit instead of reading until
// the end.
package testfifo

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// Endless creates a FIFO at path whose writer sends size zero bytes and
// then keeps the pipe open until the test ends, like a device or a pipe
// that never ends. A reader that waits for end of file blocks, so tests
// pair it with Within. It skips the test where mkfifo fails.
func Endless(t testing.TB, path string, size int64) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo %s: %v", path, err)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		// Opening for writing blocks until a reader opens the FIFO.
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		chunk := make([]byte, 64<<10)
		for sent := int64(0); sent < size; {
			n := min(int64(len(chunk)), size-sent)
			// A reader that stopped at its limit closes the FIFO, and
			// the write fails with EPIPE.
			if _, err := w.Write(chunk[:n]); err != nil {
				return
			}
			sent += n
		}
		<-done
	}()
	t.Cleanup(func() {
		close(done)
		// Unblock a writer still waiting in open for a reader.
		if r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			defer r.Close()
		}
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Errorf("the writer of FIFO %s did not stop", path)
		}
	})
}

// Within runs read and fails the test when it has not returned after
// timeout: a reader that waits for the end of an Endless FIFO never
// returns. It returns read's error.
func Within(t testing.TB, timeout time.Duration, read func() error) error {
	t.Helper()
	result := make(chan error, 1)
	go func() { result <- read() }()
	select {
	case err := <-result:
		return err
	case <-time.After(timeout):
		t.Fatalf("the read did not return within %v: it waits for the end of an endless input instead of stopping at its limit", timeout)
		return errors.New("timed out")
	}
}
