package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

var errNVMissing = errors.New("NV index is not defined")

// maxNVSize bounds what readNV reads: EK certificates are a few KiB.
const maxNVSize = 16 << 10

// readNV reads a whole NV index in chunks the TPM accepts. It returns
// errNVMissing when the index is not defined.
func (t *TPM) readNV(index uint32) ([]byte, error) {
	h := tpm2.TPMHandle(index)
	pubRsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t.t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, errNVMissing
		}
		return nil, fmt.Errorf("reading the public area of NV 0x%08x: %w", index, err)
	}
	pub, err := pubRsp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("decoding the public area of NV 0x%08x: %w", index, err)
	}
	size := int(pub.DataSize)
	if size > maxNVSize {
		return nil, fmt.Errorf("NV 0x%08x contains %d bytes, more than the maximum of %d read for an EK certificate", index, size, maxNVSize)
	}
	auth := tpm2.AuthHandle{Handle: h, Name: pubRsp.NVName, Auth: tpm2.PasswordAuth(nil)}
	if !pub.Attributes.AuthRead && pub.Attributes.OwnerRead {
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	}
	chunk := t.nvBufferMax()
	out := make([]byte, 0, size)
	for off := 0; off < size; {
		n := min(chunk, size-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: pubRsp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(t.t)
		if err != nil {
			return nil, fmt.Errorf("reading NV 0x%08x at offset %d: %w", index, off, err)
		}
		if len(rsp.Data.Buffer) == 0 {
			return nil, fmt.Errorf("reading NV 0x%08x at offset %d: the TPM returned no data", index, off)
		}
		out = append(out, rsp.Data.Buffer...)
		off += len(rsp.Data.Buffer)
	}
	return out, nil
}

// nvBufferMax returns TPM_PT_NV_BUFFER_MAX, or 512 when the TPM does not
// report it.
func (t *TPM) nvBufferMax() int {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTNVBufferMax), PropertyCount: 1}.Execute(t.t)
	if err == nil {
		if props, err := rsp.CapabilityData.Data.TPMProperties(); err == nil {
			for _, p := range props.TPMProperty {
				if p.Property == tpm2.TPMPTNVBufferMax && p.Value > 0 {
					return int(min(p.Value, 4096))
				}
			}
		}
	}
	return 512
}
