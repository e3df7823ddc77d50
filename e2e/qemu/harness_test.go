package qemu

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

const evEFIGPTEvent = 0x80000006

// The GPT that WriteDisk writes for DefaultLayout must be the one OVMF
// measured into PCR 5 in the corpus boot: header, entry count, entry.
func TestDefaultLayoutMatchesCorpusGPTEvent(t *testing.T) {
	raw, err := os.ReadFile("testdata/shim-sboff.eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	events, err := parseTCGLog(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, ev := range events {
		if ev.Type == evEFIGPTEvent {
			got = ev.Data
		}
	}
	if got == nil {
		t.Fatal("corpus log has no EV_EFI_GPT_EVENT")
	}
	entries := DefaultLayout.gptEntryArray()
	want := append([]byte{}, DefaultLayout.gptHeader(false, entries)...)
	want = binary.LittleEndian.AppendUint64(want, 1)
	want = append(want, entries[:gptEntrySize]...)
	if !bytes.Equal(got, want) {
		t.Errorf("GPT event data differs from the corpus\n got %x\nwant %x", want, got)
	}
}

// GrubConfig must reproduce the corpus grub.cfg, whose SHA-256 GRUB
// measured into PCR 9 (image-digests.txt of the corpus).
func TestGrubConfigMatchesCorpus(t *testing.T) {
	sum := sha256.Sum256([]byte(GrubConfig{Title: "realboot", CmdLine: "console=ttyS0 panic=-1"}.Text()))
	if got, want := hex.EncodeToString(sum[:]), "42d981135d7e7737bec39183f0bd2d22bc8bda5c5a77401852e8aec8c00a0bc5"; got != want {
		t.Errorf("grub.cfg sha256 = %s, want %s", got, want)
	}
	legacy := GrubConfig{Title: "t", CmdLine: "x", Legacy: true}.Text()
	if !bytes.Contains([]byte(legacy), []byte("\n  linux /vmlinuz x\n  initrd /initrd.img\n")) {
		t.Errorf("legacy grub.cfg lacks plain linux/initrd:\n%s", legacy)
	}
}

type cpioEntry struct {
	ino, mode, nlink, major, minor uint64
	name                           string
	data                           []byte
}

// readNewc parses a newc archive, checking each field the kernel reads.
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint64 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("offset %d field %d: %v", off, i, err)
		}
		return v
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		e := cpioEntry{ino: field(0), mode: field(1), nlink: field(4), major: field(9), minor: field(10)}
		for _, i := range []int{2, 3, 5, 7, 8, 12} { // uid gid mtime devmajor devminor check
			if field(i) != 0 {
				t.Errorf("entry at %d: field %d = %d, want 0", off, i, field(i))
			}
		}
		size, ns := int(field(6)), int(field(11))
		e.name = string(b[off+110 : off+110+ns-1])
		dataOff := align(off + 110 + ns)
		e.data = b[dataOff : dataOff+size]
		off = align(dataOff + size)
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestWriteInitramfs(t *testing.T) {
	files := []InitramfsFile{
		{Path: "init", Mode: 0o755, Data: []byte("#!init")},
		{Path: "/lib/modules/e1000.ko", Mode: 0o644, Data: []byte("abcde")},
		{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
	var a, b bytes.Buffer
	if err := WriteInitramfs(&a, files); err != nil {
		t.Fatal(err)
	}
	// Same entries in another order: same bytes.
	rev := []InitramfsFile{files[3], files[2], files[1], files[0]}
	if err := WriteInitramfs(&b, rev); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("archive depends on the order of the entries")
	}
	zr, err := gzip.NewReader(&a)
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header has time %v name %q", zr.ModTime, zr.Name)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	entries := readNewc(t, raw)
	var names []string
	for i, e := range entries {
		names = append(names, e.name)
		if e.ino != uint64(i+1) {
			t.Errorf("%s: inode %d, want %d", e.name, e.ino, i+1)
		}
	}
	want := []string{"dev", "dev/console", "init", "lib", "lib/modules", "lib/modules/e1000.ko", "tmp"}
	if len(names) != len(want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("entries %q, want %q", names, want)
		}
	}
	byName := map[string]cpioEntry{}
	for _, e := range entries {
		byName[e.name] = e
	}
	if e := byName["dev/console"]; e.mode != 0o020600 || e.major != 5 || e.minor != 1 {
		t.Errorf("dev/console: mode %o rdev %d:%d", e.mode, e.major, e.minor)
	}
	if e := byName["lib"]; e.mode != 0o040755 || e.nlink != 2 {
		t.Errorf("lib: mode %o nlink %d", e.mode, e.nlink)
	}
	if e := byName["tmp"]; e.mode != 0o041777 {
		t.Errorf("tmp: mode %o, want 41777", e.mode)
	}
	if e := byName["init"]; e.mode != 0o100755 || string(e.data) != "#!init" {
		t.Errorf("init: mode %o data %q", e.mode, e.data)
	}
	if e := byName["lib/modules/e1000.ko"]; string(e.data) != "abcde" {
		t.Errorf("e1000.ko data %q", e.data)
	}

	if err := WriteInitramfs(io.Discard, []InitramfsFile{files[0], files[0]}); err == nil {
		t.Error("a duplicate entry was accepted")
	}
	if err := WriteInitramfs(io.Discard, []InitramfsFile{{Path: "/", Mode: 0o644}}); err == nil {
		t.Error("an empty path was accepted")
	}
}

