package eventlog

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Well-known EFI variable vendor GUIDs and signature types.
var (
	// EFIGlobalVariable owns SecureBoot, PK, KEK, BootOrder and Boot####.
	EFIGlobalVariable = MustParseGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// EFIImageSecurityDatabase owns db and dbx.
	EFIImageSecurityDatabase = MustParseGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// ShimLockGUID owns shim's MokList, MokListX, MokListTrusted and
	// SbatLevel.
	ShimLockGUID = MustParseGUID("605dab50-e046-4300-abb6-3dd810dd8b23")

	// CertX509GUID is EFI_CERT_X509_GUID: the signature data is a DER
	// certificate.
	CertX509GUID = MustParseGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// CertSHA256GUID is EFI_CERT_SHA256_GUID: the signature data is a
	// SHA-256 image digest.
	CertSHA256GUID = MustParseGUID("c1c41626-504c-4092-aca9-41f936934328")
)

// EFIVariable is the UEFI_VARIABLE_DATA of EV_EFI_VARIABLE_DRIVER_CONFIG,
// EV_EFI_VARIABLE_BOOT(2) and EV_EFI_VARIABLE_AUTHORITY events, with the
// variable's value decoded when its name identifies the value's type. At
// most one of the value fields is set. ValueError gives the reason a known
// variable's value did not decode. Certificates are left as DER bytes and
// never parsed here.
type EFIVariable struct {
	VendorGUID GUID     `json:"vendor_guid"`
	Name       string   `json:"name"`
	Data       HexBytes `json:"data"`

	// Enabled is set for one-byte boolean variables: SecureBoot,
	// SetupMode, AuditMode, DeployedMode and shim's MokListTrusted.
	Enabled *bool `json:"enabled,omitempty"`
	// SignatureLists is set for PK, KEK, db, dbx, MokList and MokListX.
	SignatureLists []SignatureList `json:"signature_lists,omitempty"`
	// Authority is set for EV_EFI_VARIABLE_AUTHORITY events whose data is
	// an EFI_SIGNATURE_DATA (the db entry that verified an image).
	Authority *SignatureData `json:"authority,omitempty"`
	// LoadOption is set for Boot#### variables.
	LoadOption *LoadOption `json:"load_option,omitempty"`
	// BootOrder is set for the BootOrder variable.
	BootOrder []uint16 `json:"boot_order,omitempty"`
	// Text is set for shim's SbatLevel, a CSV text variable.
	Text       string `json:"text,omitempty"`
	ValueError string `json:"value_error,omitempty"`
	// TrailingBytes counts event data bytes after the UEFI_VARIABLE_DATA
	// structure. Some firmware logs authority events with a few such
	// bytes and hashes a prefix of the data.
	TrailingBytes int `json:"trailing_bytes,omitempty"`
}

// maxVariableTrailing bounds the bytes accepted after a UEFI_VARIABLE_DATA
// structure. Up to 6 are seen on real EDK2-based firmware and shim.
const maxVariableTrailing = 8

// SignatureList is an EFI_SIGNATURE_LIST.
type SignatureList struct {
	Type       GUID            `json:"type"`
	Signatures []SignatureData `json:"signatures"`
}

// SignatureData is an EFI_SIGNATURE_DATA: an owner GUID and a certificate
// or digest, as the list's type specifies.
type SignatureData struct {
	Owner GUID     `json:"owner"`
	Data  HexBytes `json:"data"`
	// X509 is a cheap structural hint that Data starts like a DER
	// SEQUENCE; the certificate is not parsed.
	X509 bool `json:"x509"`
	// NoOwner is set for an authority event whose data is a bare DER
	// certificate without the owner GUID, as shim 15 logs its vendor
	// certificate and some firmware logs db entries. Owner is then zero.
	NoOwner bool `json:"no_owner,omitempty"`
}

// LoadOption is an EFI_LOAD_OPTION (the value of a Boot#### variable).
type LoadOption struct {
	Attributes   uint32     `json:"attributes"`
	Description  string     `json:"description"`
	DevicePath   DevicePath `json:"device_path"`
	OptionalData HexBytes   `json:"optional_data,omitempty"`
}

func (*EFIVariable) Kind() string { return "efi_variable" }

// IsSecureBootEnabled reports whether the event is the SecureBoot variable
// with value 1.
func (v *EFIVariable) IsSecureBootEnabled() bool {
	return v.VendorGUID == EFIGlobalVariable && v.Name == "SecureBoot" && v.Enabled != nil && *v.Enabled
}

