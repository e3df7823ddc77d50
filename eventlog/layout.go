package eventlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// This file holds the structural checks of event data, separate from the
// decoders that build typed values. Check and Verify run the checks on
// every event without decoding anything. The decoders run them first, and
// then read fields that the checks showed are in bounds.

// malformed returns why the event's data does not have the structure its
// type defines, or "" when it does (or the type defines none).
func malformed(e *Event) string {
	var err error
	d := e.Data
	switch e.Type {
	case EV_SEPARATOR:
		if len(d) != 4 {
			return fmt.Sprintf("separator data is %d bytes, expected 4", len(d))
		}
	case EV_EFI_PLATFORM_FIRMWARE_BLOB:
		if len(d) != 16 {
			return fmt.Sprintf("firmware blob data is %d bytes, expected 16", len(d))
		}
	case EV_EFI_PLATFORM_FIRMWARE_BLOB2:
		_, err = blob2Layout(d)
	case EV_EFI_HANDOFF_TABLES:
		_, _, err = handoffLayout(d, false)
	case EV_EFI_HANDOFF_TABLES2:
		_, _, err = handoffLayout(d, true)
	case EV_EFI_GPT_EVENT, EV_EFI_GPT_EVENT2:
		_, _, err = gptLayout(d)
	case EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER:
		_, err = imageLoadLayout(d)
	case EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_BOOT2, EV_EFI_VARIABLE_AUTHORITY:
		_, err = parseVariable(d)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// blob2Layout returns the description length of a
// UEFI_PLATFORM_FIRMWARE_BLOB2.
func blob2Layout(d []byte) (int, error) {
	if len(d) < 1 || len(d) != 1+int(d[0])+16 {
		return 0, fmt.Errorf("firmware blob data is %d bytes, which does not fit UEFI_PLATFORM_FIRMWARE_BLOB2", len(d))
	}
	return int(d[0]), nil
}

// handoffLayout splits UEFI_HANDOFF_TABLE_POINTERS(2) into its description
// and its 24-byte table entries.
func handoffLayout(d []byte, withDescription bool) (desc, tables []byte, err error) {
	if withDescription {
		if len(d) < 1 || len(d) < 1+int(d[0]) {
			return nil, nil, fmt.Errorf("handoff table description runs past the event data")
		}
		n := int(d[0])
		desc, d = d[1:1+n], d[1+n:]
	}
	if len(d) < 8 {
		return nil, nil, fmt.Errorf("handoff table data is %d bytes, shorter than NumberOfTables", len(d))
	}
	n := binary.LittleEndian.Uint64(d)
	if n > uint64(len(d)-8)/24 || uint64(len(d)-8) != n*24 {
		return nil, nil, fmt.Errorf("handoff table data of %d bytes does not hold NumberOfTables %d entries of 24 bytes", len(d), n)
	}
	return desc, d[8:], nil
}

const (
	gptHeaderSize = 92
	gptSignature  = "EFI PART"
)

// gptLayout returns the partition entry size and count of a
// UEFI_GPT_DATA.
func gptLayout(d []byte) (entrySize uint32, n uint64, err error) {
	if len(d) < gptHeaderSize+8 {
		return 0, 0, fmt.Errorf("GPT event data is %d bytes, shorter than a GPT header and partition count", len(d))
	}
	if string(d[:8]) != gptSignature {
		return 0, 0, fmt.Errorf("GPT header signature is not %q", gptSignature)
	}
	entrySize = binary.LittleEndian.Uint32(d[84:])
	n = binary.LittleEndian.Uint64(d[gptHeaderSize:])
	rest := uint64(len(d) - gptHeaderSize - 8)
	if entrySize < 128 || n > rest/uint64(entrySize) || n*uint64(entrySize) != rest {
		return 0, 0, fmt.Errorf("GPT event holds %d bytes of partition entries, which does not match %d entries of %d bytes", rest, n, entrySize)
	}
	return entrySize, n, nil
}

// imageLoadLayout returns the device path length of a
// UEFI_IMAGE_LOAD_EVENT.
func imageLoadLayout(d []byte) (int, error) {
	if len(d) < 32 {
		return 0, fmt.Errorf("image load event data is %d bytes, shorter than the 32-byte UEFI_IMAGE_LOAD_EVENT header", len(d))
	}
	n := binary.LittleEndian.Uint64(d[24:])
	if n > uint64(len(d)-32) {
		return 0, fmt.Errorf("device path length %d runs past the %d-byte event data", n, len(d))
	}
	return int(n), nil
}

// iplForm reports how an EV_IPL string is encoded: as UTF-16LE (utf16
// then covers the first n bytes of d) or ASCII, and whether it ends with
// a NUL character.
func iplForm(d []byte) (utf16 bool, n int, trailingNUL bool) {
	// systemd-boot has logged UTF-16 strings followed by one stray NUL
	// byte, so an odd length ending in 0 is read without that byte.
	u := d
	if len(u)%2 == 1 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	if isUTF16(u) {
		k := len(u)
		nul := u[k-2] == 0 && u[k-1] == 0
		return true, k, nul || k < len(d)
	}
	return false, len(d), len(d) > 0 && d[len(d)-1] == 0
}

const startupLocalitySignature = "StartupLocality\x00"

// startupLocality returns the locality of a StartupLocality event (PFP
// section 10.4.5.3).
func startupLocality(e *Event) (byte, bool) {
	d := e.Data
	if e.Type != EV_NO_ACTION || len(d) != len(startupLocalitySignature)+1 || !bytes.HasPrefix(d, []byte(startupLocalitySignature)) {
		return 0, false
	}
	return d[len(d)-1], true
}
