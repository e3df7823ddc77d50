package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf16"
)

const sectorSize = 512

// DiskLayout fixes every value of a disk image that would otherwise be
// random or depend on the time. OVMF measures the GPT header and partition
// entries into PCR 5 and the partition's device path into the event data of
// each loaded image, so two disks boot with the same event log only when
// their layouts are equal.
type DiskLayout struct {
	// DiskGUID and PartitionGUID are stored as given, in the on-disk
	// (mixed-endian) byte order.
	DiskGUID      [16]byte
	PartitionGUID [16]byte
	PartitionName string
	// TotalSectors is the disk's size; the EFI system partition spans
	// FirstLBA to LastLBA inclusive.
	TotalSectors uint64
	FirstLBA     uint64
	LastLBA      uint64
	// VolumeID and VolumeLabel are the FAT volume's serial number and label.
	VolumeID    uint32
	VolumeLabel string
}

// DefaultLayout is the layout of the disks booted for the ovmf-swtpm
// corpus, so that a boot of the same files reproduces the corpus's event
// log byte for byte: a 66 MiB disk with a 64 MiB EFI system partition at
// LBA 2048.
var DefaultLayout = DiskLayout{
	DiskGUID:      [16]byte{'l', 'a', 'e', 'R', 'o', 'B', 't', 'o', ' ', 'D', 'i', 's', 'k', 0, 0, 1},
	PartitionGUID: [16]byte{'l', 'a', 'e', 'R', 'o', 'B', 't', 'o', ' ', 'E', 'S', 'P', 0, 0, 0, 1},
	PartitionName: "EFI System Partition",
	TotalSectors:  135168,
	FirstLBA:      2048,
	LastLBA:       133119,
	VolumeID:      0x56434831,
	VolumeLabel:   "VOUCH-ESP",
}

// efiSystemPartition is the ESP type GUID C12A7328-F81F-11D2-BA4B-00A0C93EC93B
// in on-disk byte order.
var efiSystemPartition = [16]byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}

const (
	gptEntries    = 128
	gptEntrySize  = 128
	gptHeaderSize = 92
)

// gptEntrySectors is the size of the partition entry array in sectors.
const gptEntrySectors = gptEntries * gptEntrySize / sectorSize

func (l DiskLayout) check() error {
	switch {
	case l.FirstLBA < 2+gptEntrySectors:
		return fmt.Errorf("disk layout: partition starts at LBA %d, inside the primary GPT (first usable LBA is %d)", l.FirstLBA, 2+gptEntrySectors)
	case l.LastLBA < l.FirstLBA:
		return fmt.Errorf("disk layout: partition ends at LBA %d, before its start %d", l.LastLBA, l.FirstLBA)
	case l.LastLBA > l.TotalSectors-2-gptEntrySectors:
		return fmt.Errorf("disk layout: partition ends at LBA %d, inside the backup GPT (last usable LBA is %d)", l.LastLBA, l.TotalSectors-2-gptEntrySectors)
	case len(l.PartitionName) > 36:
		return fmt.Errorf("disk layout: partition name %q is longer than 36 characters", l.PartitionName)
	}
	return nil
}

// gptEntryArray returns the partition entry array: the EFI system
// partition, then zeroed entries.
func (l DiskLayout) gptEntryArray() []byte {
	arr := make([]byte, gptEntries*gptEntrySize)
	e := arr[:gptEntrySize]
	copy(e[0:16], efiSystemPartition[:])
	copy(e[16:32], l.PartitionGUID[:])
	binary.LittleEndian.PutUint64(e[32:], l.FirstLBA)
	binary.LittleEndian.PutUint64(e[40:], l.LastLBA)
	for i, u := range utf16.Encode([]rune(l.PartitionName)) {
		binary.LittleEndian.PutUint16(e[56+2*i:], u)
	}
	return arr
}

// gptHeader returns the GPT header of the primary (backup false) or backup
// copy, gptHeaderSize bytes long.
func (l DiskLayout) gptHeader(backup bool, entries []byte) []byte {
	my, alt, entryLBA := uint64(1), l.TotalSectors-1, uint64(2)
	if backup {
		my, alt, entryLBA = alt, my, l.TotalSectors-1-gptEntrySectors
	}
	h := make([]byte, gptHeaderSize)
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x00010000)
	binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
	binary.LittleEndian.PutUint64(h[24:], my)
	binary.LittleEndian.PutUint64(h[32:], alt)
	binary.LittleEndian.PutUint64(h[40:], 2+gptEntrySectors)
	binary.LittleEndian.PutUint64(h[48:], l.TotalSectors-2-gptEntrySectors)
	copy(h[56:72], l.DiskGUID[:])
	binary.LittleEndian.PutUint64(h[72:], entryLBA)
	binary.LittleEndian.PutUint32(h[80:], gptEntries)
	binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
	return h
}

