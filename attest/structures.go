package attest

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// TPM constants used by the parsers (TPM 2.0 Part 2).
const (
	// tpmGeneratedValue is TPM_GENERATED_VALUE (section 6.2): the TPM puts
	// it at the start of every structure it signs from its own data.
	tpmGeneratedValue uint32 = 0xff544347

	tpmSTAttestNV         uint16 = 0x8014
	tpmSTAttestCommandAud uint16 = 0x8015
	tpmSTAttestSessionAud uint16 = 0x8016
	tpmSTAttestCertify    uint16 = 0x8017
	tpmSTAttestQuote      uint16 = 0x8018
	tpmSTAttestTime       uint16 = 0x8019
	tpmSTAttestCreation   uint16 = 0x801A
	tpmSTAttestNVDigest   uint16 = 0x801C

	// Maximum sizes of the TPM2B fields of TPMS_ATTEST: TPM2B_NAME and
	// TPM2B_DATA hold at most a TPMT_HA (a hash algorithm and a digest of
	// up to 64 bytes, SHA-512), and TPM2B_DIGEST at most one digest.
	maxNameSize   = 2 + 64
	maxDataSize   = 2 + 64
	maxDigestSize = 64
	// maxBanks bounds TPML_PCR_SELECTION.count (HASH_COUNT on any TPM we
	// know of is at most 5; 16 leaves room).
	maxBanks = 16
	// maxSelectSize bounds sizeofSelect: 4 bytes select 32 PCRs.
	maxSelectSize = 4
)

func attestTypeName(t uint16) string {
	switch t {
	case tpmSTAttestNV:
		return "TPM_ST_ATTEST_NV (NV certify)"
	case tpmSTAttestCommandAud:
		return "TPM_ST_ATTEST_COMMAND_AUDIT"
	case tpmSTAttestSessionAud:
		return "TPM_ST_ATTEST_SESSION_AUDIT"
	case tpmSTAttestCertify:
		return "TPM_ST_ATTEST_CERTIFY"
	case tpmSTAttestQuote:
		return "TPM_ST_ATTEST_QUOTE"
	case tpmSTAttestTime:
		return "TPM_ST_ATTEST_TIME"
	case tpmSTAttestCreation:
		return "TPM_ST_ATTEST_CREATION"
	case tpmSTAttestNVDigest:
		return "TPM_ST_ATTEST_NV_DIGEST"
	}
	return fmt.Sprintf("0x%04x", t)
}

// ClockInfo is TPMS_CLOCK_INFO: the TPM's clock when it signed.
type ClockInfo struct {
	// Clock counts milliseconds the TPM has been powered; it advances
	// monotonically except across an unorderly shutdown.
	Clock uint64 `json:"clock"`
	// ResetCount counts TPM resets (reboots) since the last TPM2_Clear.
	ResetCount uint32 `json:"reset_count"`
	// RestartCount counts TPM restarts and resumes since the last reset.
	RestartCount uint32 `json:"restart_count"`
	// Safe is true when Clock has not been reported lower since it was
	// last advanced.
	Safe bool `json:"safe"`
}

// AttestationData is a parsed TPMS_ATTEST (TPM 2.0 Part 2, section
// 10.12.12). Parsing does not verify anything: every field is untrusted
// until the signature over the raw bytes has been checked.
type AttestationData struct {
	Magic           uint32
	Type            uint16
	QualifiedSigner []byte
	ExtraData       []byte
	ClockInfo       ClockInfo
	FirmwareVersion uint64
	// Quote holds TPMS_QUOTE_INFO when Type is TPM_ST_ATTEST_QUOTE.
	Quote *QuoteInfo
}

// QuoteInfo is TPMS_QUOTE_INFO: the PCR selection and the digest of the
// selected PCR values, in selection order.
type QuoteInfo struct {
	PCRSelection Selection
	PCRDigest    []byte
}

var errShort = errors.New("unexpected end of data")

// reader decodes big-endian TPM wire data and records the first error.
type reader struct {
	buf []byte
	off int
	err error
}

func (r *reader) fail(field string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%s at offset %d: %w", field, r.off, err)
	}
}

