package predict

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// PE/COFF layout constants (Microsoft PE Format specification).
const (
	peDOSMagic        = "MZ"
	peSignature       = "PE\x00\x00"
	peLfanewOffset    = 0x3c
	coffHeaderSize    = 20
	sectionHeaderSize = 40
	pe32Magic         = 0x10b
	pe32PlusMagic     = 0x20b

	// Offsets inside the optional header.
	optSizeOfImage   = 56
	optSizeOfHeaders = 60
	optCheckSum      = 64

	// Security is the fifth data directory: the attribute certificate table.
	dataDirSecurity = 4
	dataDirSize     = 8

	// maxSections is the PE format's own limit on NumberOfSections.
	maxSections = 96
	// maxImageSize bounds SizeOfImage, so that zero-filling a section's
	// virtual size cannot run for long on a forged header.
	maxImageSize = 1 << 30
	// minZeroFillAllowance is the zero fill a section may declare beyond
	// its raw data however small the file: see SectionData.
	minZeroFillAllowance = 1 << 20
)

// ErrNotPE reports input that does not start with a PE/COFF image.
var ErrNotPE = errors.New("not a PE/COFF image")

// PESection is one entry of a PE image's section table.
type PESection struct {
	Name             string
	VirtualSize      uint32
	VirtualAddress   uint32
	SizeOfRawData    uint32
	PointerToRawData uint32
}

// PEFile is a parsed PE/COFF image: the fields that Authenticode and
// systemd-stub's measurements need. Every offset in it has been checked
// against the file size.
type PEFile struct {
	r    io.ReaderAt
	size int64

	// PE32Plus is true for a PE32+ (64-bit) optional header.
	PE32Plus bool
	// Machine is the COFF machine type (0x8664 for x86-64, 0xaa64 for arm64).
	Machine uint16
	// SizeOfHeaders is the size of all headers, rounded to FileAlignment.
	SizeOfHeaders uint32
	// SizeOfImage is the size of the image as loaded in memory.
	SizeOfImage uint32
	// Sections is the section table in file order.
	Sections []PESection

	checksumOffset int64
	// certDirOffset is the file offset of the security data directory
	// entry, or -1 when the optional header has no such entry.
	certDirOffset int64
	certTableSize uint32
}

