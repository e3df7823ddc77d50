package seal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The sealed-blob and approval file formats are described field by field
// in docs/sealing.md. Both are big-endian, like TPM structures, and both
// start with an 8-byte magic and a 16-bit version.
var (
	blobMagic     = []byte("VCHSEAL\x00")
	approvalMagic = []byte("VCHAPRV\x00")
)

// FormatVersion is the version of the blob and approval formats this
// package writes and reads.
const FormatVersion = 1

// MaxFileSize bounds a blob or approval file. A TPM2B is at most 64 KiB
// and a blob holds three of them, so a larger file is not a blob.
const MaxFileSize = 256 << 10

// PolicyKind is the form of a sealed object's authPolicy.
type PolicyKind uint8

const (
	// PolicyPCRValues seals to TPM2_PolicyPCR over fixed PCR values.
	PolicyPCRValues PolicyKind = 1
	// PolicyAuthorized seals to TPM2_PolicyAuthorize with a policy key;
	// the object unseals under any PCR policy the key approved.
	PolicyAuthorized PolicyKind = 2
)

func (k PolicyKind) String() string {
	switch k {
	case PolicyPCRValues:
		return "pcr"
	case PolicyAuthorized:
		return "authorized"
	}
	return fmt.Sprintf("policy-kind-%d", uint8(k))
}

// ParentKind names the primary key a sealed object is created under. The
// primary is derived again from the owner hierarchy's seed at unseal time,
// so it need not be persisted.
type ParentKind uint8

// ParentECCSRK is the ECC P-256 storage root key of the TCG TPM v2.0
// Provisioning Guidance template (go-tpm's tpm2.ECCSRKTemplate) in the
// owner hierarchy.
const ParentECCSRK ParentKind = 1

// FormatError reports a blob or approval file that cannot be parsed. It is
// an input error: the file is damaged, truncated or not a Vouch file.
type FormatError struct {
	File   string // "sealed blob" or "approval"
	Offset int    // byte offset of the field that failed
	Field  string
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s: %s at byte %d: %s", e.File, e.Field, e.Offset, e.Reason)
}

// reader walks a file field by field and records the first failure.
type reader struct {
	file string
	data []byte
	off  int
	err  error
}

func (r *reader) fail(field, format string, args ...any) {
	if r.err == nil {
		r.err = &FormatError{File: r.file, Offset: r.off, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
}

func (r *reader) bytes(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.data)-r.off < n {
		r.fail(field, "truncated: needs %d bytes, %d left", n, len(r.data)-r.off)
		return nil
	}
	b := r.data[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8(field string) uint8 {
	b := r.bytes(field, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16(field string) uint16 {
	b := r.bytes(field, 2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *reader) u32(field string) uint32 {
	b := r.bytes(field, 4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) u64(field string) uint64 {
	b := r.bytes(field, 8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// sized reads a TPM2B: a 16-bit size and that many bytes. It returns the
// whole TPM2B, size included, which is what go-tpm unmarshals.
func (r *reader) sized(field string) []byte {
	start := r.off
	n := r.u16(field + " size")
	if r.err != nil {
		return nil
	}
	if n == 0 {
		r.fail(field, "is empty")
		return nil
	}
	r.bytes(field, int(n))
	if r.err != nil {
		return nil
	}
	return r.data[start:r.off]
}

// header checks the magic and version.
func (r *reader) header(magic []byte) {
	if len(r.data) > MaxFileSize {
		r.fail("file", "is %d bytes, more than the limit of %d", len(r.data), MaxFileSize)
		return
	}
	if m := r.bytes("magic", len(magic)); m != nil && !bytes.Equal(m, magic) {
		r.off -= len(magic)
		r.fail("magic", "is %q, expected %q: this is not a vouch %s file", m, magic, r.file)
		return
	}
	if v := r.u16("version"); r.err == nil && v != FormatVersion {
		r.fail("version", "is %d: this vouch reads version %d, use a vouch release that reads version %d", v, FormatVersion, v)
	}
}

func (r *reader) end() {
	if r.err == nil && r.off != len(r.data) {
		r.fail("end", "%d trailing bytes after the last field", len(r.data)-r.off)
	}
}

// pcrs reads the bank, the selection mask and one digest per selected PCR.
func (r *reader) pcrs() PCRs {
	bank := Bank(r.u16("pcr bank"))
	if r.err == nil && bank.Size() == 0 {
		r.off -= 2
		r.fail("pcr bank", "algorithm 0x%04x is not sha1, sha256, sha384 or sha512", uint16(bank))
	}
	mask := Selection(r.u32("pcr selection"))
	if r.err == nil && (mask == 0 || mask >= 1<<MaxPCR) {
		r.off -= 4
		r.fail("pcr selection", "mask 0x%08x selects no pcr or a pcr above %d", uint32(mask), MaxPCR-1)
	}
	if r.err != nil {
		return PCRs{}
	}
	p := PCRs{Bank: bank, Values: make(map[int][]byte, mask.Len())}
	for _, i := range mask.Indices() {
		v := r.bytes(fmt.Sprintf("pcr %d value", i), bank.Size())
		if r.err != nil {
			return PCRs{}
		}
		p.Values[i] = bytes.Clone(v)
	}
	return p
}

func appendPCRs(b []byte, p PCRs) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(p.Bank))
	sel := p.Selection()
	b = binary.BigEndian.AppendUint32(b, uint32(sel))
	for _, i := range sel.Indices() {
		b = append(b, p.Values[i]...)
	}
	return b
}

// publicContents decodes a TPM2B_PUBLIC's TPMT_PUBLIC, which go-tpm parses
// lazily, and rejects bytes the structure does not use.
func publicContents(pub tpm2.TPM2BPublic) (*tpm2.TPMTPublic, error) {
	contents, err := pub.Contents()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(contents), pub.Bytes()) {
		return nil, errors.New("trailing bytes inside the public area")
	}
	return contents, nil
}

// unmarshalTPM parses a TPM structure with go-tpm, requiring that it uses
// every byte.
func unmarshalTPM[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](r *reader, field string, raw []byte, start int) *T {
	if r.err != nil {
		return nil
	}
	v, err := tpm2.Unmarshal[T, P](raw)
	if err == nil && !bytes.Equal(tpm2.Marshal(*v), raw) {
		err = errors.New("trailing bytes inside the structure")
	}
	if err != nil {
		r.off = start
		r.fail(field, "is not a valid TPM structure: %v", err)
		return nil
	}
	return v
}
