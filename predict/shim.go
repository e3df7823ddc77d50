package predict

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"fmt"
)

// Shim is the data that shim builds into its binary and later measures: the
// vendor certificate and deny list from the .vendor_cert section and the
// SBAT revocation levels from the .sbatlevel section.
type Shim struct {
	// VendorCert is the DER certificate shim trusts for the next stage
	// (empty when shim was built with a vendor_db list instead).
	VendorCert []byte
	// VendorDB is a built-in EFI_SIGNATURE_LIST allow list, used in place
	// of VendorCert by some builds.
	VendorDB []byte
	// VendorDBX is the built-in deny list (EFI_SIGNATURE_LIST structures).
	VendorDBX []byte
	// SbatLevelPrevious and SbatLevelLatest are the SbatLevel variable
	// contents that shim applies by default and with SbatPolicy=latest.
	SbatLevelPrevious string
	SbatLevelLatest   string
}

// sbatLevelOriginal is the SbatLevel that shim 15.7 and later write when
// Secure Boot is disabled (SBAT_VAR_ORIGINAL in shim's sbat_var_defs.h).
const sbatLevelOriginal = "sbat,1,2021030218\n"

// maxShimSection bounds the .vendor_cert and .sbatlevel sections read.
const maxShimSection = 1 << 20

