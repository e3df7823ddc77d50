// Package allowlist builds IMA allowlists from files: a directory tree
// (an installed system or an unpacked image) or a Debian binary package.
// It is separate from package ima so that the parser and verifier stay
// free of decompression code.
package allowlist

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vouch-attest/vouch/ima"
)

// Options adjusts how files are added.
type Options struct {
	// Algorithm is the kernel's name of the file digest algorithm: the
	// one in the IMA policy's ima_hash (sha256 unless configured).
	// Empty means "sha256".
	Algorithm string
	// Prefix is prepended to the names of the files, which are relative
	// to the directory or package root. Empty means "/", so that names
	// match the absolute paths IMA logs.
	Prefix string
}

func (o Options) newHash() (hash.Hash, string, error) {
	alg := o.Algorithm
	if alg == "" {
		alg = "sha256"
	}
	switch alg {
	case "sha1":
		return sha1.New(), alg, nil
	case "sha256":
		return sha256.New(), alg, nil
	case "sha384":
		return sha512.New384(), alg, nil
	case "sha512":
		return sha512.New(), alg, nil
	}
	return nil, "", fmt.Errorf("unsupported digest algorithm %q: use sha1, sha256, sha384 or sha512", alg)
}

func (o Options) name(rel string) string {
	prefix := o.Prefix
	if prefix == "" {
		prefix = "/"
	}
	return path.Join(prefix, rel)
}

// AddDir adds the digest of every regular file under root to a. Symbolic
// links are skipped: IMA logs the path of the file it measured, which is
// the link's target, and the target is added under its own path when it
// is inside root.
func AddDir(a *ima.Allowlist, root string, opts Options) (int, error) {
	h, alg, err := opts.newHash()
	if err != nil {
		return 0, err
	}
	n := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		h.Reset()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if err := a.Add(alg, h.Sum(nil), opts.name(filepath.ToSlash(rel))); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// arMagic starts a Debian package, which is an ar archive.
const arMagic = "!<arch>\n"

// maxZstdWindow bounds the zstd window size of a data archive.
const maxZstdWindow = 128 << 20

// arHeaderSize is the size of an ar member header.
const arHeaderSize = 60

// AddDeb adds the digest of every regular file in a Debian binary
// package's data archive (data.tar, .gz, .xz, .zst or .bz2) to a. The
// package's maintainer scripts and configuration changes at install time
// are not seen, so files that dpkg or its scripts alter need other rules.
func AddDeb(a *ima.Allowlist, r io.Reader, opts Options) (int, error) {
	h, alg, err := opts.newHash()
	if err != nil {
		return 0, err
	}
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != arMagic {
		return 0, errors.New("not a Debian package: missing the ar archive header")
	}
	for {
		name, size, err := nextMember(r)
		if err == io.EOF {
			return 0, errors.New("the Debian package has no data.tar member")
		}
		if err != nil {
			return 0, err
		}
		member := io.LimitReader(r, size)
		if strings.HasPrefix(name, "data.tar") {
			tr, closeFn, err := decompress(name, member)
			if err != nil {
				return 0, err
			}
			defer closeFn()
			return addTar(a, tar.NewReader(tr), h, alg, opts)
		}
		// Skip the member and its padding to an even offset.
		if _, err := io.Copy(io.Discard, io.LimitReader(r, size+size%2)); err != nil {
			return 0, fmt.Errorf("reading ar member %q: %w", name, err)
		}
	}
}

// nextMember reads an ar member header.
func nextMember(r io.Reader) (string, int64, error) {
	var hdr [arHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return "", 0, io.EOF
		}
		return "", 0, fmt.Errorf("reading ar member header: %w", err)
	}
	if string(hdr[58:60]) != "`\n" {
		return "", 0, errors.New("invalid ar member header: the package is corrupt")
	}
	name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
	if err != nil || size < 0 {
		return "", 0, fmt.Errorf("ar member %q has an invalid size %q", name, bytes.TrimSpace(hdr[48:58]))
	}
	return name, size, nil
}

func decompress(name string, r io.Reader) (io.Reader, func(), error) {
	noop := func() {}
	switch path.Ext(name) {
	case ".tar":
		return r, noop, nil
	case ".gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return zr, func() { zr.Close() }, nil
	case ".xz":
		// NOTE: the xz decoder allocates the dictionary size the stream
		// declares, up to 4 GiB, and has no option to cap it, so a hostile
		// package can exhaust memory here.
		zr, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return zr, noop, nil
	case ".zst":
		// Bound the window a hostile package can make the decoder
		// allocate. The windows dpkg-deb writes are far smaller.
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return zr, zr.Close, nil
	case ".bz2":
		return bzip2.NewReader(r), noop, nil
	}
	return nil, nil, fmt.Errorf("data archive %q uses an unsupported compression", name)
}

func addTar(a *ima.Allowlist, tr *tar.Reader, h hash.Hash, alg string, opts Options) (int, error) {
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading data archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		h.Reset()
		if _, err := io.Copy(h, tr); err != nil {
			return n, fmt.Errorf("reading %s from the data archive: %w", hdr.Name, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if err := a.Add(alg, h.Sum(nil), opts.name(name)); err != nil {
			return n, err
		}
		n++
	}
}
