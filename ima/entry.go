package ima

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Template names that this package decodes. Entries of other templates
// still parse and replay, because replay hashes the template data as
// logged, but their fields are not interpreted.
const (
	TemplateIMA       = "ima"
	TemplateIMANG     = "ima-ng"
	TemplateIMANGv2   = "ima-ngv2"
	TemplateIMASig    = "ima-sig"
	TemplateIMASigv2  = "ima-sigv2"
	TemplateIMABuf    = "ima-buf"
	TemplateIMAModsig = "ima-modsig"
	TemplateEVMSig    = "evm-sig"
)

// BootAggregateName is the file name of the first entry, whose digest
// covers the boot PCRs.
const BootAggregateName = "boot_aggregate"

// imaNameSize is the size the name of an "ima" template entry is
// zero-padded to before hashing (IMA_EVENT_NAME_LEN_MAX + 1 in the kernel).
const imaNameSize = 256

// maxTemplateNameLen bounds the template name of a binary entry. The kernel
// limits names to 15 bytes; the margin accepts custom templates.
const maxTemplateNameLen = 64

// maxPCR bounds the PCR index an entry may name.
const maxPCR = 32

// templateFields lists the field identifiers of the templates built into
// the kernel (security/integrity/ima/ima_template.c).
var templateFields = map[string][]string{
	TemplateIMA:       {"d", "n"},
	TemplateIMANG:     {"d-ng", "n-ng"},
	TemplateIMANGv2:   {"d-ngv2", "n-ng"},
	TemplateIMASig:    {"d-ng", "n-ng", "sig"},
	TemplateIMASigv2:  {"d-ngv2", "n-ng", "sig"},
	TemplateIMABuf:    {"d-ng", "n-ng", "buf"},
	TemplateIMAModsig: {"d-ng", "n-ng", "sig", "d-modsig", "modsig"},
	TemplateEVMSig:    {"d-ng", "n-ng", "evmsig", "xattrnames", "xattrlengths", "xattrvalues", "iuid", "igid", "imode"},
}

// Entry is one measurement of a runtime measurement list. Every field is
// taken from the list and is untrusted until a replay of the entries
// reproduces PCR values from a verified quote.
type Entry struct {
	// Index is the entry's position in the list, counting from 0.
	Index int
	// PCR is the register the kernel extended, normally 10.
	PCR uint32
	// TemplateHash is the template digest as logged: SHA-1 in
	// binary_runtime_measurements and ascii_runtime_measurements, the
	// bank's algorithm in the per-bank lists (*_sha256 and so on). It is
	// all zeros for a violation.
	TemplateHash []byte
	// TemplateName names the template, such as "ima-ng".
	TemplateName string
	// TemplateData holds the template fields as the kernel hashes them:
	// for binary lists the exact logged bytes, for ascii lists the bytes
	// rebuilt from the printed fields. Entries from a binary list share
	// memory with the parsed input.
	TemplateData []byte
}

// Fields holds the decoded template fields of an entry. Byte slices share
// memory with the entry's TemplateData.
type Fields struct {
	// DigestAlgorithm is the file digest's algorithm as the kernel names
	// it ("sha256", "sha1", "md5"...). For the "ima" template it is "sha1".
	DigestAlgorithm string
	// DigestType is the d-ngv2 digest type ("ima" or "verity"); it is
	// empty for other digest fields.
	DigestType string
	Digest     []byte
	// Name is the file name or, for ima-buf, the buffer's name, without
	// the terminating NUL. It is a byte string and need not be UTF-8.
	Name []byte
	// Signature is the raw "sig" field: an IMA signature with its header,
	// or empty. It is kept as logged even when it does not parse.
	Signature []byte
	// Buffer is the measured buffer of an ima-buf entry.
	Buffer []byte
	// ModsigDigestAlgorithm and ModsigDigest are the d-modsig field: the
	// digest an appended (module-style) signature covers.
	ModsigDigestAlgorithm string
	ModsigDigest          []byte
	// Modsig is the appended signature of an ima-modsig entry.
	Modsig []byte
}

// IsViolation reports whether the entry records a violation (a file
// measured while open for writing, or opened for writing while measured):
// the kernel logs an all-zero template hash and extends all ones.
func (e *Entry) IsViolation() bool {
	return len(e.TemplateHash) > 0 && allZero(e.TemplateHash)
}

