package tpmbytes

import (
	"bytes"
	"errors"
	"testing"
)

func TestReaderFields(t *testing.T) {
	data := []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x00, 0x02, 0xaa, 0xbb}
	r := NewReader(data)
	if got := r.U8("a"); got != 0x01 {
		t.Errorf("U8 = %#x", got)
	}
	if got := r.U16("b"); got != 0x0203 {
		t.Errorf("U16 = %#x", got)
	}
	if got := r.U32("c"); got != 0x04050607 {
		t.Errorf("U32 = %#x", got)
	}
	if got := r.U64("d"); got != 0x08090a0b0c0d0e0f {
		t.Errorf("U64 = %#x", got)
	}
	if got := r.TPM2B("e", 2); !bytes.Equal(got, []byte{0xaa, 0xbb}) {
		t.Errorf("TPM2B = %x", got)
	}
	if r.Failed() || r.Remaining() != 0 {
		t.Errorf("Err = %v, %d bytes left", r.Err, r.Remaining())
	}
}

func TestReaderTruncated(t *testing.T) {
	r := NewReader([]byte{0x00, 0x01, 0x02})
	r.U16("first")
	r.U32("second")
	r.U8("third")
	if r.Err == nil || r.Err.Field != "second" || r.Err.Offset != 2 || !errors.Is(r.Err, ErrTruncated) {
		t.Fatalf("Err = %#v, want the second field at offset 2 truncated", r.Err)
	}
	if got, want := r.Err.Error(), "second at offset 2: truncated: needs 4 bytes, 1 left"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestReaderTPM2BTooLarge(t *testing.T) {
	r := NewReader([]byte{0x00, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5})
	r.U16("tag")
	if got := r.TPM2B("digest", 4); got != nil {
		t.Errorf("TPM2B = %x, want nil", got)
	}
	if r.Err == nil || r.Err.Field != "digest" || r.Err.Offset != 2 {
		t.Fatalf("Err = %v, want digest at offset 2", r.Err)
	}
	if got, want := r.Err.Error(), "digest at offset 2: size 5 exceeds the maximum of 4"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}