// protectiveMBR returns sector 0: one partition of type 0xEE covering the
// disk, so that tools without GPT support leave it alone.
func (l DiskLayout) protectiveMBR() []byte {
	s := make([]byte, sectorSize)
	p := s[446:462]
	copy(p, []byte{0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff})
	binary.LittleEndian.PutUint32(p[8:], 1)
	size := l.TotalSectors - 1
	if size > 0xffffffff {
		size = 0xffffffff
	}
	binary.LittleEndian.PutUint32(p[12:], uint32(size))
	s[510], s[511] = 0x55, 0xaa
	return s
}

// ESPFile is a file to copy onto the EFI system partition.
type ESPFile struct {
	// Path on the partition, with slashes, e.g. EFI/BOOT/BOOTX64.EFI.
	Path string
	// Source is a host file to copy; Data is used when Source is empty.
	Source string
	Data   []byte
}

// espTime dates every file and directory on the partition; FAT cannot
// store 1970.
var espTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// WriteDisk writes a raw disk image to dst: a protective MBR, a GPT with
// one EFI system partition, and that partition formatted as FAT with
// mkfs.fat and filled with mtools. The same layout and files give the same
// bytes. It needs mkfs.fat (dosfstools) and mcopy (mtools).
func WriteDisk(ctx context.Context, dst string, l DiskLayout, files []ESPFile) error {
	if err := l.check(); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(dst), ".esp-")
	if err != nil {
		return fmt.Errorf("create work directory for %s: %w", dst, err)
	}
	defer os.RemoveAll(work)

	// Stage the files in a tree with fixed times, then copy the tree with
	// mcopy -s -m, which keeps those times on files and directories.
	stage := filepath.Join(work, "stage")
	var top []string
	for _, f := range files {
		rel := filepath.FromSlash(strings.Trim(f.Path, "/"))
		if rel == "" || strings.HasPrefix(filepath.Clean(rel), "..") {
			return fmt.Errorf("ESP file path %q is not inside the partition", f.Path)
		}
		out := filepath.Join(stage, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		data := f.Data
		if f.Source != "" {
			if data, err = os.ReadFile(f.Source); err != nil {
				return fmt.Errorf("read ESP file %s: %w", f.Path, err)
			}
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
		first := strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]
		if !contains(top, first) {
			top = append(top, first)
		}
	}
	if err := filepath.Walk(stage, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, espTime, espTime)
	}); err != nil {
		return fmt.Errorf("date staged ESP files: %w", err)
	}

	part := filepath.Join(work, "esp.img")
	sectors := l.LastLBA - l.FirstLBA + 1
	if sectors%2 != 0 {
		return fmt.Errorf("disk layout: partition of %d sectors is not a whole number of KiB", sectors)
	}
	if err := run(ctx, nil, "mkfs.fat", "--invariant", "-i", fmt.Sprintf("%08x", l.VolumeID),
		"-n", l.VolumeLabel, "-h", fmt.Sprint(l.FirstLBA), "-C", part, fmt.Sprint(sectors/2)); err != nil {
		return err
	}
	env := []string{"MTOOLS_SKIP_CHECK=1", fmt.Sprintf("SOURCE_DATE_EPOCH=%d", espTime.Unix())}
	for _, t := range top {
		if err := run(ctx, env, "mcopy", "-s", "-m", "-i", part, filepath.Join(stage, t), "::/"); err != nil {
			return err
		}
	}

	entries := l.gptEntryArray()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	write := func(lba uint64, b []byte) {
		if err == nil {
			_, err = out.WriteAt(b, int64(lba)*sectorSize)
		}
	}
	write(0, l.protectiveMBR())
	write(1, l.gptHeader(false, entries))
	write(2, entries)
	write(l.TotalSectors-1-gptEntrySectors, entries)
	write(l.TotalSectors-1, l.gptHeader(true, entries))
	if err != nil {
		out.Close()
		return fmt.Errorf("write GPT to %s: %w", tmp, err)
	}
	if err := out.Truncate(int64(l.TotalSectors) * sectorSize); err != nil {
		out.Close()
		return err
	}
	pf, err := os.Open(part)
	if err != nil {
		out.Close()
		return err
	}
	defer pf.Close()
	if _, err := out.Seek(int64(l.FirstLBA)*sectorSize, io.SeekStart); err != nil {
		out.Close()
		return err
	}
	if _, err := io.Copy(out, pf); err != nil {
		out.Close()
		return fmt.Errorf("copy the partition into %s: %w", tmp, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// run runs a command with extra environment variables and returns its
// output in the error when it fails.
func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