// Fields decodes the entry's template data. It returns an error for
// templates it does not know and for data that does not split into the
// template's fields.
func (e *Entry) Fields() (Fields, error) {
	var f Fields
	if e.TemplateName == TemplateIMA {
		d, name, err := splitIMATemplate(e.TemplateData)
		if err != nil {
			return f, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		f.DigestAlgorithm, f.Digest, f.Name = "sha1", d, name
		return f, nil
	}
	ids, ok := templateFields[e.TemplateName]
	if !ok {
		return f, fmt.Errorf("entry %d: template %q is not supported: only its template hash can be checked", e.Index, e.TemplateName)
	}
	rest := e.TemplateData
	for _, id := range ids {
		var data []byte
		var err error
		data, rest, err = cutField(rest)
		if err != nil {
			return f, fmt.Errorf("entry %d: template %s field %q: %w", e.Index, e.TemplateName, id, err)
		}
		switch id {
		case "d-ng":
			f.DigestAlgorithm, f.Digest, err = parseDigestNG(data)
		case "d-ngv2":
			f.DigestType, f.DigestAlgorithm, f.Digest, err = parseDigestNGv2(data)
		case "d-modsig":
			if len(data) > 0 {
				f.ModsigDigestAlgorithm, f.ModsigDigest, err = parseDigestNG(data)
			}
		case "n-ng":
			f.Name, err = parseNameNG(data)
		case "sig":
			f.Signature = data
		case "buf":
			f.Buffer = data
		case "modsig":
			f.Modsig = data
		}
		if err != nil {
			return f, fmt.Errorf("entry %d: template %s field %q: %w", e.Index, e.TemplateName, id, err)
		}
	}
	if len(rest) != 0 {
		return f, fmt.Errorf("entry %d: template %s has %d bytes after its last field", e.Index, e.TemplateName, len(rest))
	}
	return f, nil
}

// cutField splits one length-prefixed field off template data.
func cutField(b []byte) (field, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errors.New("missing field length")
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, fmt.Errorf("field length %d exceeds the %d bytes left", n, len(b)-4)
	}
	return b[4 : 4+n], b[4+n:], nil
}

// splitIMATemplate splits the logged data of an "ima" template entry: a
// 20-byte SHA-1 digest followed by a length-prefixed name.
func splitIMATemplate(b []byte) (digest, name []byte, err error) {
	if len(b) < sha1.Size+4 {
		return nil, nil, fmt.Errorf("ima template data has %d bytes, want at least %d", len(b), sha1.Size+4)
	}
	name, rest, err := cutField(b[sha1.Size:])
	if err != nil {
		return nil, nil, fmt.Errorf("ima template name: %w", err)
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("ima template data has %d bytes after the name", len(rest))
	}
	if len(name) >= imaNameSize {
		return nil, nil, fmt.Errorf("ima template name has %d bytes, the kernel writes at most %d", len(name), imaNameSize-1)
	}
	return b[:sha1.Size], name, nil
}

// parseDigestNG decodes a d-ng field: "<alg>:" NUL <digest>.
func parseDigestNG(b []byte) (alg string, digest []byte, err error) {
	i := bytes.IndexByte(b, 0)
	if i < 1 || b[i-1] != ':' {
		return "", nil, errors.New("digest field lacks the \"<algorithm>:\\0\" prefix")
	}
	alg = internAlgorithmName(b[:i-1])
	d := b[i+1:]
	if err := checkDigestSize(alg, d); err != nil {
		return "", nil, err
	}
	return alg, d, nil
}

// parseDigestNGv2 decodes a d-ngv2 field: "<type>:<alg>:" NUL <digest>.
func parseDigestNGv2(b []byte) (typ, alg string, digest []byte, err error) {
	i := bytes.IndexByte(b, ':')
	if i < 1 {
		return "", "", nil, errors.New("digest field lacks the \"<type>:\" prefix")
	}
	alg, digest, err = parseDigestNG(b[i+1:])
	return string(b[:i]), alg, digest, err
}

// parseNameNG strips the terminating NUL of an n-ng field.
func parseNameNG(b []byte) ([]byte, error) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return nil, errors.New("name is not NUL-terminated")
	}
	return b[:len(b)-1], nil
}