// ParseShim reads shim's built-in data from its PE image. It returns nil and
// no error when the image has no .vendor_cert section, i.e. is not shim.
func ParseShim(pe *PEFile) (*Shim, error) {
	sec := pe.Section(".vendor_cert")
	if sec == nil {
		return nil, nil
	}
	table, err := pe.ReadSection(sec, maxShimSection)
	if err != nil {
		return nil, err
	}
	if len(table) < 16 {
		return nil, fmt.Errorf("shim .vendor_cert section is %d bytes, shorter than its 16-byte header", len(table))
	}
	authSize := uint64(binary.LittleEndian.Uint32(table[0:]))
	deauthSize := uint64(binary.LittleEndian.Uint32(table[4:]))
	authOffset := uint64(binary.LittleEndian.Uint32(table[8:]))
	deauthOffset := uint64(binary.LittleEndian.Uint32(table[12:]))
	if authOffset+authSize > uint64(len(table)) || deauthOffset+deauthSize > uint64(len(table)) {
		return nil, fmt.Errorf("shim .vendor_cert section: entries (%d+%d, %d+%d) run past its %d bytes", authOffset, authSize, deauthOffset, deauthSize, len(table))
	}
	s := &Shim{VendorDBX: table[deauthOffset : deauthOffset+deauthSize]}
	auth := table[authOffset : authOffset+authSize]
	// A vendor_db build stores signature lists, but a vendor_cert build
	// stores one DER certificate, which starts with a SEQUENCE tag.
	if len(auth) > 0 && auth[0] == 0x30 {
		s.VendorCert = auth
	} else {
		s.VendorDB = auth
	}

	if sec := pe.Section(".sbatlevel"); sec != nil {
		levels, err := pe.ReadSection(sec, maxShimSection)
		if err != nil {
			return nil, err
		}
		if s.SbatLevelPrevious, s.SbatLevelLatest, err = parseSbatLevel(levels); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// parseSbatLevel reads the .sbatlevel section: a version (0), then the
// offsets of the "previous" and "latest" NUL-terminated policies, counted
// from the end of the version field.
func parseSbatLevel(b []byte) (previous, latest string, err error) {
	if len(b) < 12 {
		return "", "", fmt.Errorf("shim .sbatlevel section is %d bytes, shorter than its 12-byte header", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != 0 {
		return "", "", fmt.Errorf("shim .sbatlevel section version %d is not supported: this build reads version 0", v)
	}
	read := func(field int) (string, error) {
		off := uint64(binary.LittleEndian.Uint32(b[field:])) + 4
		if off >= uint64(len(b)) {
			return "", fmt.Errorf("shim .sbatlevel offset %d is past the section's %d bytes", off, len(b))
		}
		end := bytes.IndexByte(b[off:], 0)
		if end < 0 {
			return "", fmt.Errorf("shim .sbatlevel policy at offset %d has no terminating NUL", off)
		}
		return string(b[off : off+uint64(end)]), nil
	}
	if previous, err = read(4); err != nil {
		return "", "", err
	}
	if latest, err = read(8); err != nil {
		return "", "", err
	}
	return previous, latest, nil
}

// References predicts shim's own measurements:
//   - MokList, MokListX and MokListTrusted in PCR 14 (EV_IPL whose event text
//     is the name), for a machine with no enrolled MOKs unless mokVars
//     contains them,
//   - SbatLevel in PCR 7, one reference per policy shim may apply,
//   - the EV_EFI_VARIABLE_AUTHORITY event for the vendor certificate, which
//     shim logs as MokListRT when that certificate verifies the next stage.
func (s *Shim) References(mokVars Variables, banks []Bank) ([]Reference, error) {
	var refs []Reference
	add := func(kind Kind, pcr int, eventType, component, event, note string, data []byte) error {
		d, err := hashBytes(banks, data)
		if err != nil {
			return err
		}
		refs = append(refs, Reference{Kind: kind, PCR: pcr, EventType: eventType, Component: component, Event: event, Note: note, Digests: d})
		return nil
	}

	// MokList: the vendor certificate as a one-entry X.509 signature list
	// (or vendor_db as is), then the MokList variable. With neither, shim
	// measures a signature list holding one all-zero SHA-256 hash.
	mokList := append([]byte(nil), s.VendorDB...)
	if len(s.VendorCert) > 0 {
		mokList = signatureList(GUIDCertX509, GUIDShimLock, s.VendorCert)
	}
	if v, ok := mokVars.Get(GUIDShimLock, "MokList"); ok {
		mokList = append(mokList, v...)
	}
	if len(mokList) == 0 {
		mokList = signatureList(GUIDCertSHA256, GUIDShimLock, make([]byte, 32))
	}
	if err := add(KindShimVariable, 14, EventIPL, "MokList", "MokList", "", mokList); err != nil {
		return nil, err
	}

	mokListX := append([]byte(nil), s.VendorDBX...)
	if v, ok := mokVars.Get(GUIDShimLock, "MokListX"); ok {
		mokListX = append(mokListX, v...)
	}
	if len(mokListX) == 0 {
		mokListX = signatureList(GUIDCertSHA256, GUIDShimLock, make([]byte, 32))
	}
	if err := add(KindShimVariable, 14, EventIPL, "MokListX", "MokListX", "", mokListX); err != nil {
		return nil, err
	}

	// MokListTrusted is measured as its one-byte state. Shim 15.6 and later
	// log 1 unless the user ran mokutil --untrusted-mok.
	if err := add(KindShimVariable, 14, EventIPL, "MokListTrusted", "MokListTrusted", "default state", []byte{1}); err != nil {
		return nil, err
	}

	policies := []struct{ level, note string }{
		{s.SbatLevelPrevious, "SbatLevel shim applies with Secure Boot on (default policy)"},
		{s.SbatLevelLatest, "SbatLevel shim applies with SbatPolicy=latest"},
		{sbatLevelOriginal, "SbatLevel shim applies with Secure Boot off"},
	}
	seen := map[string]bool{}
	for _, p := range policies {
		if p.level == "" || seen[p.level] {
			continue
		}
		seen[p.level] = true
		err := add(KindShimVariable, 7, EventEFIVariableAuthority, "SbatLevel", "SbatLevel", p.note,
			VariableData(GUIDShimLock, "SbatLevel", []byte(p.level)))
		if err != nil {
			return nil, err
		}
	}

	if len(s.VendorCert) > 0 {
		ref, err := authorityReference(GUIDShimLock, "MokListRT", SignatureData{Owner: GUIDShimLock, Data: s.VendorCert}, banks)
		if err != nil {
			return nil, err
		}
		ref.Note = "shim's vendor certificate authorized the next stage"
		refs = append(refs, ref)
	}
	return refs, nil
}

// signatureList encodes one EFI_SIGNATURE_LIST with a single entry.
func signatureList(sigType, owner GUID, data []byte) []byte {
	out := make([]byte, 0, 28+16+len(data))
	out = append(out, sigType[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(28+16+len(data)))
	out = binary.LittleEndian.AppendUint32(out, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(16+len(data)))
	out = append(out, owner[:]...)
	return append(out, data...)
}

// certificateSubject returns a certificate's subject common name, or "" when
// der does not parse.
func certificateSubject(der []byte) string {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	if cert.Subject.CommonName != "" {
		return cert.Subject.CommonName
	}
	return cert.Subject.String()
}