// parseVariable decodes UEFI_VARIABLE_DATA.
func parseVariable(d []byte) (EFIVariable, error) {
	if len(d) < 32 {
		return EFIVariable{}, fmt.Errorf("UEFI_VARIABLE_DATA is %d bytes, shorter than its 32-byte header", len(d))
	}
	nameLen := binary.LittleEndian.Uint64(d[16:])
	dataLen := binary.LittleEndian.Uint64(d[24:])
	rest := uint64(len(d) - 32)
	if nameLen > rest/2 || dataLen > rest-2*nameLen {
		return EFIVariable{}, fmt.Errorf("UEFI_VARIABLE_DATA name length %d and data length %d run past the %d-byte event data", nameLen, dataLen, len(d))
	}
	trailing := uint64(len(d)) - 32 - 2*nameLen - dataLen
	if trailing > maxVariableTrailing {
		return EFIVariable{}, fmt.Errorf("UEFI_VARIABLE_DATA of %d bytes has %d bytes after its variable data", len(d), trailing)
	}
	v := EFIVariable{TrailingBytes: int(trailing)}
	copy(v.VendorGUID[:], d[:16])
	start := 32 + 2*nameLen
	v.Data = d[start : start+dataLen : start+dataLen]
	return v, nil
}

// interpret decodes the variable's value from its name and vendor.
func (v *EFIVariable) interpret(t EventType) {
	name := v.Name
	var err error
	switch {
	case t == EV_EFI_VARIABLE_AUTHORITY:
		// The authority events of firmware and shim carry the
		// EFI_SIGNATURE_DATA that verified an image. shim also logs
		// MokListTrusted and SbatLevel as authority-typed events: those
		// hold a byte or text, not a signature.
		switch name {
		case "SbatLevel":
			v.Text = strings.TrimRight(string(v.Data), "\x00")
		case "MokListTrusted":
			err = v.setBool(name)
		default:
			v.Authority, err = parseAuthority(v.Data)
		}
	case name == "SecureBoot", name == "SetupMode", name == "AuditMode", name == "DeployedMode", name == "MokListTrusted":
		err = v.setBool(name)
	case name == "PK", name == "KEK", name == "db", name == "dbx", name == "dbt", name == "dbr",
		name == "MokList", name == "MokListX":
		v.SignatureLists, err = parseSignatureLists(v.Data)
	case name == "SbatLevel":
		v.Text = strings.TrimRight(string(v.Data), "\x00")
	case name == "BootOrder" && v.VendorGUID == EFIGlobalVariable:
		if len(v.Data)%2 != 0 {
			err = fmt.Errorf("BootOrder is %d bytes, not a list of 16-bit entries", len(v.Data))
			break
		}
		v.BootOrder = make([]uint16, len(v.Data)/2)
		for i := range v.BootOrder {
			v.BootOrder[i] = binary.LittleEndian.Uint16(v.Data[2*i:])
		}
	case isBootOption(name) && v.VendorGUID == EFIGlobalVariable:
		v.LoadOption, err = parseLoadOption(v.Data)
	}
	if err != nil {
		v.ValueError = err.Error()
	}
}

func (v *EFIVariable) setBool(name string) error {
	// A zero-length SecureBoot value is seen on real machines with Secure
	// Boot off; it reads as disabled.
	if len(v.Data) > 1 {
		return fmt.Errorf("%s is %d bytes, expected 1", name, len(v.Data))
	}
	on := len(v.Data) == 1 && v.Data[0] == 1
	v.Enabled = &on
	return nil
}

