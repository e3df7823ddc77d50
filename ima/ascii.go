package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// ParseASCII parses an ascii runtime measurement list
// (ascii_runtime_measurements or a per-bank ascii_runtime_measurements_*).
// Each line is "PCR template-hash template-name field...", and the
// template data is rebuilt from the printed fields so that the logged
// template hash can be checked. A name that contains spaces is kept whole
// because the fields after it have a fixed count.
//
// NOTE: a file name that contains a newline cannot be distinguished from
// two lines in the ascii list. Use the binary list for such names.
//
// On error ParseASCII also returns the entries before the failing line.
func ParseASCII(data []byte, opts ParseOptions) ([]Entry, error) {
	var entries []Entry
	d := NewASCIIDecoder(data, opts)
	for d.Next() {
		entries = append(entries, *d.Entry())
	}
	return entries, d.Err()
}

// ASCIIDecoder reads the entries of an ascii list one line at a time, as
// ParseASCII describes.
type ASCIIDecoder struct {
	data  []byte
	line  int
	next  int
	entry Entry
	err   error
}

// NewASCIIDecoder returns a decoder over data.
func NewASCIIDecoder(data []byte, opts ParseOptions) *ASCIIDecoder {
	return &ASCIIDecoder{data: data, next: opts.FirstIndex}
}

// Next decodes the next entry, skipping blank lines, and reports whether
// there was one. After it returns false, Err reports why.
func (d *ASCIIDecoder) Next() bool {
	for d.err == nil && len(d.data) > 0 {
		d.line++
		var text []byte
		if i := bytes.IndexByte(d.data, '\n'); i >= 0 {
			text, d.data = d.data[:i], d.data[i+1:]
		} else {
			text, d.data = d.data, nil
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		e, err := parseASCIILine(text)
		if err != nil {
			d.err = fmt.Errorf("line %d (entry %d): %w", d.line, d.next, err)
			return false
		}
		e.Index = d.next
		d.next++
		d.entry = e
		return true
	}
	return false
}

// Entry returns the entry decoded by the last call to Next. Its template
// data is newly allocated for each entry; the Entry itself is reused.
func (d *ASCIIDecoder) Entry() *Entry { return &d.entry }

// Err returns the error that stopped decoding, or nil at the end of the list.
func (d *ASCIIDecoder) Err() error { return d.err }

func parseASCIILine(line []byte) (Entry, error) {
	var e Entry
	// The kernel prints the PCR with "%2d", so PCRs below 10 start with a
	// space.
	rest := bytes.TrimLeft(line, " ")
	pcrText, rest, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return e, errors.New("missing template hash after the PCR index")
	}
	pcr, err := strconv.ParseUint(string(pcrText), 10, 32)
	if err != nil || pcr >= maxPCR {
		return e, fmt.Errorf("PCR index %q is not a number from 0 to %d", pcrText, maxPCR-1)
	}
	hashText, rest, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return e, errors.New("missing template name after the template hash")
	}
	hash, err := decodeHex(hashText, "template hash")
	if err != nil {
		return e, err
	}
	if _, ok := loggedAlgorithm(len(hash)); !ok {
		return e, fmt.Errorf("template hash has %d bytes, want 20, 32, 48 or 64", len(hash))
	}
	nameText, fieldsText, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return e, fmt.Errorf("template %q has no fields", nameText)
	}
	if !validTemplateName(nameText) || len(nameText) > maxTemplateNameLen {
		return e, fmt.Errorf("template name %q is invalid", nameText)
	}
	name := internTemplateName(nameText)
	data, err := rebuildTemplateData(name, fieldsText)
	if err != nil {
		return e, fmt.Errorf("template %s: %w", name, err)
	}
	return Entry{PCR: uint32(pcr), TemplateHash: hash, TemplateName: name, TemplateData: data}, nil
}

