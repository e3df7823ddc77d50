package ima

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// ErrTruncated marks a list that ends inside an entry. Parse functions
// return it wrapped, together with the complete entries before the cut.
var ErrTruncated = errors.New("list ends inside an entry")

// ParseOptions adjusts how a list is parsed.
type ParseOptions struct {
	// FirstIndex is the Index of the first entry: set it to the offset
	// when the list holds the entries from that offset on.
	FirstIndex int
	// TemplateHashSize is the size of the logged template hashes in a
	// binary list: 20 for binary_runtime_measurements, 32 for
	// binary_runtime_measurements_sha256 and so on. Zero detects it from
	// the first entry.
	TemplateHashSize int
}

// BinaryDecoder reads the entries of a binary runtime measurement list
// (binary_runtime_measurements) one at a time without copying them. The
// list must be in the kernel's canonical little-endian format, which is
// also the native format of little-endian machines.
type BinaryDecoder struct {
	data     []byte
	off      int
	next     int
	hashSize int
	entry    Entry
	err      error
}

// NewBinaryDecoder returns a decoder over data.
func NewBinaryDecoder(data []byte, opts ParseOptions) *BinaryDecoder {
	return &BinaryDecoder{data: data, next: opts.FirstIndex, hashSize: opts.TemplateHashSize}
}

// Next decodes the next entry and reports whether there was one. After it
// returns false, Err reports why.
func (d *BinaryDecoder) Next() bool {
	if d.err != nil || d.off >= len(d.data) {
		return false
	}
	if d.hashSize == 0 {
		size, err := detectHashSize(d.data[d.off:])
		if err != nil {
			d.err = fmt.Errorf("entry %d at byte %d: %w", d.next, d.off, err)
			return false
		}
		d.hashSize = size
	}
	n, err := decodeBinaryEntry(d.data[d.off:], d.hashSize, &d.entry)
	if err != nil {
		d.err = fmt.Errorf("entry %d at byte %d: %w", d.next, d.off, err)
		return false
	}
	d.entry.Index = d.next
	d.next++
	d.off += n
	return true
}

// Entry returns the entry decoded by the last call to Next. Its slices
// share memory with the input; the Entry itself is reused by Next.
func (d *BinaryDecoder) Entry() *Entry { return &d.entry }

// Err returns the error that stopped decoding, or nil at the end of the list.
func (d *BinaryDecoder) Err() error { return d.err }

// Offset returns the byte offset of the next entry.
func (d *BinaryDecoder) Offset() int { return d.off }

// ParseBinary parses a whole binary list. On error it also returns the
// entries decoded before the failing one; a list cut inside its last
// entry gives an error wrapping ErrTruncated.
func ParseBinary(data []byte, opts ParseOptions) ([]Entry, error) {
	d := NewBinaryDecoder(data, opts)
	var entries []Entry
	for d.Next() {
		if len(entries) == 64 {
			// Size the slice from the first entries' average size, so a
			// long list is not copied while it grows.
			estimate := len(data) / (d.Offset() / 64) * 9 / 8
			entries = slices.Grow(entries, estimate-len(entries))
		}
		entries = append(entries, *d.Entry())
	}
	return entries, d.Err()
}

// decodeBinaryEntry decodes one entry and returns its size in bytes.
func decodeBinaryEntry(b []byte, hashSize int, e *Entry) (int, error) {
	off := 0
	need := func(n int, what string) error {
		if len(b)-off < n {
			return fmt.Errorf("%w: %s needs %d bytes, %d left", ErrTruncated, what, n, len(b)-off)
		}
		return nil
	}
	if err := need(4, "PCR index"); err != nil {
		return 0, err
	}
	pcr := binary.LittleEndian.Uint32(b[off:])
	if pcr >= maxPCR {
		return 0, fmt.Errorf("PCR index %d is out of range (0-%d): the list is corrupt or not a little-endian binary list", pcr, maxPCR-1)
	}
	off += 4
	if err := need(hashSize, "template hash"); err != nil {
		return 0, err
	}
	hash := b[off : off+hashSize]
	off += hashSize
	if err := need(4, "template name length"); err != nil {
		return 0, err
	}
	nameLen := binary.LittleEndian.Uint32(b[off:])
	off += 4
	if nameLen == 0 || nameLen > maxTemplateNameLen {
		return 0, fmt.Errorf("template name length %d is out of range (1-%d)", nameLen, maxTemplateNameLen)
	}
	if err := need(int(nameLen), "template name"); err != nil {
		return 0, err
	}
	nameBytes := b[off : off+int(nameLen)]
	if !validTemplateName(nameBytes) {
		return 0, fmt.Errorf("template name %q has characters other than a-z, 0-9, '-' and '_'", nameBytes)
	}
	name := internTemplateName(nameBytes)
	off += int(nameLen)

	var data []byte
	if name == TemplateIMA {
		// The "ima" template has no data length: a SHA-1 digest and a
		// length-prefixed name follow.
		start := off
		if err := need(sha1Size+4, "ima template digest and name length"); err != nil {
			return 0, err
		}
		off += sha1Size
		n := binary.LittleEndian.Uint32(b[off:])
		off += 4
		if n >= imaNameSize {
			return 0, fmt.Errorf("ima template name length %d exceeds %d", n, imaNameSize-1)
		}
		if err := need(int(n), "ima template name"); err != nil {
			return 0, err
		}
		off += int(n)
		data = b[start:off]
	} else {
		if err := need(4, "template data length"); err != nil {
			return 0, err
		}
		n := binary.LittleEndian.Uint32(b[off:])
		off += 4
		if uint64(n) > uint64(len(b)-off) {
			return 0, fmt.Errorf("%w: template data length %d exceeds the %d bytes left", ErrTruncated, n, len(b)-off)
		}
		data = b[off : off+int(n)]
		off += int(n)
	}
	*e = Entry{PCR: pcr, TemplateHash: hash, TemplateName: name, TemplateData: data}
	return off, nil
}

const sha1Size = 20

// detectHashSize finds the template hash size for which the first entry
// has a plausible template name.
func detectHashSize(b []byte) (int, error) {
	for _, size := range []int{20, 32, 48, 64} {
		off := 4 + size
		if len(b) < off+4 {
			continue
		}
		n := binary.LittleEndian.Uint32(b[off:])
		if n == 0 || n > maxTemplateNameLen || len(b) < off+4+int(n) {
			continue
		}
		if validTemplateName(b[off+4 : off+4+int(n)]) {
			return size, nil
		}
	}
	if len(b) < 4+20+4+1 {
		return 0, fmt.Errorf("%w: %d bytes are too short for an entry", ErrTruncated, len(b))
	}
	return 0, errors.New("no template hash size (20, 32, 48 or 64 bytes) leads to a valid template name: not a binary runtime measurement list")
}

func validTemplateName(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return len(b) > 0
}

// internTemplateName returns a shared string for the built-in template
// names so that decoding does not allocate per entry.
func internTemplateName(b []byte) string {
	switch string(b) {
	case TemplateIMA:
		return TemplateIMA
	case TemplateIMANG:
		return TemplateIMANG
	case TemplateIMANGv2:
		return TemplateIMANGv2
	case TemplateIMASig:
		return TemplateIMASig
	case TemplateIMASigv2:
		return TemplateIMASigv2
	case TemplateIMABuf:
		return TemplateIMABuf
	case TemplateIMAModsig:
		return TemplateIMAModsig
	case TemplateEVMSig:
		return TemplateEVMSig
	}
	return string(b)
}
