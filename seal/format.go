package seal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/internal/tpmbytes"
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
	tpmbytes.Reader
	file string
}

func newReader(file string, data []byte) *reader {
	return &reader{Reader: tpmbytes.NewReader(data), file: file}
}

// formatError returns the first failure as a *FormatError, or nil.
func (r *reader) formatError() error {
	if r.Err == nil {
		return nil
	}
	return &FormatError{File: r.file, Offset: r.Err.Offset, Field: r.Err.Field, Reason: r.Err.Err.Error()}
}

// sized reads a TPM2B: a 16-bit size and that many bytes. It returns the
// whole TPM2B, size included, which is what go-tpm unmarshals.
func (r *reader) sized(field string) []byte {
	start := r.Off
	n := r.U16(field + " size")
	if r.Failed() {
		return nil
	}
	if n == 0 {
		r.Failf(field, "is empty")
		return nil
	}
	r.Bytes(field, int(n))
	if r.Failed() {
		return nil
	}
	return r.Data[start:r.Off]
}

// header checks the magic and version.
func (r *reader) header(magic []byte) {
	if len(r.Data) > MaxFileSize {
		r.Failf("file", "is %d bytes, more than the limit of %d", len(r.Data), MaxFileSize)
		return
	}
	if m := r.Bytes("magic", len(magic)); m != nil && !bytes.Equal(m, magic) {
		r.Off -= len(magic)
		r.Failf("magic", "is %q, expected %q: this is not a vouch %s file", m, magic, r.file)
		return
	}
	if v := r.U16("version"); !r.Failed() && v != FormatVersion {
		r.Failf("version", "is %d: this vouch reads version %d, use a vouch release that reads version %d", v, FormatVersion, v)
	}
}

func (r *reader) end() {
	if !r.Failed() && r.Off != len(r.Data) {
		r.Failf("end", "%d trailing bytes after the last field", len(r.Data)-r.Off)
	}
}

// pcrs reads the bank, the selection mask and one digest per selected PCR.
func (r *reader) pcrs() PCRs {
	bank := Bank(r.U16("pcr bank"))
	if !r.Failed() && bank.Size() == 0 {
		r.Off -= 2
		r.Failf("pcr bank", "algorithm 0x%04x is not sha1, sha256, sha384 or sha512", uint16(bank))
	}
	mask := Selection(r.U32("pcr selection"))
	if !r.Failed() && (mask == 0 || mask >= 1<<MaxPCR) {
		r.Off -= 4
		r.Failf("pcr selection", "mask 0x%08x selects no pcr or a pcr above %d", uint32(mask), MaxPCR-1)
	}
	if r.Failed() {
		return PCRs{}
	}
	p := PCRs{Bank: bank, Values: make(map[int][]byte, mask.Len())}
	for _, i := range mask.Indices() {
		v := r.Bytes(fmt.Sprintf("pcr %d value", i), bank.Size())
		if r.Failed() {
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
	if r.Failed() {
		return nil
	}
	v, err := tpm2.Unmarshal[T, P](raw)
	if err == nil && !bytes.Equal(tpm2.Marshal(*v), raw) {
		err = errors.New("trailing bytes inside the structure")
	}
	if err != nil {
		r.Off = start
		r.Failf(field, "is not a valid TPM structure: %v", err)
		return nil
	}
	return v
}
