// Package tpmbytes reads big-endian TPM wire structures (TPM 2.0 Part 1,
// "Canonical Form") and files laid out like them, field by field. A
// Reader records the first field it could not read, with its offset, and
// returns zero values after that, so a parser reads every field and checks
// for an error once.
//
// The package depends on the standard library only.
package tpmbytes

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTruncated is wrapped by the error of a field that runs past the end of
// the data.
var ErrTruncated = errors.New("truncated")

// FieldError is a field that could not be read or has an invalid value.
type FieldError struct {
	// Field names the field, such as "extraData" or "pcr bank".
	Field string
	// Offset is the byte offset of the field in the data.
	Offset int
	Err    error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s at offset %d: %v", e.Field, e.Offset, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Reader reads fields from Data starting at Off, which each read advances.
// Parsers may set Off to point a failure at the start of a field they have
// already read. Err holds the first failure.
type Reader struct {
	Data []byte
	Off  int
	Err  *FieldError
}

// NewReader returns a Reader at the start of data.
func NewReader(data []byte) Reader { return Reader{Data: data} }

// Failed reports whether a read has failed.
func (r *Reader) Failed() bool { return r.Err != nil }

// Fail records err for field at the current offset, unless a failure is
// already recorded.
func (r *Reader) Fail(field string, err error) {
	if r.Err == nil {
		r.Err = &FieldError{Field: field, Offset: r.Off, Err: err}
	}
}

// Failf is Fail with a formatted reason.
func (r *Reader) Failf(field, format string, args ...any) {
	if r.Err == nil {
		r.Fail(field, fmt.Errorf(format, args...))
	}
}

// Remaining returns the number of unread bytes.
func (r *Reader) Remaining() int { return len(r.Data) - r.Off }

// Bytes returns the next n bytes, sharing memory with Data.
func (r *Reader) Bytes(field string, n int) []byte {
	if r.Err != nil {
		return nil
	}
	if n < 0 || r.Remaining() < n {
		r.Fail(field, fmt.Errorf("%w: needs %d bytes, %d left", ErrTruncated, n, r.Remaining()))
		return nil
	}
	b := r.Data[r.Off : r.Off+n]
	r.Off += n
	return b
}

// U8 reads a UINT8.
func (r *Reader) U8(field string) uint8 {
	b := r.Bytes(field, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

// U16 reads a big-endian UINT16.
func (r *Reader) U16(field string) uint16 {
	b := r.Bytes(field, 2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// U32 reads a big-endian UINT32.
func (r *Reader) U32(field string) uint32 {
	b := r.Bytes(field, 4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// U64 reads a big-endian UINT64.
func (r *Reader) U64(field string) uint64 {
	b := r.Bytes(field, 8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// TPM2B reads a TPM2B: a UINT16 size and that many bytes, at most max. It
// returns the bytes without the size.
func (r *Reader) TPM2B(field string, max int) []byte {
	size := int(r.U16(field))
	if r.Err != nil {
		return nil
	}
	if size > max {
		r.Off -= 2
		r.Failf(field, "size %d exceeds the maximum of %d", size, max)
		return nil
	}
	return r.Bytes(field, size)
}
