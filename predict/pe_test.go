package predict

import (
	"bytes"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// osslsigncodeDigest returns the Authenticode digest that osslsigncode
// computes for a file: extract-data writes the SpcIndirectDataContent it
// would sign, whose last OCTET STRING is the image digest.
func osslsigncodeDigest(t *testing.T, file string, bank Bank) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "data.der")
	cmd := exec.Command("osslsigncode", "extract-data", "-h", string(bank), "-in", file, "-out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("osslsigncode extract-data -h %s %s: %v: %s", bank, file, err, msg)
	}
	der, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var last []byte
	var walk func([]byte)
	walk = func(b []byte) {
		for len(b) > 0 {
			var v asn1.RawValue
			rest, err := asn1.Unmarshal(b, &v)
			if err != nil {
				return
			}
			if v.IsCompound {
				walk(v.Bytes)
			} else if v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString {
				last = v.Bytes
			}
			b = rest
		}
	}
	walk(der)
	if last == nil {
		t.Fatalf("osslsigncode output for %s holds no digest", file)
	}
	return last
}

func TestAuthenticodeMatchesOsslsigncode(t *testing.T) {
	if _, err := exec.LookPath("osslsigncode"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("osslsigncode not found: .ci/run installs it")
		}
		t.Skip("osslsigncode not found: apt-get install osslsigncode")
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"shimx64.efi": extractDebFile(t, fetchDeb(t, debShim[0], debShim[1]), "usr/lib/shim/shimx64.efi.signed"),
		"grubx64.efi": extractDebFile(t, fetchDeb(t, debGrub[0], debGrub[1]), "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
	}
	tree, _ := unpackedDeb(t, debKernel[0], debKernel[1])
	kernel, err := os.ReadFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-57-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	files["vmlinuz"] = kernel
	files["unsigned.efi"] = buildPE(t, peSpec{sections: []testSection{{".text", 0x1000, []byte("code")}}})

	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Authenticode(data, AllBanks)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, bank := range AllBanks {
			want := osslsigncodeDigest(t, path, bank)
			if !bytes.Equal(got[bank], want) {
				t.Errorf("%s %s: got %x, osslsigncode computes %x", name, bank, got[bank], want)
			}
		}
	}
}

// testSection describes a section of a PE image built by buildPE.
type testSection struct {
	name        string
	virtualSize uint32
	data        []byte
}

type peSpec struct {
	sections []testSection
	// cert is appended after the sections and recorded as the attribute
	// certificate table.
	cert []byte
	// trailer is appended after the sections, before cert.
	trailer []byte
}

// buildPE writes a minimal PE32+ image with the given sections, each raw
// data block aligned to 0x200 bytes.
func buildPE(t testing.TB, spec peSpec) []byte {
	t.Helper()
	const lfanew = 0x40
	const optSize = 112 + 16*8
	headerEnd := lfanew + 4 + 20 + optSize + 40*len(spec.sections)
	sizeOfHeaders := (headerEnd + 0x1ff) &^ 0x1ff

	buf := make([]byte, sizeOfHeaders)
	copy(buf, "MZ")
	binary.LittleEndian.PutUint32(buf[0x3c:], lfanew)
	copy(buf[lfanew:], "PE\x00\x00")
	coff := buf[lfanew+4:]
	binary.LittleEndian.PutUint16(coff[0:], 0x8664)
	binary.LittleEndian.PutUint16(coff[2:], uint16(len(spec.sections)))
	binary.LittleEndian.PutUint16(coff[16:], optSize)
	binary.LittleEndian.PutUint16(coff[18:], 0x2022)
	opt := buf[lfanew+24:]
	binary.LittleEndian.PutUint16(opt[0:], pe32PlusMagic)
	binary.LittleEndian.PutUint32(opt[32:], 0x1000) // SectionAlignment
	binary.LittleEndian.PutUint32(opt[36:], 0x200)  // FileAlignment
	binary.LittleEndian.PutUint32(opt[60:], uint32(sizeOfHeaders))
	binary.LittleEndian.PutUint32(opt[64:], 0x12345678) // CheckSum, not hashed
	binary.LittleEndian.PutUint16(opt[68:], 10)         // EFI application
	binary.LittleEndian.PutUint32(opt[108:], 16)

	rva := uint32(0x1000)
	for i, s := range spec.sections {
		// buf grows below, so the header is re-sliced on each pass.
		h := buf[lfanew+24+optSize+i*40:]
		copy(h[:8], s.name)
		raw := (len(s.data) + 0x1ff) &^ 0x1ff
		binary.LittleEndian.PutUint32(h[8:], s.virtualSize)
		binary.LittleEndian.PutUint32(h[12:], rva)
		binary.LittleEndian.PutUint32(h[16:], uint32(raw))
		binary.LittleEndian.PutUint32(h[20:], uint32(len(buf)))
		binary.LittleEndian.PutUint32(h[36:], 0x40000040)
		block := make([]byte, raw)
		copy(block, s.data)
		buf = append(buf, block...)
		rva += (max(s.virtualSize, uint32(raw)) + 0xfff) &^ 0xfff
	}
	opt = buf[lfanew+24:]
	binary.LittleEndian.PutUint32(opt[56:], rva) // SizeOfImage
	buf = append(buf, spec.trailer...)
	if spec.cert != nil {
		dir := buf[lfanew+24+112+4*8:]
		binary.LittleEndian.PutUint32(dir[0:], uint32(len(buf)))
		binary.LittleEndian.PutUint32(dir[4:], uint32(len(spec.cert)))
		buf = append(buf, spec.cert...)
	}
	return buf
}

