package predict

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/internal/testfifo"
)

// TestGrubFileMapReadEndlessPipe: a GRUB script mapped to a pipe that
// never ends fails at the script size limit.
func TestGrubFileMapReadEndlessPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "grub.cfg")
	testfifo.Endless(t, fifo, maxGrubScript+1)
	files := &GrubFileMap{Files: map[string]string{"/boot/grub/grub.cfg": fifo}}

	err := testfifo.Within(t, 10*time.Second, func() error {
		_, err := files.Read("/boot/grub/grub.cfg")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "1048576-byte limit") {
		t.Errorf("Read of an endless pipe = %v, want an error naming %s and the limit", err, fifo)
	}
}

// TestReadEfivarsDirEndlessPipe: an efivars entry that is a pipe that
// never ends fails at the variable size limit.
func TestReadEfivarsDirEndlessPipe(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "db-d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	testfifo.Endless(t, fifo, maxEfivarSize+1)

	err := testfifo.Within(t, 10*time.Second, func() error {
		_, err := ReadEfivarsDir(dir)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "1048576-byte limit") {
		t.Errorf("ReadEfivarsDir with an endless pipe = %v, want an error naming %s and the limit", err, fifo)
	}
}

func TestHashLimited(t *testing.T) {
	data := bytes.Repeat([]byte{1}, 100)
	if _, err := hashLimited([]Bank{SHA256}, bytes.NewReader(data), 100, "initrd.img", "an initrd"); err != nil {
		t.Errorf("hashLimited at the limit: %v", err)
	}
	_, err := hashLimited([]Bank{SHA256}, bytes.NewReader(data), 99, "initrd.img", "an initrd")
	if err == nil || !strings.Contains(err.Error(), "initrd.img is larger than the 99-byte limit for an initrd") {
		t.Errorf("hashLimited over the limit = %v", err)
	}
}