func isBootOption(name string) bool {
	if len(name) != 8 || !strings.HasPrefix(name, "Boot") {
		return false
	}
	for _, c := range name[4:] {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func looksLikeDER(b []byte) bool {
	return len(b) > 4 && b[0] == 0x30 && b[1] == 0x82
}

// parseAuthority decodes the data of an authority event: an
// EFI_SIGNATURE_DATA (owner GUID, then a certificate or digest), or a bare
// DER certificate. Data is read as bare only when it is exactly one DER
// SEQUENCE and the part after a would-be owner GUID is not.
func parseAuthority(d []byte) (*SignatureData, error) {
	if derSequenceSize(d) == len(d) && (len(d) < 16 || derSequenceSize(d[16:]) != len(d)-16) {
		return &SignatureData{Data: d, X509: true, NoOwner: true}, nil
	}
	if len(d) < 16 {
		return nil, fmt.Errorf("authority data is %d bytes, shorter than an EFI_SIGNATURE_DATA owner GUID", len(d))
	}
	s := &SignatureData{Data: d[16:]}
	copy(s.Owner[:], d[:16])
	s.X509 = looksLikeDER(s.Data)
	return s, nil
}

// derSequenceSize returns the encoded size of the DER SEQUENCE at the
// start of b, header included, or -1 when b does not start with one whose
// length field fits in b. Lengths of up to 3 bytes are read.
func derSequenceSize(b []byte) int {
	if len(b) < 2 || b[0] != 0x30 {
		return -1
	}
	n := int(b[1])
	if n < 0x80 {
		return 2 + n
	}
	k := n & 0x7f
	if k == 0 || k > 3 || len(b) < 2+k {
		return -1
	}
	size := 0
	for _, c := range b[2 : 2+k] {
		size = size<<8 | int(c)
	}
	return 2 + k + size
}

// parseSignatureLists decodes a sequence of EFI_SIGNATURE_LIST structures.
// A first pass checks the sizes and counts the entries, so the lists and
// all their entries take one allocation each.
func parseSignatureLists(d []byte) ([]SignatureList, error) {
	nLists, nSigs := 0, 0
	for off := 0; off < len(d); {
		if len(d)-off < 28 {
			return nil, fmt.Errorf("signature list at byte %d: %d bytes left, shorter than a 28-byte EFI_SIGNATURE_LIST header", off, len(d)-off)
		}
		h := d[off:]
		listSize := uint64(binary.LittleEndian.Uint32(h[16:]))
		headerSize := uint64(binary.LittleEndian.Uint32(h[20:]))
		sigSize := uint64(binary.LittleEndian.Uint32(h[24:]))
		if listSize > uint64(len(h)) || listSize < 28 || headerSize > listSize-28 || sigSize < 16 {
			return nil, fmt.Errorf("signature list at byte %d: sizes (list %d, header %d, signature %d) do not fit the %d bytes left", off, listSize, headerSize, sigSize, len(h))
		}
		body := listSize - 28 - headerSize
		if body%sigSize != 0 {
			return nil, fmt.Errorf("signature list at byte %d: %d bytes of signatures is not a multiple of the signature size %d", off, body, sigSize)
		}
		nLists++
		nSigs += int(body / sigSize)
		off += int(listSize)
	}

	lists := make([]SignatureList, nLists)
	sigs := make([]SignatureData, nSigs)
	off := 0
	for i := range lists {
		h := d[off:]
		listSize := uint64(binary.LittleEndian.Uint32(h[16:]))
		headerSize := uint64(binary.LittleEndian.Uint32(h[20:]))
		sigSize := uint64(binary.LittleEndian.Uint32(h[24:]))
		n := int((listSize - 28 - headerSize) / sigSize)
		l := &lists[i]
		copy(l.Type[:], h[:16])
		l.Signatures = sigs[:n:n]
		sigs = sigs[n:]
		p := 28 + headerSize
		for j := range l.Signatures {
			s := &l.Signatures[j]
			copy(s.Owner[:], h[p:p+16])
			s.Data = h[p+16 : p+sigSize : p+sigSize]
			s.X509 = l.Type == CertX509GUID && looksLikeDER(s.Data)
			p += sigSize
		}
		off += int(listSize)
	}
	return lists, nil
}

// parseLoadOption decodes an EFI_LOAD_OPTION.
func parseLoadOption(d []byte) (*LoadOption, error) {
	if len(d) < 6 {
		return nil, fmt.Errorf("load option is %d bytes, shorter than its 6-byte header", len(d))
	}
	o := &LoadOption{Attributes: binary.LittleEndian.Uint32(d)}
	pathLen := int(binary.LittleEndian.Uint16(d[4:]))
	rest := d[6:]
	end := -1
	for i := 0; i+1 < len(rest); i += 2 {
		if rest[i] == 0 && rest[i+1] == 0 {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, fmt.Errorf("load option description has no terminating NUL")
	}
	o.Description, _ = utf16String(rest[:end])
	rest = rest[end+2:]
	if pathLen > len(rest) {
		return nil, fmt.Errorf("load option device path length %d runs past the %d bytes left", pathLen, len(rest))
	}
	o.DevicePath = DevicePath(rest[:pathLen:pathLen])
	if len(rest) > pathLen {
		o.OptionalData = rest[pathLen:]
	}
	return o, nil
}
