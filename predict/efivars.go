package predict

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf16"
)

// GUID is an EFI_GUID in its in-memory byte order: the first three fields
// little-endian, the last eight bytes as written.
type GUID [16]byte

// ParseGUID parses the text form "8be4df61-93ca-11d2-aa0d-00e098032b8c".
func ParseGUID(s string) (GUID, error) {
	var g GUID
	parts := strings.Split(s, "-")
	if len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 || len(parts[2]) != 4 || len(parts[3]) != 4 || len(parts[4]) != 12 {
		return g, fmt.Errorf("invalid GUID %q: expected the form 8-4-4-4-12 hex digits", s)
	}
	raw, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		return g, fmt.Errorf("invalid GUID %q: %w", s, err)
	}
	binary.LittleEndian.PutUint32(g[0:], binary.BigEndian.Uint32(raw[0:]))
	binary.LittleEndian.PutUint16(g[4:], binary.BigEndian.Uint16(raw[4:]))
	binary.LittleEndian.PutUint16(g[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(g[8:], raw[8:])
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the GUID's text form in lower case.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:])
}

// GUIDs of the variables and signature types this package reads.
var (
	GUIDGlobalVariable          = mustGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	GUIDImageSecurityDatabase   = mustGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	GUIDShimLock                = mustGUID("605dab50-e046-4300-abb6-3dd810dd8b23")
	GUIDSecureBootEnableDisable = mustGUID("f0a30bc7-af08-4556-99c4-001009c93a44")
	GUIDCertX509                = mustGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	GUIDCertSHA256              = mustGUID("c1c41626-504c-4092-aca9-41f936934328")

	guidAuthenticatedVariable = mustGUID("aaf32c78-947b-439a-a180-2e144ec37792")
	guidVariable              = mustGUID("ddcf3616-3275-4164-98b6-fe85707ffe7d")
)

// VariableKey names a UEFI variable.
type VariableKey struct {
	GUID GUID
	Name string
}

// Variables maps UEFI variables to their data (without the attributes).
type Variables map[VariableKey][]byte

// Get returns a variable's data and whether it exists.
func (v Variables) Get(guid GUID, name string) ([]byte, bool) {
	d, ok := v[VariableKey{GUID: guid, Name: name}]
	return d, ok
}

// VariableData encodes the UEFI_VARIABLE_DATA structure that UEFI firmware
// hashes for EV_EFI_VARIABLE_DRIVER_CONFIG and EV_EFI_VARIABLE_AUTHORITY
// events (TCG PC Client Platform Firmware Profile, section 10.4.2): the
// vendor GUID, the name length in UTF-16 code units, the data length, the
// name without its NUL and the data.
func VariableData(guid GUID, name string, data []byte) []byte {
	name16 := utf16.Encode([]rune(name))
	out := make([]byte, 0, 32+2*len(name16)+len(data))
	out = append(out, guid[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(name16)))
	out = binary.LittleEndian.AppendUint64(out, uint64(len(data)))
	for _, c := range name16 {
		out = binary.LittleEndian.AppendUint16(out, c)
	}
	return append(out, data...)
}

// Firmware volume and variable store layout (EDK2 MdePkg and MdeModulePkg).
const (
	fvSignatureOffset    = 40
	fvHeaderLenOffset    = 48
	varStoreHeaderSize   = 28
	varStartID           = 0x55aa
	varStateAdded        = 0x3f
	varStateAddedInDel   = 0x3e // VAR_ADDED & VAR_IN_DELETED_TRANSITION
	authVarHeaderSize    = 60
	plainVarHeaderSize   = 32
	varHeaderAlignment   = 4
	varStoreFormatted    = 0x5a
	varStoreStateHealthy = 0xfe
)

// ParseOVMFVariables reads the variables of an EDK2 variable store
// firmware volume, such as OVMF_VARS.fd: a firmware volume header followed
// by an authenticated (or plain) variable store. Only variables in the
// ADDED state are returned. A variable in transition to deletion is kept
// when no ADDED copy exists, as EDK2 does.
func ParseOVMFVariables(data []byte) (Variables, error) {
	if len(data) < fvHeaderLenOffset+2 || string(data[fvSignatureOffset:fvSignatureOffset+4]) != "_FVH" {
		return nil, errors.New("not an EDK2 firmware volume: missing _FVH signature at offset 40")
	}
	hdrLen := int(binary.LittleEndian.Uint16(data[fvHeaderLenOffset:]))
	if hdrLen+varStoreHeaderSize > len(data) {
		return nil, fmt.Errorf("invalid firmware volume: header length %d leaves no room for a variable store in %d bytes", hdrLen, len(data))
	}
	store := data[hdrLen:]
	var sig GUID
	copy(sig[:], store)
	var headerSize int
	switch sig {
	case guidAuthenticatedVariable:
		headerSize = authVarHeaderSize
	case guidVariable:
		headerSize = plainVarHeaderSize
	default:
		return nil, fmt.Errorf("invalid variable store at offset 0x%x: unknown signature %s", hdrLen, sig)
	}
	storeSize := int(binary.LittleEndian.Uint32(store[16:]))
	if storeSize < varStoreHeaderSize || storeSize > len(store) {
		return nil, fmt.Errorf("invalid variable store at offset 0x%x: size %d does not fit the %d bytes after the volume header", hdrLen, storeSize, len(store))
	}
	if store[20] != varStoreFormatted || store[21] != varStoreStateHealthy {
		return nil, fmt.Errorf("variable store at offset 0x%x is not formatted and healthy (format 0x%x, state 0x%x)", hdrLen, store[20], store[21])
	}
	store = store[:storeSize]

	vars := make(Variables)
	deleting := make(Variables)
	pos := varStoreHeaderSize
	for pos+headerSize <= len(store) {
		h := store[pos:]
		if binary.LittleEndian.Uint16(h) != varStartID {
			break
		}
		state := h[2]
		var nameSize, dataSize int
		var guid GUID
		if headerSize == authVarHeaderSize {
			nameSize = int(binary.LittleEndian.Uint32(h[36:]))
			dataSize = int(binary.LittleEndian.Uint32(h[40:]))
			copy(guid[:], h[44:60])
		} else {
			nameSize = int(binary.LittleEndian.Uint32(h[8:]))
			dataSize = int(binary.LittleEndian.Uint32(h[12:]))
			copy(guid[:], h[16:32])
		}
		end := pos + headerSize + nameSize + dataSize
		if nameSize < 0 || dataSize < 0 || end > len(store) || end < pos {
			return nil, fmt.Errorf("invalid variable at store offset 0x%x: name (%d bytes) and data (%d bytes) run past the end of the store", pos, nameSize, dataSize)
		}
		if nameSize%2 != 0 {
			return nil, fmt.Errorf("invalid variable at store offset 0x%x: odd UTF-16 name size %d", pos, nameSize)
		}
		name := decodeUTF16Name(store[pos+headerSize : pos+headerSize+nameSize])
		value := store[pos+headerSize+nameSize : end]
		key := VariableKey{GUID: guid, Name: name}
		switch state {
		case varStateAdded:
			vars[key] = value
		case varStateAddedInDel:
			deleting[key] = value
		}
		pos = (end + varHeaderAlignment - 1) &^ (varHeaderAlignment - 1)
	}
	for k, v := range deleting {
		if _, ok := vars[k]; !ok {
			vars[k] = v
		}
	}
	return vars, nil
}

func decodeUTF16Name(b []byte) string {
	units := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return string(utf16.Decode(units))
}

// maxEfivarSize bounds one file read from an efivars directory.
const maxEfivarSize = 1 << 20

// ReadEfivarsDir reads the variables of a directory laid out like Linux's
// /sys/firmware/efi/efivars: one file per variable, named NAME-GUID, whose
// first four bytes are the attributes. Files whose names do not end in a
// GUID are ignored.
func ReadEfivarsDir(dir string) (Variables, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read efivars directory: %w", err)
	}
	vars := make(Variables)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || len(name) < 38 || name[len(name)-37] != '-' {
			continue
		}
		guid, err := ParseGUID(name[len(name)-36:])
		if err != nil {
			continue
		}
		path := filepath.Join(dir, name)
		raw, err := readFileLimited(path, maxEfivarSize, "an efivars file")
		if err != nil {
			return nil, fmt.Errorf("read variable: %w", err)
		}
		if len(raw) < 4 {
			return nil, fmt.Errorf("variable file %s is %d bytes: an efivars file starts with 4 bytes of attributes", path, len(raw))
		}
		vars[VariableKey{GUID: guid, Name: name[:len(name)-37]}] = raw[4:]
	}
	return vars, nil
}

