package qemu

import (
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// InitramfsFile is one entry of an initramfs. Directories leading to a
// file are added on their own; list a directory only to give it a mode.
type InitramfsFile struct {
	// Path inside the archive, without a leading slash.
	Path string
	// Mode holds the permission bits and one of fs.ModeDir,
	// fs.ModeCharDevice (with Major and Minor) or none for a regular file.
	Mode         fs.FileMode
	Data         []byte
	Major, Minor uint32
}

// WriteInitramfs writes files as a gzip-compressed newc cpio archive that
// Linux unpacks as its initial root file system. The output depends only
// on files: entries are sorted by path, owned by root, dated 1970 and
// numbered in order, and the gzip header carries no name or time.
func WriteInitramfs(w io.Writer, files []InitramfsFile) error {
	entries := map[string]InitramfsFile{}
	for _, f := range files {
		p := strings.Trim(path.Clean("/"+f.Path), "/")
		if p == "" {
			return fmt.Errorf("initramfs entry %q has an empty path", f.Path)
		}
		if _, dup := entries[p]; dup {
			return fmt.Errorf("initramfs entry %q is listed twice", p)
		}
		f.Path = p
		entries[p] = f
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = InitramfsFile{Path: d, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	// Sorting by path puts every directory before what it holds.
	sort.Strings(names)

	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	cw := &cpioWriter{w: zw}
	for i, p := range names {
		if err := cw.entry(uint32(i+1), entries[p]); err != nil {
			return fmt.Errorf("initramfs entry %q: %w", p, err)
		}
	}
	if err := cw.entry(0, InitramfsFile{Path: "TRAILER!!!"}); err != nil {
		return err
	}
	return zw.Close()
}

type cpioWriter struct {
	w   io.Writer
	off int64
}

// Mode bits of the newc format (the st_mode of stat(2)).
const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioChar = 0o020000
)

func (c *cpioWriter) entry(ino uint32, f InitramfsFile) error {
	mode := uint32(f.Mode.Perm())
	if f.Mode&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	nlink := uint32(1)
	var data []byte
	switch {
	case f.Path == "TRAILER!!!":
		mode = 0
	case f.Mode&fs.ModeDir != 0:
		mode |= cpioDir
		nlink = 2
	case f.Mode&fs.ModeCharDevice != 0:
		mode |= cpioChar
	case f.Mode.Type() == 0:
		mode |= cpioReg
		data = f.Data
	default:
		return fmt.Errorf("unsupported file type %v", f.Mode.Type())
	}
	if len(data) > 0xffffffff {
		return fmt.Errorf("file of %d bytes is too large for newc", len(data))
	}
	name := f.Path + "\x00"
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, f.Major, f.Minor, len(name), 0)
	if err := c.write([]byte(hdr + name)); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

// pad aligns the stream to four bytes, as newc requires after each header
// with its name and after each file's data.
func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}
