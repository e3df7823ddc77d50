package eventlog

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// EventData is the typed view of an event's data. The concrete types are
// *SpecIDEvent, *StartupLocality, *NoAction, *Separator, *Action, *IPL,
// *EFIVariable, *ImageLoad, *GPT, *SCRTMVersion, *FirmwareBlob,
// *HandoffTables, *HCRTM, *Text and *Opaque.
type EventData interface {
	// Kind names the concrete type ("efi_variable") for JSON and tables.
	Kind() string
}

// Opaque is event data this package does not decode: an event type it
// does not know, or data that does not match its type's structure. Reason
// gives the cause, and is empty for types that are never decoded.
type Opaque struct {
	Reason string `json:"reason,omitempty"`
}

// StartupLocality is the EV_NO_ACTION event that records the locality of
// TPM2_Startup, which becomes the initial value of PCR 0 (PFP section
// 10.4.5.3).
type StartupLocality struct {
	Locality uint8 `json:"locality"`
}

// NoAction is any other EV_NO_ACTION event, identified by the signature at
// the start of its data ("SP800-155 Event3", or a Windows SIPA record).
type NoAction struct {
	Signature string `json:"signature,omitempty"`
}

// Separator is an EV_SEPARATOR event. Firmware writes 0, or 0xFFFFFFFF
// (0x00000001 in TPM 1.2 logs) to signal an error; SeaBIOS writes
// 0xFFFFFFFF. Windows writes "WBCL" (0x4C434257) in PCRs 12 to 14.
type Separator struct {
	Value uint32 `json:"value"`
	Error bool   `json:"error"`
}

// Action is the ASCII string of an EV_ACTION or EV_EFI_ACTION event.
type Action struct {
	Text string `json:"text"`
}

// IPL is an EV_IPL string. GRUB logs ASCII commands in PCR 8 and file
// paths in PCR 9 (with or without a trailing NUL), systemd-stub and
// systemd-boot log UTF-16 strings in PCRs 8 and 11 to 13.
type IPL struct {
	Text string `json:"text"`
	// UTF16 is true when the data was UTF-16LE.
	UTF16 bool `json:"utf16,omitempty"`
	// TrailingNUL is true when the data ends with a NUL character, which
	// Text leaves out.
	TrailingNUL bool `json:"trailing_nul,omitempty"`
}

// Text is a string event that is neither an action nor an IPL string:
// EV_POST_CODE descriptions, EV_S_CRTM_CONTENTS text, EV_COMPACT_HASH and
// EV_OMIT_BOOT_DEVICE_EVENTS.
type Text struct {
	Text string `json:"text"`
}

// HCRTM is an EV_EFI_HCRTM_EVENT: the H-CRTM measured the first firmware
// code before the CPU ran it, and PCR 0 started at locality 4.
type HCRTM struct {
	Text string `json:"text"`
}

// SCRTMVersion is an EV_S_CRTM_VERSION event: a UTF-16 string on most
// platforms, a GUID on some.
type SCRTMVersion struct {
	Version string `json:"version"`
	GUID    *GUID  `json:"guid,omitempty"`
}

// FirmwareBlob is an EV_EFI_PLATFORM_FIRMWARE_BLOB(2) event, or an
// EV_POST_CODE or EV_S_CRTM_CONTENTS event that carries the same base and
// length pair.
type FirmwareBlob struct {
	Description string `json:"description,omitempty"`
	Base        uint64 `json:"base"`
	Length      uint64 `json:"length"`
}

// HandoffTables is an EV_EFI_HANDOFF_TABLES(2) event.
type HandoffTables struct {
	Description string         `json:"description,omitempty"`
	Tables      []HandoffTable `json:"tables"`
}

// HandoffTable is one UEFI configuration table the firmware measured.
type HandoffTable struct {
	VendorGUID GUID   `json:"vendor_guid"`
	Address    uint64 `json:"address"`
}

// GPT is an EV_EFI_GPT_EVENT(2): the GPT header and the partition entries
// in use.
type GPT struct {
	DiskGUID   GUID           `json:"disk_guid"`
	Header     []byte         `json:"-"`
	Partitions []GPTPartition `json:"partitions"`
}