func TestAuthenticodeSkipsChecksumAndCertificate(t *testing.T) {
	base := peSpec{sections: []testSection{{".text", 0x300, bytes.Repeat([]byte{0xcc}, 0x300)}}, trailer: []byte("trailing data")}
	signed := base
	signed.cert = []byte("a fake certificate table.......!")
	plain, err := Authenticode(buildPE(t, base), AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := Authenticode(buildPE(t, signed), AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	// The certificate directory entry and the table itself are excluded,
	// so appending a signature does not change the hash.
	for _, b := range AllBanks {
		if !bytes.Equal(plain[b], withCert[b]) {
			t.Errorf("%s: signing changed the hash", b)
		}
	}

	img := buildPE(t, base)
	img[0x40+24+64] ^= 0xff // CheckSum
	changed, err := Authenticode(img, AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(changed[SHA256], plain[SHA256]) {
		t.Error("changing CheckSum changed the hash")
	}

	img = buildPE(t, base)
	img[len(img)-1] ^= 0xff // trailing data is hashed
	changed, err = Authenticode(img, AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(changed[SHA256], plain[SHA256]) {
		t.Error("changing the trailing data did not change the hash")
	}
}

func TestParsePERejectsMalformed(t *testing.T) {
	good := buildPE(t, peSpec{sections: []testSection{{".text", 0x200, []byte("x")}}, trailer: []byte("trailer")})
	corrupt := func(f func(b []byte) []byte) []byte {
		b := append([]byte(nil), good...)
		return f(b)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "shorter than a DOS header"},
		{"no MZ", corrupt(func(b []byte) []byte { b[0] = 'X'; return b }), "missing MZ signature"},
		{"lfanew past end", corrupt(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[0x3c:], 0xffffff00); return b }), "past the end"},
		{"no PE signature", corrupt(func(b []byte) []byte { b[0x40] = 'X'; return b }), "missing PE signature"},
		{"bad magic", corrupt(func(b []byte) []byte { b[0x40+24] = 0; return b }), "neither PE32"},
		{"too many sections", corrupt(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[0x46:], 1000); return b }), "at most 96"},
		{"section past end", corrupt(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[0x40+24+240+16:], 0x7fffffff)
			return b
		}), "runs past the end"},
		{"truncated headers", good[:0x100], "does not fit"},
		{"certificate too large", corrupt(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[0x40+24+112+36:], 0x10000)
			return b
		}), "certificate table"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Authenticode(c.data, AllBanks)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, expected one containing %q", err, c.want)
			}
		})
	}
	if _, err := Authenticode([]byte("not an image at all, just some text......................................"), AllBanks); !errors.Is(err, ErrNotPE) {
		t.Errorf("text: error %v, expected ErrNotPE", err)
	}
}

