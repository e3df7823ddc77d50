package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxSmallFileSize bounds small inputs such as PCR value files and AK
// public areas.
const maxSmallFileSize = 1 << 20

// readLimited reads path ("-" for standard input) and fails when it holds
// more than limit bytes, so a wrong file is not loaded whole.
func readLimited(path string, stdin io.Reader, limit int64) ([]byte, error) {
	var r io.Reader
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
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", displayPath(path), limit)
	}
	return data, nil
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
