package eventlog

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// DevicePath is a binary EFI device path (UEFI specification, section
// 10.3). It is formatted only on request, because most callers never look
// at most paths.
type DevicePath []byte

// String returns the text form of the path; see formatDevicePath.
func (p DevicePath) String() string {
	text, _ := formatDevicePath(p)
	return text
}

// File returns the path's file path nodes joined into one path, such as
// "\EFI\BOOT\BOOTX64.EFI", or "" when the path has none.
func (p DevicePath) File() string {
	_, file := formatDevicePath(p)
	return file
}

// MarshalText encodes the path in its text form.
func (p DevicePath) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// formatDevicePath renders an EFI device path in the text form of the UEFI
// specification (section 10.6), for example
// "PciRoot(0x0)/Pci(0x1,0x1)/Sata(0x0,0xFFFF,0x0)/HD(1,GPT,...)/\EFI\BOOT\BOOTX64.EFI",
// and returns the file path nodes joined into one path. Node types this
// function does not know print as Path(type,subtype,hexdata). A malformed
// node ends the text with "<malformed>".
func formatDevicePath(p []byte) (text, file string) {
	var b, f strings.Builder
	for len(p) > 0 {
		if len(p) < 4 {
			writeNode(&b, "<malformed>")
			break
		}
		typ, sub := p[0], p[1]
		n := int(binary.LittleEndian.Uint16(p[2:]))
		if n < 4 || n > len(p) {
			writeNode(&b, "<malformed>")
			break
		}
		body := p[4:n]
		p = p[n:]
		if typ == 0x7F {
			if sub == 0xFF {
				break
			}
			b.WriteString(",")
			continue
		}
		if typ == 4 && sub == 4 {
			s, _ := utf16String(body)
			writeNode(&b, s)
			if f.Len() > 0 && !strings.HasSuffix(f.String(), `\`) && !strings.HasPrefix(s, `\`) {
				f.WriteByte('\\')
			}
			f.WriteString(s)
			continue
		}
		writeNode(&b, formatNode(typ, sub, body))
	}
	return b.String(), f.String()
}

func writeNode(b *strings.Builder, s string) {
	if b.Len() > 0 && !strings.HasSuffix(b.String(), ",") {
		b.WriteByte('/')
	}
	b.WriteString(s)
}

func guidAt(b []byte) string {
	var g GUID
	copy(g[:], b)
	return g.String()
}

func formatNode(typ, sub byte, d []byte) string {
	u16 := func(i int) uint16 { return binary.LittleEndian.Uint16(d[i:]) }
	u32 := func(i int) uint32 { return binary.LittleEndian.Uint32(d[i:]) }
	u64 := func(i int) uint64 { return binary.LittleEndian.Uint64(d[i:]) }
	switch {
	case typ == 1 && sub == 1 && len(d) == 2:
		return fmt.Sprintf("Pci(0x%x,0x%x)", d[1], d[0])
	case typ == 1 && sub == 3 && len(d) == 20:
		return fmt.Sprintf("MemoryMapped(0x%x,0x%x,0x%x)", u32(0), u64(4), u64(12))
	case typ == 1 && sub == 4 && len(d) >= 16:
		return vendorNode("VenHw", d)
	case typ == 1 && sub == 5 && len(d) == 4:
		return fmt.Sprintf("Ctrl(0x%x)", u32(0))
	case typ == 2 && sub == 1 && len(d) == 8:
		hid, uid := u32(0), u32(4)
		switch hid {
		case 0x0A0341D0:
			return fmt.Sprintf("PciRoot(0x%x)", uid)
		case 0x0A0841D0:
			return fmt.Sprintf("PcieRoot(0x%x)", uid)
		}
		return fmt.Sprintf("Acpi(%s,0x%x)", eisaID(hid), uid)
	case typ == 2 && sub == 3 && len(d) >= 4:
		return fmt.Sprintf("AcpiAdr(0x%x)", u32(0))
	case typ == 3 && sub == 1 && len(d) == 4:
		return fmt.Sprintf("Ata(%d,%d,%d)", d[0], d[1], u16(2))
	case typ == 3 && sub == 2 && len(d) == 4:
		return fmt.Sprintf("Scsi(0x%x,0x%x)", u16(0), u16(2))
	case typ == 3 && sub == 5 && len(d) == 2:
		return fmt.Sprintf("USB(0x%x,0x%x)", d[0], d[1])
	case typ == 3 && sub == 10 && len(d) >= 16:
		return vendorNode("VenMsg", d)
	case typ == 3 && sub == 11 && len(d) == 33:
		return fmt.Sprintf("MAC(%s,0x%x)", hex.EncodeToString(d[:6]), d[32])
	case typ == 3 && sub == 12 && len(d) >= 19:
		return fmt.Sprintf("IPv4(%d.%d.%d.%d)", d[4], d[5], d[6], d[7])
	case typ == 3 && sub == 18 && len(d) == 6:
		return fmt.Sprintf("Sata(0x%x,0x%x,0x%x)", u16(0), u16(2), u16(4))
	case typ == 3 && sub == 23 && len(d) == 12:
		return fmt.Sprintf("NVMe(0x%x,%s)", u32(0), hex.EncodeToString(d[4:12]))
	case typ == 3 && sub == 24:
		return fmt.Sprintf("Uri(%s)", asciiString(d))
	case typ == 4 && sub == 1 && len(d) == 38:
		part, start, size := u32(0), u64(4), u64(12)
		switch d[37] {
		case 2:
			return fmt.Sprintf("HD(%d,GPT,%s,0x%x,0x%x)", part, guidAt(d[20:36]), start, size)
		case 1:
			return fmt.Sprintf("HD(%d,MBR,0x%08x,0x%x,0x%x)", part, u32(20), start, size)
		}
		return fmt.Sprintf("HD(%d,%d,0,0x%x,0x%x)", part, d[37], start, size)
	case typ == 4 && sub == 2 && len(d) == 20:
		return fmt.Sprintf("CDROM(0x%x,0x%x,0x%x)", u32(0), u64(4), u64(12))
	case typ == 4 && sub == 3 && len(d) >= 16:
		return vendorNode("VenMedia", d)
	case typ == 4 && sub == 6 && len(d) == 16:
		return fmt.Sprintf("FvFile(%s)", guidAt(d))
	case typ == 4 && sub == 7 && len(d) == 16:
		return fmt.Sprintf("Fv(%s)", guidAt(d))
	case typ == 4 && sub == 8 && len(d) == 20:
		return fmt.Sprintf("Offset(0x%x,0x%x)", u64(4), u64(12))
	case typ == 5 && sub == 1 && len(d) >= 4:
		desc := ""
		if len(d) > 4 {
			desc = asciiString(d[4:])
		}
		return fmt.Sprintf("BBS(0x%x,%s,0x%x)", u16(0), desc, u16(2))
	}
	return fmt.Sprintf("Path(%d,%d,%s)", typ, sub, hex.EncodeToString(d))
}

func vendorNode(name string, d []byte) string {
	if len(d) == 16 {
		return fmt.Sprintf("%s(%s)", name, guidAt(d))
	}
	return fmt.Sprintf("%s(%s,%s)", name, guidAt(d), hex.EncodeToString(d[16:]))
}

// eisaID formats a compressed EISA PNP identifier such as 0x0A0341D0
// ("PNP0A03").
func eisaID(id uint32) string {
	lo := uint16(id)
	c1 := byte((lo>>10)&0x1f) + 'A' - 1
	c2 := byte((lo>>5)&0x1f) + 'A' - 1
	c3 := byte(lo&0x1f) + 'A' - 1
	return fmt.Sprintf("%c%c%c%04X", c1, c2, c3, id>>16)
}