// rebuildTemplateData turns the printed fields of one ascii line back into
// the template data the kernel hashed.
func rebuildTemplateData(name string, text []byte) ([]byte, error) {
	if name == TemplateIMA {
		digestText, fileName, ok := bytes.Cut(text, []byte(" "))
		if !ok {
			return nil, errors.New("missing file name after the digest")
		}
		digest, err := decodeHex(digestText, "file digest")
		if err != nil {
			return nil, err
		}
		if len(digest) != sha1Size {
			return nil, fmt.Errorf("file digest has %d bytes, want %d", len(digest), sha1Size)
		}
		if len(fileName) >= imaNameSize {
			return nil, fmt.Errorf("file name has %d bytes, the kernel writes at most %d", len(fileName), imaNameSize-1)
		}
		data := make([]byte, 0, sha1Size+4+len(fileName))
		data = append(data, digest...)
		data = binary.LittleEndian.AppendUint32(data, uint32(len(fileName)))
		return append(data, fileName...), nil
	}
	ids, ok := templateFields[name]
	if !ok || name == TemplateEVMSig {
		return nil, errors.New("ascii lines of this template cannot be rebuilt into template data: use the binary list")
	}
	// The first field is the digest and the second the name. The fields
	// after the name never contain spaces, so they are split off the end.
	digestText, rest, ok := bytes.Cut(text, []byte(" "))
	if !ok {
		return nil, errors.New("missing file name after the digest")
	}
	tail := make([][]byte, len(ids)-2)
	for i := len(tail) - 1; i >= 0; i-- {
		j := bytes.LastIndexByte(rest, ' ')
		if j < 0 {
			return nil, fmt.Errorf("missing field %q", ids[2+i])
		}
		tail[i], rest = rest[j+1:], rest[:j]
	}
	fileName := rest

	size := 4 + len(digestText) + 4 + len(fileName) + 1
	for _, t := range tail {
		size += 4 + len(t)/2
	}
	data := make([]byte, 0, size)
	var err error
	if data, err = appendDigestField(data, ids[0], digestText); err != nil {
		return nil, err
	}
	data = binary.LittleEndian.AppendUint32(data, uint32(len(fileName)+1))
	data = append(data, fileName...)
	data = append(data, 0)
	for i, t := range tail {
		id := ids[2+i]
		if id == "d-modsig" {
			if data, err = appendDigestField(data, id, t); err != nil {
				return nil, err
			}
			continue
		}
		raw, err := decodeHex(t, "field "+strconv.Quote(id))
		if err != nil {
			return nil, err
		}
		data = binary.LittleEndian.AppendUint32(data, uint32(len(raw)))
		data = append(data, raw...)
	}
	return data, nil
}

// appendDigestField appends a d-ng, d-ngv2 or d-modsig field printed as
// "[type:]alg:hex".
func appendDigestField(data []byte, id string, text []byte) ([]byte, error) {
	if len(text) == 0 && id == "d-modsig" {
		return binary.LittleEndian.AppendUint32(data, 0), nil
	}
	i := bytes.LastIndexByte(text, ':')
	if i < 1 {
		return nil, fmt.Errorf("digest %q lacks the \"<algorithm>:\" prefix", text)
	}
	prefix := text[:i+1]
	digest, err := decodeHex(text[i+1:], "file digest")
	if err != nil {
		return nil, err
	}
	alg := prefix[:len(prefix)-1]
	if id == "d-ngv2" {
		_, a, ok := bytes.Cut(alg, []byte(":"))
		if !ok {
			return nil, fmt.Errorf("digest %q lacks the \"<type>:<algorithm>:\" prefix", text)
		}
		alg = a
	}
	if err := checkDigestSize(string(alg), digest); err != nil {
		return nil, err
	}
	data = binary.LittleEndian.AppendUint32(data, uint32(len(prefix)+1+len(digest)))
	data = append(data, prefix...)
	data = append(data, 0)
	return append(data, digest...), nil
}

func decodeHex(text []byte, what string) ([]byte, error) {
	out := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(out, text); err != nil {
		return nil, fmt.Errorf("%s %q is not hexadecimal: %w", what, truncateForError(text), err)
	}
	return out, nil
}

func truncateForError(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// Format is the encoding of a runtime measurement list.
type Format int

// List formats.
const (
	FormatBinary Format = iota + 1
	FormatASCII
)

func (f Format) String() string {
	switch f {
	case FormatBinary:
		return "binary"
	case FormatASCII:
		return "ascii"
	}
	return "unknown"
}

// DetectFormat distinguishes a binary list from an ascii one by its first
// byte. An ascii list starts with a digit or a space (the PCR index). A
// binary one starts with a little-endian PCR index below 32, which is
// neither.
func DetectFormat(data []byte) Format {
	if len(data) > 0 && (data[0] == ' ' || data[0] >= '0' && data[0] <= '9') {
		return FormatASCII
	}
	return FormatBinary
}

// Decoder reads the entries of a list one at a time: a *BinaryDecoder or
// an *ASCIIDecoder.
type Decoder interface {
	// Next decodes the next entry and reports whether there was one.
	Next() bool
	// Entry returns the entry decoded by the last call to Next. Next
	// reuses it.
	Entry() *Entry
	// Err returns the error that stopped decoding, or nil at the end of
	// the list.
	Err() error
}

// NewDecoder returns a decoder for data in the format DetectFormat finds,
// and that format.
func NewDecoder(data []byte, opts ParseOptions) (Decoder, Format) {
	if f := DetectFormat(data); f == FormatASCII {
		return NewASCIIDecoder(data, opts), f
	}
	return NewBinaryDecoder(data, opts), FormatBinary
}

// Parse parses a list in either format, detected with DetectFormat.
func Parse(data []byte, opts ParseOptions) ([]Entry, Format, error) {
	f := DetectFormat(data)
	var entries []Entry
	var err error
	if f == FormatASCII {
		entries, err = ParseASCII(data, opts)
	} else {
		entries, err = ParseBinary(data, opts)
	}
	return entries, f, err
}