// GPTPartition is one GPT partition entry.
type GPTPartition struct {
	TypeGUID   GUID   `json:"type_guid"`
	UniqueGUID GUID   `json:"unique_guid"`
	FirstLBA   uint64 `json:"first_lba"`
	LastLBA    uint64 `json:"last_lba"`
	Attributes uint64 `json:"attributes"`
	Name       string `json:"name"`
}

// ImageLoad is the UEFI_IMAGE_LOAD_EVENT of EV_EFI_BOOT_SERVICES_APPLICATION,
// EV_EFI_BOOT_SERVICES_DRIVER and EV_EFI_RUNTIME_SERVICES_DRIVER events.
type ImageLoad struct {
	LocationInMemory uint64     `json:"location"`
	LengthInMemory   uint64     `json:"length"`
	LinkTimeAddress  uint64     `json:"link_time_address"`
	DevicePath       DevicePath `json:"device_path"`
}

func (*Opaque) Kind() string          { return "opaque" }
func (*SpecIDEvent) Kind() string     { return "spec_id" }
func (*StartupLocality) Kind() string { return "startup_locality" }
func (*NoAction) Kind() string        { return "no_action" }
func (*Separator) Kind() string       { return "separator" }
func (*Action) Kind() string          { return "action" }
func (*IPL) Kind() string             { return "ipl" }
func (*Text) Kind() string            { return "text" }
func (*HCRTM) Kind() string           { return "hcrtm" }
func (*SCRTMVersion) Kind() string    { return "scrtm_version" }
func (*FirmwareBlob) Kind() string    { return "firmware_blob" }
func (*HandoffTables) Kind() string   { return "handoff_tables" }
func (*GPT) Kind() string             { return "gpt" }
func (*ImageLoad) Kind() string       { return "image_load" }

// HexBytes is a byte string that encodes as hex in JSON and text.
type HexBytes []byte

// MarshalText encodes the bytes as lowercase hex.
func (b HexBytes) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out, nil
}

// GUID is an EFI_GUID in its in-memory byte order (the first three fields
// little-endian).
type GUID [16]byte

// String formats the GUID in the registry format
// "8be4df61-93ca-11d2-aa0d-00e098032b8c".
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

// MarshalText encodes the GUID in registry format.
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// MustParseGUID parses a registry-format GUID and panics on error. It is
// meant for package-level constants.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// ParseGUID parses a registry-format GUID.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("invalid GUID %q: expected the form 8be4df61-93ca-11d2-aa0d-00e098032b8c", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	if err != nil {
		return g, fmt.Errorf("invalid GUID %q: %w", s, err)
	}
	binary.LittleEndian.PutUint32(g[0:], binary.BigEndian.Uint32(b[0:]))
	binary.LittleEndian.PutUint16(g[4:], binary.BigEndian.Uint16(b[4:]))
	binary.LittleEndian.PutUint16(g[6:], binary.BigEndian.Uint16(b[6:]))
	copy(g[8:], b[8:])
	return g, nil
}

// slab hands out pointers into one preallocated array, so decoding a log
// allocates once per type rather than once per event. Past its capacity
// it falls back to new.
type slab[T any] struct{ items []T }

func (s *slab[T]) put(v T) *T {
	if len(s.items) < cap(s.items) {
		s.items = append(s.items, v)
		return &s.items[len(s.items)-1]
	}
	p := new(T)
	*p = v
	return p
}

func (s *slab[T]) reserve(n int) { s.items = make([]T, 0, n) }

// decoder holds the slabs for the most frequent event data types, and
// the bytes of the most frequent strings in one buffer.
type decoder struct {
	// text holds the bytes of decoded strings. Strings point into it
	// (see str): bytes once appended are never written again, and when an
	// append moves the buffer the strings keep the old array alive.
	text []byte

	opaque     slab[Opaque]
	separators slab[Separator]
	actions    slab[Action]
	ipls       slab[IPL]
	variables  slab[EFIVariable]
	images     slab[ImageLoad]
	blobs      slab[FirmwareBlob]
}

// decodeSizes counts events by the slab their data decodes into, and
// bounds the text the decoder stores, so each slab takes one allocation.
type decodeSizes struct {
	seps, actions, ipls, vars, images, blobs, other, text int
}