// secureBootVariables lists what EDK2's Tcg2Dxe measures into PCR 7 before
// the separator, in order. PK, KEK, db and dbx are measured with empty data
// when absent, but dbt and dbr only when present.
var secureBootVariables = []struct {
	guid     GUID
	name     string
	optional bool
}{
	{GUIDGlobalVariable, "SecureBoot", false},
	{GUIDGlobalVariable, "PK", false},
	{GUIDGlobalVariable, "KEK", false},
	{GUIDImageSecurityDatabase, "db", false},
	{GUIDImageSecurityDatabase, "dbx", false},
	{GUIDImageSecurityDatabase, "dbt", true},
	{GUIDImageSecurityDatabase, "dbr", true},
}

// SecureBootEnabled derives the SecureBoot variable that firmware would
// report for a variable store that lacks it: enabled when
// PK is enrolled and EDK2's SecureBootEnable is not 0.
func SecureBootEnabled(vars Variables) bool {
	if sb, ok := vars.Get(GUIDGlobalVariable, "SecureBoot"); ok {
		return len(sb) == 1 && sb[0] == 1
	}
	pk, ok := vars.Get(GUIDGlobalVariable, "PK")
	if !ok || len(pk) == 0 {
		return false
	}
	if en, ok := vars.Get(GUIDSecureBootEnableDisable, "SecureBootEnable"); ok && len(en) == 1 && en[0] == 0 {
		return false
	}
	return true
}

