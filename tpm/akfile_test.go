package tpm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/internal/testfifo"
)

// TestLoadAKFileEndlessPipe: an AK path that names a pipe that never ends
// fails at MaxAKFileSize instead of being read until memory runs out.
func TestLoadAKFileEndlessPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "ak.bin")
	testfifo.Endless(t, fifo, MaxAKFileSize+1)
	err := testfifo.Within(t, 10*time.Second, func() error {
		_, err := LoadAKFile(fifo)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "65536-byte limit") {
		t.Errorf("LoadAKFile of an endless pipe = %v, want an error naming %s and the limit", err, fifo)
	}
}

func TestLoadAKFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ak.bin")
	if err := os.WriteFile(path, make([]byte, MaxAKFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAKFile(path); err == nil || !strings.Contains(err.Error(), "larger than the 65536-byte limit") {
		t.Errorf("LoadAKFile of a file over the limit = %v", err)
	}
	// vouch tpm quote --ak creates a missing AK file, so the error must
	// still wrap fs.ErrNotExist.
	if _, err := LoadAKFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadAKFile of a missing file = %v, want one wrapping fs.ErrNotExist", err)
	}
}