// count adds one event. Parse calls it as it reads each event, so sizing
// the slabs takes no pass of its own.
func (s *decodeSizes) count(t EventType, d []byte) {
	switch t {
	case EV_SEPARATOR:
		s.seps++
	case EV_ACTION, EV_EFI_ACTION:
		s.actions++
		s.text += len(d)
	case EV_IPL:
		s.ipls++
		s.text += len(d)
	case EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_BOOT2, EV_EFI_VARIABLE_AUTHORITY:
		s.vars++
		if len(d) >= 32 {
			// The UTF-8 name is at most as long as its UTF-16 form,
			// and the event data bounds both.
			s.text += int(min(binary.LittleEndian.Uint64(d[16:]), uint64(len(d))))
		}
	case EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER:
		s.images++
	case EV_EFI_PLATFORM_FIRMWARE_BLOB, EV_EFI_PLATFORM_FIRMWARE_BLOB2, EV_POST_CODE:
		s.blobs++
	default:
		s.other++
	}
}

// newDecoder sizes the slabs for the counted events.
func newDecoder(s *decodeSizes) *decoder {
	dc := &decoder{text: make([]byte, 0, s.text)}
	dc.opaque.reserve(s.other)
	dc.separators.reserve(s.seps)
	dc.actions.reserve(s.actions)
	dc.ipls.reserve(s.ipls)
	dc.variables.reserve(s.vars)
	dc.images.reserve(s.images)
	dc.blobs.reserve(s.blobs)
	return dc
}

