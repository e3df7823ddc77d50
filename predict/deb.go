package predict

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// arMagic starts every ar archive, and so every Debian package.
const arMagic = "!<arch>\n"

// maxControlSize bounds the control archive read from a package.
const maxControlSize = 16 << 20

// debMember is called for each regular file of a package's data archive,
// with its path (without the leading "./") and contents.
type debMember func(path string, size int64, r io.Reader) error

// readDeb reads a Debian binary package, which is an ar archive containing
// debian-binary, control.tar.* and data.tar.*. It fills pkg with the name,
// version and architecture from the control file and with the package
// file's SHA-256, and calls visit for each regular file of the data
// archive. The control member must come before the data member, as dpkg-deb
// writes them, so that pkg is filled in (except SHA256) when visit runs.
func readDeb(r io.Reader, pkg *Package, visit debMember) error {
	sum := sha256.New()
	br := bufio.NewReader(io.TeeReader(r, sum))
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != arMagic {
		return errors.New("not a Debian package: missing ar archive signature")
	}
	sawData := false
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(br, hdr); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("read ar member header: %w", err)
		}
		if string(hdr[58:60]) != "`\n" {
			return fmt.Errorf("invalid ar member header %q: missing terminator", strings.TrimSpace(string(hdr[:16])))
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("invalid ar member %q: size field %q", name, strings.TrimSpace(string(hdr[48:58])))
		}
		member := &countingReader{r: io.LimitReader(br, size)}
		switch {
		case strings.HasPrefix(name, "control.tar"):
			if size > maxControlSize {
				return fmt.Errorf("control member of %d bytes exceeds the %d-byte limit", size, maxControlSize)
			}
			if err := readControl(name, member, pkg); err != nil {
				return err
			}
		case strings.HasPrefix(name, "data.tar"):
			if pkg.Name == "" {
				return errors.New("invalid Debian package: data member comes before the control member")
			}
			if err := walkTar(name, member, visit); err != nil {
				return fmt.Errorf("%s %s: %w", pkg.Name, name, err)
			}
			sawData = true
		}
		if _, err := io.Copy(io.Discard, member); err != nil {
			return fmt.Errorf("read ar member %q: %w", name, err)
		}
		if member.n != size {
			return fmt.Errorf("invalid Debian package: ar member %q is truncated at %d of %d bytes", name, member.n, size)
		}
		if size%2 == 1 {
			if _, err := br.Discard(1); err != nil && err != io.EOF {
				return fmt.Errorf("read ar padding: %w", err)
			}
		}
	}
	if !sawData {
		return errors.New("invalid Debian package: no data.tar member")
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	pkg.SHA256 = sum.Sum(nil)
	return nil
}

// decompress wraps r according to the compression suffix of an archive
// member name.
func decompress(name string, r io.Reader) (io.Reader, func(), error) {
	noop := func() {}
	switch {
	case strings.HasSuffix(name, ".xz"):
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, noop, fmt.Errorf("open xz stream: %w", err)
		}
		return x, noop, nil
	case strings.HasSuffix(name, ".gz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, noop, fmt.Errorf("open gzip stream: %w", err)
		}
		return g, noop, nil
	case strings.HasSuffix(name, ".zst"):
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, noop, fmt.Errorf("open zstd stream: %w", err)
		}
		return z, z.Close, nil
	case strings.HasSuffix(name, ".tar"):
		return r, noop, nil
	}
	return nil, noop, fmt.Errorf("unsupported archive member %q: expected .tar, .tar.xz, .tar.gz or .tar.zst", name)
}

func walkTar(name string, r io.Reader, visit debMember) error {
	dr, closeFn, err := decompress(name, r)
	if err != nil {
		return err
	}
	defer closeFn()
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			// Reading the compressed stream to its end checks its trailer
			// (the gzip CRC, the xz index).
			if _, err := io.Copy(io.Discard, dr); err != nil {
				return fmt.Errorf("read past the end of the tar archive: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar entry: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		path := strings.TrimPrefix(strings.TrimPrefix(h.Name, "."), "/")
		if err := visit(path, h.Size, tr); err != nil {
			return err
		}
	}
}

func readControl(name string, r io.Reader, pkg *Package) error {
	var control []byte
	err := walkTar(name, r, func(path string, size int64, r io.Reader) error {
		if path != "control" {
			return nil
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, io.LimitReader(r, maxControlSize)); err != nil {
			return err
		}
		control = buf.Bytes()
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if control == nil {
		return fmt.Errorf("invalid Debian package: %s has no control file", name)
	}
	for _, line := range strings.Split(string(control), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			pkg.Name = v
		case "Version":
			pkg.Version = v
		case "Architecture":
			pkg.Architecture = v
		}
	}
	if pkg.Name == "" || pkg.Version == "" {
		return errors.New("invalid Debian package: control file lacks Package or Version")
	}
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