func (r *reader) bytes(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.buf)-r.off < n {
		r.fail(field, errShort)
		return nil
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8(field string) uint8 {
	b := r.bytes(field, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16(field string) uint16 {
	b := r.bytes(field, 2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *reader) u32(field string) uint32 {
	b := r.bytes(field, 4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) u64(field string) uint64 {
	b := r.bytes(field, 8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// tpm2b reads a TPM2B: a 16-bit size and that many bytes, at most max.
func (r *reader) tpm2b(field string, max int) []byte {
	size := int(r.u16(field))
	if r.err != nil {
		return nil
	}
	if size > max {
		r.fail(field, fmt.Errorf("size %d exceeds the maximum of %d", size, max))
		return nil
	}
	return r.bytes(field, size)
}

func (r *reader) done(what string) {
	if r.err == nil && r.off != len(r.buf) {
		r.err = fmt.Errorf("%d trailing bytes after %s at offset %d", len(r.buf)-r.off, what, r.off)
	}
}

// ParseAttestationData parses TPMS_ATTEST bytes as a TPM produced them. It
// checks only the encoding (sizes, bounds, no trailing bytes); the members
// of TPMU_ATTEST other than TPMS_QUOTE_INFO are not decoded.
func ParseAttestationData(b []byte) (*AttestationData, error) {
	a := &AttestationData{}
	q := &QuoteInfo{}
	if err := parseAttestationData(b, a, q); err != nil {
		return nil, err
	}
	return a, nil
}

// parseAttestationData is ParseAttestationData into structures the caller
// provides (on its stack, for VerifyQuote); q becomes a.Quote for a quote.
func parseAttestationData(b []byte, a *AttestationData, q *QuoteInfo) error {
	r := reader{buf: b}
	a.Magic = r.u32("magic")
	a.Type = r.u16("type")
	a.QualifiedSigner = r.tpm2b("qualifiedSigner", maxNameSize)
	a.ExtraData = r.tpm2b("extraData", maxDataSize)
	a.ClockInfo.Clock = r.u64("clockInfo.clock")
	a.ClockInfo.ResetCount = r.u32("clockInfo.resetCount")
	a.ClockInfo.RestartCount = r.u32("clockInfo.restartCount")
	safe := r.u8("clockInfo.safe")
	a.FirmwareVersion = r.u64("firmwareVersion")
	if r.err != nil {
		return fmt.Errorf("parsing TPMS_ATTEST: %w", r.err)
	}
	if safe > 1 {
		return fmt.Errorf("parsing TPMS_ATTEST: clockInfo.safe is %d, want 0 or 1", safe)
	}
	a.ClockInfo.Safe = safe == 1
	if a.Type != tpmSTAttestQuote {
		return nil
	}

	q.PCRSelection = r.pcrSelection("attested.quote.pcrSelect")
	q.PCRDigest = r.tpm2b("attested.quote.pcrDigest", maxDigestSize)
	r.done("TPMS_QUOTE_INFO")
	if r.err != nil {
		return fmt.Errorf("parsing TPMS_ATTEST: %w", r.err)
	}
	a.Quote = q
	return nil
}

// pcrSelection reads the TPML_PCR_SELECTION of TPMS_QUOTE_INFO. Banks
// keep their wire order.
func (r *reader) pcrSelection(field string) Selection {
	count := r.u32(field)
	if r.err != nil {
		return nil
	}
	if count > maxBanks {
		r.fail(field, fmt.Errorf("count of %d banks exceeds the maximum of %d", count, maxBanks))
		return nil
	}
	// Read the bitmaps first, then decode every bank's PCRs into one
	// backing array: two allocations whatever the number of banks.
	var bitmaps [maxBanks][]byte
	algs := [maxBanks]Algorithm{}
	total := 0
	for i := range int(count) {
		// The field names are constants so a successful parse does not
		// build strings.
		algs[i] = Algorithm(r.u16("attested.quote.pcrSelect.pcrSelections.hash"))
		size := int(r.u8("attested.quote.pcrSelect.pcrSelections.sizeofSelect"))
		if r.err == nil && size > maxSelectSize {
			r.fail(fmt.Sprintf("attested.quote.pcrSelect.pcrSelections[%d].sizeofSelect", i), fmt.Errorf("%d bytes exceed the maximum of %d", size, maxSelectSize))
		}
		bitmaps[i] = r.bytes("attested.quote.pcrSelect.pcrSelections.pcrSelect", size)
		if r.err != nil {
			return nil
		}
		total += bitmapCount(bitmaps[i])
	}
	sel := make(Selection, count)
	slab := make([]int, 0, total)
	for i := range sel {
		start := len(slab)
		slab = appendBitmapPCRs(slab, bitmaps[i])
		sel[i] = BankSelection{Hash: algs[i], PCRs: slab[start:len(slab):len(slab)]}
	}
	return sel
}