// str returns the bytes appended to dc.text since start as a string
// that shares the buffer. The bytes are never modified afterwards: text
// only grows by append, which writes past the current length.
func (dc *decoder) str(start int) string {
	b := dc.text[start:]
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// ascii returns asciiString(d), stored in the decoder's buffer.
func (dc *decoder) ascii(d []byte) string {
	start := len(dc.text)
	dc.text = appendASCII(dc.text, d)
	return dc.str(start)
}

// utf16 returns the decoded UTF-16 string, stored in the decoder's buffer,
// and whether d ends with a NUL.
func (dc *decoder) utf16(d []byte) (string, bool) {
	start := len(dc.text)
	var nul bool
	dc.text, nul = appendUTF16(dc.text, d)
	return dc.str(start), nul
}

// Decode returns the typed view of the event's data (see the EventData
// types), or an *Opaque when the type is not decoded or its data is
// malformed. It decodes anew on each call; Log.DecodeAll decodes a whole
// log with fewer allocations.
func (e *Event) Decode() EventData {
	var dc decoder
	return dc.decode(e)
}

// DecodeAll returns the typed view of every event's data, in log order
// (see Event.Decode).
func (l *Log) DecodeAll() []EventData {
	var sizes decodeSizes
	for i := range l.Events {
		sizes.count(l.Events[i].Type, l.Events[i].Data)
	}
	dc := newDecoder(&sizes)
	out := make([]EventData, len(l.Events))
	for i := range l.Events {
		if i == 0 && l.SpecID != nil {
			out[0] = l.SpecID // decoded by Parse
			continue
		}
		out[i] = dc.decode(&l.Events[i])
	}
	return out
}

// decode returns the typed view of an event's data. It never fails: data
// that does not fit its type's structure becomes an *Opaque with a reason.
func (dc *decoder) decode(e *Event) EventData {
	if reason := malformed(e); reason != "" {
		return &Opaque{Reason: reason}
	}
	d := e.Data
	switch e.Type {
	case EV_NO_ACTION:
		return decodeNoAction(e)
	case EV_SEPARATOR:
		v := binary.LittleEndian.Uint32(d)
		return dc.separators.put(Separator{Value: v, Error: v == 0xFFFFFFFF || v == 1})
	case EV_ACTION, EV_EFI_ACTION:
		return dc.actions.put(Action{Text: dc.ascii(d)})
	case EV_IPL:
		return dc.decodeIPL(d)
	case EV_S_CRTM_VERSION:
		return decodeSCRTMVersion(d)
	case EV_POST_CODE, EV_S_CRTM_CONTENTS:
		if len(d) == 16 && !isPrintable(d) {
			return dc.blobs.put(FirmwareBlob{Base: binary.LittleEndian.Uint64(d), Length: binary.LittleEndian.Uint64(d[8:])})
		}
		return &Text{Text: asciiString(d)}
	case EV_COMPACT_HASH, EV_OMIT_BOOT_DEVICE_EVENTS:
		if isPrintable(bytes.TrimRight(d, "\x00")) {
			return &Text{Text: asciiString(d)}
		}
	case EV_EFI_HCRTM_EVENT:
		return &HCRTM{Text: asciiString(d)}
	case EV_EFI_PLATFORM_FIRMWARE_BLOB:
		return dc.blobs.put(FirmwareBlob{Base: binary.LittleEndian.Uint64(d), Length: binary.LittleEndian.Uint64(d[8:])})
	case EV_EFI_PLATFORM_FIRMWARE_BLOB2:
		n, _ := blob2Layout(d)
		return dc.blobs.put(FirmwareBlob{Description: asciiString(d[1 : 1+n]), Base: binary.LittleEndian.Uint64(d[1+n:]), Length: binary.LittleEndian.Uint64(d[9+n:])})
	case EV_EFI_HANDOFF_TABLES:
		return decodeHandoff(d, false)
	case EV_EFI_HANDOFF_TABLES2:
		return decodeHandoff(d, true)
	case EV_EFI_GPT_EVENT, EV_EFI_GPT_EVENT2:
		return decodeGPT(d)
	case EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER:
		return dc.decodeImageLoad(d)
	case EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_BOOT2, EV_EFI_VARIABLE_AUTHORITY:
		v, _ := parseVariable(d)
		v.Name, _ = dc.utf16(d[32 : 32+2*binary.LittleEndian.Uint64(d[16:])])
		p := dc.variables.put(v)
		p.interpret(e.Type)
		return p
	}
	return dc.opaque.put(Opaque{})
}

func decodeNoAction(e *Event) EventData {
	d := e.Data
	if e.Number == 0 && bytes.HasPrefix(d, []byte(specIDSignature)) {
		if s, err := parseSpecID(d); err == nil {
			return s
		}
	}
	if l, ok := startupLocality(e); ok {
		return &StartupLocality{Locality: l}
	}
	sig := d
	if i := bytes.IndexByte(sig, 0); i >= 0 {
		sig = sig[:i]
	}
	// TCG signatures such as "SP800-155 Event3" are 16 bytes.
	if len(sig) > 16 {
		sig = sig[:16]
	}
	if len(sig) > 0 && isPrintable(sig) {
		return &NoAction{Signature: string(sig)}
	}
	return &NoAction{}
}

func (dc *decoder) decodeIPL(d []byte) EventData {
	utf16, n, nul := iplForm(d)
	if utf16 {
		text, _ := dc.utf16(d[:n])
		return dc.ipls.put(IPL{Text: text, UTF16: true, TrailingNUL: nul})
	}
	return dc.ipls.put(IPL{Text: dc.ascii(d), TrailingNUL: nul})
}

func decodeSCRTMVersion(d []byte) EventData {
	if len(d) == 16 && !isUTF16(d) && !isPrintable(d) {
		var g GUID
		copy(g[:], d)
		return &SCRTMVersion{Version: g.String(), GUID: &g}
	}
	if isUTF16(d) {
		s, _ := utf16String(d)
		return &SCRTMVersion{Version: s}
	}
	return &SCRTMVersion{Version: asciiString(d)}
}

// decodeHandoff decodes data that passed handoffLayout.
func decodeHandoff(d []byte, withDescription bool) EventData {
	desc, tables, _ := handoffLayout(d, withDescription)
	h := &HandoffTables{Tables: make([]HandoffTable, len(tables)/24)}
	if withDescription {
		h.Description = asciiString(desc)
	}
	for i := range h.Tables {
		e := tables[24*i:]
		copy(h.Tables[i].VendorGUID[:], e[:16])
		h.Tables[i].Address = binary.LittleEndian.Uint64(e[16:])
	}
	return h
}

// decodeGPT decodes data that passed gptLayout.
func decodeGPT(d []byte) EventData {
	entrySize, n, _ := gptLayout(d)
	rest := d[gptHeaderSize+8:]
	g := &GPT{Header: d[:gptHeaderSize:gptHeaderSize], Partitions: make([]GPTPartition, n)}
	copy(g.DiskGUID[:], d[56:72])
	for i := range g.Partitions {
		e := rest[uint64(i)*uint64(entrySize):]
		p := &g.Partitions[i]
		copy(p.TypeGUID[:], e[0:16])
		copy(p.UniqueGUID[:], e[16:32])
		p.FirstLBA = binary.LittleEndian.Uint64(e[32:])
		p.LastLBA = binary.LittleEndian.Uint64(e[40:])
		p.Attributes = binary.LittleEndian.Uint64(e[48:])
		p.Name, _ = utf16String(e[56:128])
	}
	return g
}

// decodeImageLoad decodes data that passed imageLoadLayout.
func (dc *decoder) decodeImageLoad(d []byte) EventData {
	n, _ := imageLoadLayout(d)
	return dc.images.put(ImageLoad{
		LocationInMemory: binary.LittleEndian.Uint64(d),
		LengthInMemory:   binary.LittleEndian.Uint64(d[8:]),
		LinkTimeAddress:  binary.LittleEndian.Uint64(d[16:]),
		DevicePath:       DevicePath(d[32 : 32+n : 32+n]),
	})
}

// asciiString returns d without trailing NULs, with bytes that are not
// printable ASCII replaced by escapes so the result is safe to print.
func asciiString(d []byte) string {
	d = bytes.TrimRight(d, "\x00")
	if isPrintable(d) {
		return string(d)
	}
	var b []byte
	for _, c := range d {
		if c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r' {
			b = append(b, c)
		} else {
			b = fmt.Appendf(b, "\\x%02x", c)
		}
	}
	return string(b)
}