// ParsePE parses the headers of the PE/COFF image of size bytes read through
// r. It checks that every header and section lies inside the file. The
// section contents are read later, when hashed.
func ParsePE(r io.ReaderAt, size int64) (*PEFile, error) {
	if size < 0x40 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than a DOS header", ErrNotPE, size)
	}
	dos := make([]byte, 0x40)
	if _, err := r.ReadAt(dos, 0); err != nil {
		return nil, fmt.Errorf("read DOS header: %w", err)
	}
	if string(dos[:2]) != peDOSMagic {
		return nil, fmt.Errorf("%w: missing MZ signature at offset 0", ErrNotPE)
	}
	lfanew := int64(binary.LittleEndian.Uint32(dos[peLfanewOffset:]))
	if lfanew+4+coffHeaderSize > size {
		return nil, fmt.Errorf("%w: PE header offset 0x%x is past the end of the %d-byte file", ErrNotPE, lfanew, size)
	}

	coff := make([]byte, 4+coffHeaderSize)
	if _, err := r.ReadAt(coff, lfanew); err != nil {
		return nil, fmt.Errorf("read COFF header at 0x%x: %w", lfanew, err)
	}
	if string(coff[:4]) != peSignature {
		return nil, fmt.Errorf("%w: missing PE signature at offset 0x%x", ErrNotPE, lfanew)
	}
	pe := &PEFile{r: r, size: size, certDirOffset: -1}
	pe.Machine = binary.LittleEndian.Uint16(coff[4:])
	numSections := int(binary.LittleEndian.Uint16(coff[6:]))
	symbolTable := int64(binary.LittleEndian.Uint32(coff[12:]))
	numSymbols := int64(binary.LittleEndian.Uint32(coff[16:]))
	sizeOfOptional := int64(binary.LittleEndian.Uint16(coff[20:]))
	if numSections > maxSections {
		return nil, fmt.Errorf("invalid PE image: %d sections, the format allows at most %d", numSections, maxSections)
	}

	optOffset := lfanew + 4 + coffHeaderSize
	if sizeOfOptional < optCheckSum+4 || optOffset+sizeOfOptional > size {
		return nil, fmt.Errorf("invalid PE image: optional header of %d bytes at 0x%x does not fit the %d-byte file", sizeOfOptional, optOffset, size)
	}
	opt := make([]byte, sizeOfOptional)
	if _, err := r.ReadAt(opt, optOffset); err != nil {
		return nil, fmt.Errorf("read optional header at 0x%x: %w", optOffset, err)
	}
	var numDirsOffset int64
	switch magic := binary.LittleEndian.Uint16(opt); magic {
	case pe32Magic:
		numDirsOffset = 92
	case pe32PlusMagic:
		pe.PE32Plus = true
		numDirsOffset = 108
	default:
		return nil, fmt.Errorf("invalid PE image: optional header magic 0x%x is neither PE32 (0x10b) nor PE32+ (0x20b)", magic)
	}
	pe.SizeOfImage = binary.LittleEndian.Uint32(opt[optSizeOfImage:])
	pe.SizeOfHeaders = binary.LittleEndian.Uint32(opt[optSizeOfHeaders:])
	pe.checksumOffset = optOffset + optCheckSum
	if pe.SizeOfImage > maxImageSize {
		return nil, fmt.Errorf("invalid PE image: SizeOfImage %d exceeds the %d-byte limit", pe.SizeOfImage, maxImageSize)
	}

	// EDK2 and shim skip the certificate directory entry only when the
	// optional header declares one. With four or fewer data directories
	// the entry is part of the hashed headers.
	if numDirsOffset+4 <= sizeOfOptional {
		numDirs := binary.LittleEndian.Uint32(opt[numDirsOffset:])
		entry := numDirsOffset + 4 + dataDirSecurity*dataDirSize
		if numDirs > dataDirSecurity && entry+dataDirSize <= sizeOfOptional {
			pe.certDirOffset = optOffset + entry
			pe.certTableSize = binary.LittleEndian.Uint32(opt[entry+4:])
		}
	}

	sectionsOffset := optOffset + sizeOfOptional
	sectionsEnd := sectionsOffset + int64(numSections)*sectionHeaderSize
	if sectionsEnd > size {
		return nil, fmt.Errorf("invalid PE image: section table of %d entries at 0x%x runs past the end of the %d-byte file", numSections, sectionsOffset, size)
	}
	if int64(pe.SizeOfHeaders) < sectionsEnd || int64(pe.SizeOfHeaders) > size {
		return nil, fmt.Errorf("invalid PE image: SizeOfHeaders 0x%x must cover the headers (0x%x bytes) and fit the %d-byte file", pe.SizeOfHeaders, sectionsEnd, size)
	}
	table := make([]byte, sectionsEnd-sectionsOffset)
	if _, err := r.ReadAt(table, sectionsOffset); err != nil {
		return nil, fmt.Errorf("read section table at 0x%x: %w", sectionsOffset, err)
	}
	for i := 0; i < numSections; i++ {
		h := table[i*sectionHeaderSize:]
		name, err := sectionName(r, size, h[:8], symbolTable, numSymbols)
		if err != nil {
			return nil, fmt.Errorf("invalid PE image: section %d: %w", i, err)
		}
		s := PESection{
			Name:             name,
			VirtualSize:      binary.LittleEndian.Uint32(h[8:]),
			VirtualAddress:   binary.LittleEndian.Uint32(h[12:]),
			SizeOfRawData:    binary.LittleEndian.Uint32(h[16:]),
			PointerToRawData: binary.LittleEndian.Uint32(h[20:]),
		}
		if s.SizeOfRawData != 0 && int64(s.PointerToRawData)+int64(s.SizeOfRawData) > size {
			return nil, fmt.Errorf("invalid PE image: section %d (%q) raw data 0x%x+0x%x runs past the end of the %d-byte file", i, s.Name, s.PointerToRawData, s.SizeOfRawData, size)
		}
		pe.Sections = append(pe.Sections, s)
	}
	return pe, nil
}

