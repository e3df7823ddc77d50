package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxSmallFileSize bounds small inputs such as PCR value files, keys, AK
// public areas and GRUB scripts.
const maxSmallFileSize = 1 << 20

// maxFirmwareImageSize bounds a firmware image or variable store such as
// OVMF_VARS.fd, which are a few MiB.
const maxFirmwareImageSize = 64 << 20

// readLimited reads path ("-" for standard input) and fails when it holds
// more than limit bytes, so a wrong file is not loaded whole. A regular
// file is read into a buffer of its size, so that a large input is not
// copied while the buffer grows.
func readLimited(path string, stdin io.Reader, limit int64) ([]byte, error) {
	var r io.Reader
	size := int64(0)
	if path == "-" {
		if stdin == nil {
			return nil, fmt.Errorf("standard input is not accepted here: give a file")
		}
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		r = f
	}
	if size > limit {
		return nil, tooLarge(path, limit)
	}
	var buf bytes.Buffer
	buf.Grow(int(size) + bytes.MinRead)
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", displayPath(path), err)
	}
	if int64(buf.Len()) > limit {
		return nil, tooLarge(path, limit)
	}
	return buf.Bytes(), nil
}

func tooLarge(path string, limit int64) error {
	return fmt.Errorf("%s is larger than the limit of %s for this input: check that it is the right file", displayPath(path), formatSize(limit))
}

// formatSize formats a byte count in the largest binary unit that divides
// it, such as "64 MiB".
func formatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func displayPath(path string) string {
	if path == "-" {
		return "standard input"
	}
	return path
}

// writePrivateFile writes data to path with mode 0600, replacing any file
// there atomically so that a failed write leaves the old file intact. It
// creates missing parent directories with mode 0700.
func writePrivateFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