func TestWriteDiskReproducible(t *testing.T) {
	for _, tool := range []string{"mkfs.fat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dosfstools mtools)", tool)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "kernel")
	if err := os.WriteFile(src, bytes.Repeat([]byte("k"), 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []ESPFile{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: []byte("shim")},
		{Path: "EFI/debian/grub.cfg", Data: []byte("set timeout=0\n")},
		{Path: "vmlinuz", Source: src},
	}
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	ctx := context.Background()
	if err := WriteDisk(ctx, a, DefaultLayout, files); err != nil {
		t.Fatal(err)
	}
	// Touch the source: its time must not reach the image.
	if err := os.Chtimes(src, espTime.AddDate(5, 0, 0), espTime.AddDate(5, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := WriteDisk(ctx, b, DefaultLayout, files); err != nil {
		t.Fatal(err)
	}
	ra, _ := os.ReadFile(a)
	rb, _ := os.ReadFile(b)
	if !bytes.Equal(ra, rb) {
		t.Fatal("two builds of the same disk differ")
	}
	if len(ra) != int(DefaultLayout.TotalSectors)*sectorSize {
		t.Fatalf("disk is %d bytes", len(ra))
	}
	le := binary.LittleEndian
	for _, lba := range []uint64{1, DefaultLayout.TotalSectors - 1} {
		h := append([]byte{}, ra[lba*sectorSize:lba*sectorSize+gptHeaderSize]...)
		crc := le.Uint32(h[16:])
		copy(h[16:20], []byte{0, 0, 0, 0})
		if crc32.ChecksumIEEE(h) != crc || string(h[:8]) != "EFI PART" {
			t.Errorf("GPT header at LBA %d is invalid", lba)
		}
		entryLBA := le.Uint64(h[72:])
		arr := ra[entryLBA*sectorSize : entryLBA*sectorSize+gptEntries*gptEntrySize]
		if crc32.ChecksumIEEE(arr) != le.Uint32(h[88:]) {
			t.Errorf("partition entries of the header at LBA %d fail their CRC", lba)
		}
	}
	// mtools reads the files back from the partition.
	part := filepath.Join(dir, "part.img")
	off := DefaultLayout.FirstLBA * sectorSize
	if err := os.WriteFile(part, ra[off:off+(DefaultLayout.LastLBA-DefaultLayout.FirstLBA+1)*sectorSize], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mtype", "-i", part, "::/EFI/debian/grub.cfg").Output()
	if err != nil || string(out) != "set timeout=0\n" {
		t.Errorf("mtype grub.cfg = %q, %v", out, err)
	}

	bad := DefaultLayout
	bad.LastLBA = bad.TotalSectors - 2
	if err := WriteDisk(ctx, filepath.Join(dir, "c.img"), bad, files); err == nil {
		t.Error("a partition overlapping the backup GPT was accepted")
	}
}

func TestVersionLessOrdersKernelABIs(t *testing.T) {
	older := "linux-image-6.1.0-9-amd64_6.1.27-1_amd64.deb"
	newer := "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb"
	if !versionLess(older, newer) {
		t.Errorf("%s sorts after %s", older, newer)
	}
	if versionLess(newer, older) {
		t.Errorf("%s sorts before %s", newer, older)
	}
	if versionLess(newer, newer) {
		t.Error("a name sorts before itself")
	}
}

func TestWantedFiles(t *testing.T) {
	for name, want := range map[string]bool{
		"boot/vmlinuz-6.1.0-57-amd64":                                                 true,
		"boot/config-6.1.0-57-amd64":                                                  true,
		"usr/lib/shim/shimx64.efi.signed":                                             true,
		"usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed":                           true,
		"lib/modules/6.1.0-57-amd64/kernel/drivers/net/ethernet/intel/e1000/e1000.ko": true,
		"lib/modules/6.1.0-57-amd64/kernel/fs/efivarfs/efivarfs.ko":                   true,
		"lib/modules/6.1.0-57-amd64/kernel/drivers/net/virtio_net.ko":                 false,
		"usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed":                            false,
		"boot/System.map-6.1.0-57-amd64":                                              false,
	} {
		if got := wanted(name); got != want {
			t.Errorf("wanted(%q) = %v, want %v", name, got, want)
		}
	}
}