// maxSectionName bounds a long section name read from the COFF string
// table.
const maxSectionName = 256

// sectionName returns a section's name. Names longer than eight bytes are
// stored as "/N", an offset into the COFF string table that follows the
// symbol table (GNU ld writes such names for ".vendor_cert" or ".sbatlevel").
func sectionName(r io.ReaderAt, size int64, field []byte, symbolTable, numSymbols int64) (string, error) {
	short := strings.TrimRight(string(field), "\x00")
	if len(short) < 2 || short[0] != '/' {
		return short, nil
	}
	offset, err := strconv.ParseUint(short[1:], 10, 32)
	if err != nil || symbolTable == 0 {
		return short, nil
	}
	start := symbolTable + numSymbols*18 + int64(offset)
	if start >= size {
		return "", fmt.Errorf("long name %q points past the end of the %d-byte file", short, size)
	}
	buf := make([]byte, min(maxSectionName, size-start))
	n, err := r.ReadAt(buf, start)
	if n < len(buf) && err != nil {
		return "", fmt.Errorf("read long section name at 0x%x: %w", start, err)
	}
	end := bytes.IndexByte(buf, 0)
	if end < 0 {
		return "", fmt.Errorf("long name %q at 0x%x has no terminating NUL within %d bytes", short, start, maxSectionName)
	}
	return string(buf[:end]), nil
}

// Section returns the first section called name, or nil.
func (pe *PEFile) Section(name string) *PESection {
	for i := range pe.Sections {
		if pe.Sections[i].Name == name {
			return &pe.Sections[i]
		}
	}
	return nil
}

// AuthenticodeDigests returns the image's Authenticode hash in each bank, as
// UEFI firmware (EDK2's DxeTpm2MeasureBootLib) and shim compute it before
// extending PCR 4:
//
//  1. the headers up to SizeOfHeaders, leaving out the CheckSum field and
//     the certificate table's data directory entry.
//  2. each section's raw data, in order of PointerToRawData, skipping empty
//     sections.
//  3. the bytes after the last hashed byte up to the start of the attribute
//     certificate table (whose size the data directory gives).
//
// The signature itself is neither parsed nor checked.
func (pe *PEFile) AuthenticodeDigests(banks []Bank) (Digests, error) {
	m, err := newMultiHash(banks)
	if err != nil {
		return nil, err
	}
	hashRange := func(off, n int64) error {
		if off < 0 || n < 0 || off+n > pe.size {
			return fmt.Errorf("invalid PE image: range 0x%x+0x%x is outside the %d-byte file", off, n, pe.size)
		}
		if _, err := io.Copy(m, io.NewSectionReader(pe.r, off, n)); err != nil {
			return fmt.Errorf("read PE image at 0x%x: %w", off, err)
		}
		return nil
	}

	// 1. Headers.
	headerEnd := int64(pe.SizeOfHeaders)
	if err := hashRange(0, pe.checksumOffset); err != nil {
		return nil, err
	}
	if pe.certDirOffset >= 0 {
		if err := hashRange(pe.checksumOffset+4, pe.certDirOffset-(pe.checksumOffset+4)); err != nil {
			return nil, err
		}
		if err := hashRange(pe.certDirOffset+dataDirSize, headerEnd-(pe.certDirOffset+dataDirSize)); err != nil {
			return nil, err
		}
	} else if err := hashRange(pe.checksumOffset+4, headerEnd-(pe.checksumOffset+4)); err != nil {
		return nil, err
	}
	hashed := headerEnd

	// 2. Sections in file order. A stable sort keeps table order for equal
	// offsets, as EDK2's insertion sort does.
	sections := append([]PESection(nil), pe.Sections...)
	sort.SliceStable(sections, func(i, j int) bool {
		return sections[i].PointerToRawData < sections[j].PointerToRawData
	})
	for _, s := range sections {
		if s.SizeOfRawData == 0 {
			continue
		}
		if err := hashRange(int64(s.PointerToRawData), int64(s.SizeOfRawData)); err != nil {
			return nil, fmt.Errorf("section %q: %w", s.Name, err)
		}
		hashed += int64(s.SizeOfRawData)
	}

	// 3. Trailing data, minus the certificate table. Like EDK2, the hashed
	// byte count (not the end of the last section) marks where it starts.
	if pe.size > hashed {
		certSize := int64(0)
		if pe.certDirOffset >= 0 {
			certSize = int64(pe.certTableSize)
		}
		switch {
		case pe.size > hashed+certSize:
			if err := hashRange(hashed, pe.size-certSize-hashed); err != nil {
				return nil, err
			}
		case pe.size < hashed+certSize:
			return nil, fmt.Errorf("invalid PE image: certificate table of %d bytes does not fit after the %d hashed bytes of the %d-byte file", certSize, hashed, pe.size)
		}
	}
	return m.digests(), nil
}