// digestSizes maps the kernel's hash algorithm names to digest sizes.
var digestSizes = map[string]int{
	"md4": 16, "md5": 16, "sha1": 20, "rmd160": 20, "sha224": 28, "sha256": 32,
	"sha384": 48, "sha512": 64, "rmd128": 16, "rmd256": 32, "rmd320": 40,
	"wp256": 32, "wp384": 48, "wp512": 64, "tgr128": 16, "tgr160": 20,
	"tgr192": 24, "sm3": 32, "sm3-256": 32, "streebog256": 32, "streebog512": 64,
	"sha3-256": 32, "sha3-384": 48, "sha3-512": 64,
}

// internAlgorithmName returns a shared string for common algorithm names
// so that decoding fields does not allocate.
func internAlgorithmName(b []byte) string {
	switch string(b) {
	case "sha256":
		return "sha256"
	case "sha1":
		return "sha1"
	case "sha384":
		return "sha384"
	case "sha512":
		return "sha512"
	case "md5":
		return "md5"
	case "sm3":
		return "sm3"
	}
	return string(b)
}

func checkDigestSize(alg string, digest []byte) error {
	want, ok := digestSizes[alg]
	if !ok {
		return fmt.Errorf("unknown digest algorithm %q", alg)
	}
	if len(digest) != want {
		return fmt.Errorf("%s digest has %d bytes, want %d", alg, len(digest), want)
	}
	return nil
}

// digest holds a hash value by value, so that hot paths do not allocate.
type digest struct {
	b [64]byte
	n int
}

func (d *digest) bytes() []byte { return d.b[:d.n] }

// sum hashes data with alg, which must be a supported algorithm.
func sum(alg Algorithm, data []byte) digest {
	var d digest
	switch alg {
	case SHA1:
		s := sha1.Sum(data)
		d.n = copy(d.b[:], s[:])
	case SHA256:
		s := sha256.Sum256(data)
		d.n = copy(d.b[:], s[:])
	case SHA384:
		s := sha512.Sum384(data)
		d.n = copy(d.b[:], s[:])
	case SHA512:
		s := sha512.Sum512(data)
		d.n = copy(d.b[:], s[:])
	default:
		panic("ima: sum called with unsupported algorithm " + alg.String())
	}
	return d
}

// templateHash computes the entry's template hash with alg, the way the
// kernel computes it for the bank of that algorithm.
func (e *Entry) templateHash(alg Algorithm) (digest, error) {
	if e.TemplateName != TemplateIMA {
		return sum(alg, e.TemplateData), nil
	}
	// The "ima" template hashes the digest and the name zero-padded to
	// 256 bytes, without the name's length.
	d, name, err := splitIMATemplate(e.TemplateData)
	if err != nil {
		return digest{}, fmt.Errorf("entry %d: %w", e.Index, err)
	}
	var buf [sha1.Size + imaNameSize]byte
	copy(buf[:], d)
	copy(buf[sha1.Size:], name)
	return sum(alg, buf[:]), nil
}

// TemplateHashOf computes the entry's template hash with alg.
func (e *Entry) TemplateHashOf(alg Algorithm) ([]byte, error) {
	if !supported(alg) {
		return nil, fmt.Errorf("hash algorithm %s is not supported", alg)
	}
	d, err := e.templateHash(alg)
	if err != nil {
		return nil, err
	}
	return slices.Clone(d.bytes()), nil
}

// loggedAlgorithm guesses the algorithm of the logged template hash from
// its size. The lists name no algorithm: SHA-1 for 20 bytes, and the
// per-bank lists of 32, 48 and 64 bytes use SHA-256, SHA-384, SHA-512.
func loggedAlgorithm(size int) (Algorithm, bool) {
	switch size {
	case 20:
		return SHA1, true
	case 32:
		return SHA256, true
	case 48:
		return SHA384, true
	case 64:
		return SHA512, true
	}
	return 0, false
}

// CheckTemplateHash reports whether the entry's template data hashes to
// its logged template hash. Violations, whose logged hash is all zeros,
// always fail this check: the caller should test IsViolation first.
func (e *Entry) CheckTemplateHash() error {
	alg, ok := loggedAlgorithm(len(e.TemplateHash))
	if !ok {
		return fmt.Errorf("entry %d: template hash has %d bytes, which matches no supported algorithm", e.Index, len(e.TemplateHash))
	}
	d, err := e.templateHash(alg)
	if err != nil {
		return err
	}
	if got := d.bytes(); !bytes.Equal(got, e.TemplateHash) {
		return fmt.Errorf("entry %d (%s): template data hashes to %x with %s, but the logged template hash is %x", e.Index, e.TemplateName, got, alg, e.TemplateHash)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