// appendASCII appends asciiString(d) to dst.
func appendASCII(dst, d []byte) []byte {
	d = bytes.TrimRight(d, "\x00")
	if isPrintable(d) {
		return append(dst, d...)
	}
	for _, c := range d {
		if c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r' {
			dst = append(dst, c)
		} else {
			dst = fmt.Appendf(dst, "\\x%02x", c)
		}
	}
	return dst
}

func isPrintable(d []byte) bool {
	for _, c := range d {
		if !printable[c] {
			return false
		}
	}
	return true
}

// printable marks the bytes isPrintable accepts: printable ASCII, tab,
// newline and carriage return.
var printable = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	t['\t'], t['\n'], t['\r'] = true, true, true
	return t
}()

// isUTF16 reports whether d looks like UTF-16LE text: an even length of at
// least 2 and every high byte of a code unit below 0x80 zero (ASCII
// range), which is how firmware and systemd write these strings.
func isUTF16(d []byte) bool {
	if len(d) < 2 || len(d)%2 != 0 {
		return false
	}
	for i := 0; i < len(d); i += 2 {
		if d[i+1] != 0 || (d[i] != 0 && (d[i] < 0x20 || d[i] >= 0x7f) && d[i] != '\t' && d[i] != '\n') {
			return false
		}
	}
	return d[0] != 0 || len(d) == 2
}

// utf16String decodes UTF-16LE up to the first NUL and reports whether d
// ends with a NUL code unit.
func utf16String(d []byte) (string, bool) {
	b, nul := appendUTF16(nil, d)
	return string(b), nul
}

// appendUTF16 appends the UTF-8 form of the UTF-16LE string d, up to its
// first NUL, to dst, and reports whether d ends with a NUL code unit.
func appendUTF16(dst, d []byte) ([]byte, bool) {
	n := len(d) / 2
	nul := n > 0 && d[2*n-2] == 0 && d[2*n-1] == 0
	for i := 0; i < n; i++ {
		u := binary.LittleEndian.Uint16(d[2*i:])
		switch {
		case u == 0:
			return dst, nul
		case u < 0x80:
			dst = append(dst, byte(u))
		case utf16.IsSurrogate(rune(u)) && i+1 < n:
			r := utf16.DecodeRune(rune(u), rune(binary.LittleEndian.Uint16(d[2*i+2:])))
			if r != utf8.RuneError {
				i++
			}
			dst = utf8.AppendRune(dst, r)
		default:
			dst = utf8.AppendRune(dst, rune(u))
		}
	}
	return dst, nul
}