func TestSectionDataZeroFillsVirtualSize(t *testing.T) {
	img := buildPE(t, peSpec{sections: []testSection{{".osrel", 0x300, []byte("ID=debian\n")}}})
	pe, err := ParsePE(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	s := pe.Section(".osrel")
	data, err := pe.ReadSection(s, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 0x300)
	copy(want, "ID=debian\n")
	if !bytes.Equal(data, want) {
		t.Errorf("section data: got %d bytes starting %q, expected VirtualSize 0x300 zero-filled", len(data), data[:10])
	}
	if _, err := pe.ReadSection(s, 0x100); err == nil {
		t.Error("ReadSection ignored its limit")
	}
}

func FuzzParsePE(f *testing.F) {
	f.Add(buildPEForFuzz())
	for _, seed := range []string{"shimx64.efi.head", "grubx64.efi.head", "vmlinuz.head"} {
		if b, err := os.ReadFile(filepath.Join("testdata", "pe", seed)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pe, err := ParsePE(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if _, err := pe.AuthenticodeDigests([]Bank{SHA256}); err != nil {
			return
		}
		for i := range pe.Sections {
			_, _ = pe.ReadSection(&pe.Sections[i], 1<<16)
		}
		_, _ = ParseShim(pe)
		if IsUKI(pe) {
			_, _ = UKIReferences(pe, "fuzz", []Bank{SHA1})
		}
	})
}

// buildPEForFuzz returns a small valid image without a testing.T.
func buildPEForFuzz() []byte {
	t := &testing.T{}
	return buildPE(t, peSpec{
		sections: []testSection{{".linux", 0x200, []byte("kernel")}, {".sbat", 0x10, []byte("sbat,1\n")}},
		cert:     []byte("certificate table"),
	})
}

func TestAddPathRejectsUnknownFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(name, []byte("not a boot artifact"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := NewPredictor().AddPath(name)
	if !errors.Is(err, ErrNotPE) || !strings.Contains(err.Error(), "give an EFI application") {
		t.Errorf("error %v, expected ErrNotPE with a hint", err)
	}
}

// TestSectionDataBoundsZeroFill: a 1.5 KB image whose section declares a
// VirtualSize of about 1 GiB made predict hash a GiB of zeros per section.
func TestSectionDataBoundsZeroFill(t *testing.T) {
	img := buildPE(t, peSpec{sections: []testSection{{".osrel", 0x3fff0000, []byte("ID=debian\n")}}})
	pe, err := ParsePE(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = pe.SectionData(pe.Section(".osrel"))
	if err == nil || !strings.Contains(err.Error(), `section ".osrel" declares VirtualSize 0x3fff0000`) {
		t.Errorf("error = %v, want the zero fill rejected", err)
	}
	if _, err := UKIReferences(pe, "uki", []Bank{SHA256}); err == nil {
		t.Error("UKIReferences hashed the forged section")
	}
}

func TestAddPathRejectsTreeWithoutArtifacts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := NewPredictor().AddPath(dir)
	if !errors.Is(err, ErrNoArtifacts) {
		t.Errorf("error %v, expected ErrNoArtifacts", err)
	}
	if err != nil && !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory %s", err, dir)
	}
}

func TestAddPathRejectsDebWithoutArtifacts(t *testing.T) {
	name := filepath.Join(t.TempDir(), "docs_1.0_all.deb")
	deb := buildDeb(t, ".gz", map[string][]byte{"./usr/share/doc/docs/README": []byte("notes")})
	if err := os.WriteFile(name, deb, 0o644); err != nil {
		t.Fatal(err)
	}
	err := NewPredictor().AddPath(name)
	if !errors.Is(err, ErrNoArtifacts) {
		t.Errorf("error %v, expected ErrNoArtifacts", err)
	}
	if err != nil && !strings.Contains(err.Error(), name) {
		t.Errorf("error %q does not name the package %s", err, name)
	}
}