// SecureBootReferences predicts the EV_EFI_VARIABLE_DRIVER_CONFIG events in
// PCR 7 for a variable store, and one EV_EFI_VARIABLE_AUTHORITY candidate per
// X.509 certificate in db (the firmware logs the db entry that verified each
// boot application).
func SecureBootReferences(vars Variables, banks []Bank) ([]Reference, error) {
	var refs []Reference
	for _, v := range secureBootVariables {
		data, ok := vars.Get(v.guid, v.name)
		if v.name == "SecureBoot" {
			data = []byte{0}
			if SecureBootEnabled(vars) {
				data = []byte{1}
			}
		} else if !ok && v.optional {
			continue
		}
		d, err := hashBytes(banks, VariableData(v.guid, v.name, data))
		if err != nil {
			return nil, err
		}
		refs = append(refs, Reference{
			Kind:      KindSecureBootVariable,
			PCR:       7,
			EventType: EventEFIVariableDriverConfig,
			Component: v.name,
			Event:     v.name,
			Digests:   d,
		})
	}

	db, _ := vars.Get(GUIDImageSecurityDatabase, "db")
	lists, err := ParseSignatureLists(db)
	if err != nil {
		return nil, fmt.Errorf("db: %w", err)
	}
	for _, l := range lists {
		if l.Type != GUIDCertX509 {
			continue
		}
		for _, s := range l.Signatures {
			ref, err := authorityReference(GUIDImageSecurityDatabase, "db", s, banks)
			if err != nil {
				return nil, err
			}
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

// authorityReference predicts the EV_EFI_VARIABLE_AUTHORITY event logged
// when the signature database entry s authorizes a boot application: the
// variable data is the EFI_SIGNATURE_DATA (owner GUID, then the data).
func authorityReference(guid GUID, name string, s SignatureData, banks []Bank) (Reference, error) {
	esd := append(append([]byte(nil), s.Owner[:]...), s.Data...)
	d, err := hashBytes(banks, VariableData(guid, name, esd))
	if err != nil {
		return Reference{}, err
	}
	component := name
	if subject := certificateSubject(s.Data); subject != "" {
		component = subject
	}
	return Reference{
		Kind:      KindVariableAuthority,
		PCR:       7,
		EventType: EventEFIVariableAuthority,
		Component: component,
		Event:     name,
		Digests:   d,
	}, nil
}

// SignatureList is an EFI_SIGNATURE_LIST.
type SignatureList struct {
	Type       GUID
	Signatures []SignatureData
}

// SignatureData is an EFI_SIGNATURE_DATA: the owner and the hash or
// certificate.
type SignatureData struct {
	Owner GUID
	Data  []byte
}

// ParseSignatureLists parses the concatenated EFI_SIGNATURE_LIST structures
// of a signature database variable (db, dbx, MokList).
func ParseSignatureLists(data []byte) ([]SignatureList, error) {
	var lists []SignatureList
	for pos := 0; pos < len(data); {
		if len(data)-pos < 28 {
			return nil, fmt.Errorf("signature list at offset %d: %d bytes left, a header needs 28", pos, len(data)-pos)
		}
		var l SignatureList
		copy(l.Type[:], data[pos:])
		listSize := int(binary.LittleEndian.Uint32(data[pos+16:]))
		headerSize := int(binary.LittleEndian.Uint32(data[pos+20:]))
		sigSize := int(binary.LittleEndian.Uint32(data[pos+24:]))
		if listSize < 28 || listSize > len(data)-pos {
			return nil, fmt.Errorf("signature list at offset %d: size %d does not fit the %d bytes left", pos, listSize, len(data)-pos)
		}
		body := listSize - 28
		if headerSize < 0 || headerSize > body || sigSize < 16 || (body-headerSize)%sigSize != 0 {
			return nil, fmt.Errorf("signature list at offset %d: header size %d and signature size %d do not divide the %d-byte body", pos, headerSize, sigSize, body)
		}
		for off := pos + 28 + headerSize; off < pos+listSize; off += sigSize {
			var s SignatureData
			copy(s.Owner[:], data[off:])
			s.Data = data[off+16 : off+sigSize]
			l.Signatures = append(l.Signatures, s)
		}
		lists = append(lists, l)
		pos += listSize
	}
	return lists, nil
}

// VariableNames returns the variables' names as "Name-GUID", sorted, for
// messages.
func (v Variables) VariableNames() []string {
	var out []string
	for k := range v {
		out = append(out, k.Name+"-"+k.GUID.String())
	}
	sort.Strings(out)
	return out
}