// SectionData returns a reader over the section as a loader maps it: the
// first VirtualSize bytes, which are the raw data followed by zeros when
// VirtualSize exceeds SizeOfRawData. The zero fill may not exceed the
// file's size (or 1 MiB for smaller files), so that a forged header in a
// small file cannot make callers hash gigabytes of zeros. The sections
// that systemd-stub measures carry their data in the file.
func (pe *PEFile) SectionData(s *PESection) (io.Reader, int64, error) {
	if int64(s.VirtualAddress)+int64(s.VirtualSize) > int64(pe.SizeOfImage) {
		return nil, 0, fmt.Errorf("invalid PE image: section %q at RVA 0x%x+0x%x lies outside SizeOfImage 0x%x", s.Name, s.VirtualAddress, s.VirtualSize, pe.SizeOfImage)
	}
	n := int64(s.VirtualSize)
	raw := min(n, int64(s.SizeOfRawData))
	if fill := n - raw; fill > max(pe.size, minZeroFillAllowance) {
		return nil, 0, fmt.Errorf("invalid PE image: section %q declares VirtualSize 0x%x, %d bytes beyond its raw data and more than the %d-byte file: a forged section header?", s.Name, s.VirtualSize, fill, pe.size)
	}
	r := io.NewSectionReader(pe.r, int64(s.PointerToRawData), raw)
	if n == raw {
		return r, n, nil
	}
	return io.MultiReader(r, io.LimitReader(zeroReader{}, n-raw)), n, nil
}

// ReadSection returns the section's contents as SectionData reads them, or
// an error when they exceed limit bytes.
func (pe *PEFile) ReadSection(s *PESection, limit int64) ([]byte, error) {
	r, n, err := pe.SectionData(s)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("section %q is %d bytes, more than the %d-byte limit", s.Name, n, limit)
	}
	var buf bytes.Buffer
	buf.Grow(int(n))
	if _, err := io.Copy(&buf, r); err != nil {
		return nil, fmt.Errorf("read section %q: %w", s.Name, err)
	}
	return buf.Bytes(), nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Authenticode parses the PE image in data and returns its Authenticode
// digests.
func Authenticode(data []byte, banks []Bank) (Digests, error) {
	pe, err := ParsePE(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	return pe.AuthenticodeDigests(banks)
}
