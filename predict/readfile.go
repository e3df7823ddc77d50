package predict

import (
	"fmt"
	"io"
	"os"
)

// maxHashedFileSize bounds a file that is hashed as it streams by, such as
// an initrd or a file GRUB loads, so that a device or an endless pipe
// given in its place fails instead of being read forever. Initrds of
// current distributions are tens to a few hundred megabytes.
const maxHashedFileSize = 4 << 30

// readFileLimited reads the file at path, which may be a device or a pipe
// that never ends, and fails when it holds more than limit bytes. kind
// names the kind of file in the error, such as "a GRUB script".
func readFileLimited(path string, limit int64, kind string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() && info.Size() > limit {
		return nil, tooLarge(path, limit, kind)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(path, limit, kind)
	}
	return data, nil
}

// hashLimited hashes r in banks and fails when r holds more than limit
// bytes. name and kind name the input in the error.
func hashLimited(banks []Bank, r io.Reader, limit int64, name, kind string) (Digests, error) {
	m, err := newMultiHash(banks)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(m, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if n > limit {
		return nil, tooLarge(name, limit, kind)
	}
	return m.digests(), nil
}

func tooLarge(name string, limit int64, kind string) error {
	return fmt.Errorf("%s is larger than the %d-byte limit for %s: check that it is the right file", name, limit, kind)
}
