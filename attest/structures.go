package attest

import (
	"fmt"

	"github.com/vouch-attest/vouch/internal/tpmbytes"
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

// checkDone fails r when bytes follow the named structure.
func checkDone(r *tpmbytes.Reader, structure string) {
	if !r.Failed() && r.Remaining() != 0 {
		r.Failf("end of "+structure, "%d trailing bytes", r.Remaining())
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
	r := tpmbytes.NewReader(b)
	a.Magic = r.U32("magic")
	a.Type = r.U16("type")
	a.QualifiedSigner = r.TPM2B("qualifiedSigner", maxNameSize)
	a.ExtraData = r.TPM2B("extraData", maxDataSize)
	a.ClockInfo.Clock = r.U64("clockInfo.clock")
	a.ClockInfo.ResetCount = r.U32("clockInfo.resetCount")
	a.ClockInfo.RestartCount = r.U32("clockInfo.restartCount")
	safe := r.U8("clockInfo.safe")
	a.FirmwareVersion = r.U64("firmwareVersion")
	if r.Failed() {
		return fmt.Errorf("parsing TPMS_ATTEST: %w", r.Err)
	}
	if safe > 1 {
		return fmt.Errorf("parsing TPMS_ATTEST: clockInfo.safe is %d, want 0 or 1", safe)
	}
	a.ClockInfo.Safe = safe == 1
	if a.Type != tpmSTAttestQuote {
		return nil
	}

	q.PCRSelection = readPCRSelection(&r, "attested.quote.pcrSelect")
	q.PCRDigest = r.TPM2B("attested.quote.pcrDigest", maxDigestSize)
	checkDone(&r, "TPMS_QUOTE_INFO")
	if r.Failed() {
		return fmt.Errorf("parsing TPMS_ATTEST: %w", r.Err)
	}
	a.Quote = q
	return nil
}

// readPCRSelection reads the TPML_PCR_SELECTION of TPMS_QUOTE_INFO. Banks
// keep their wire order.
func readPCRSelection(r *tpmbytes.Reader, field string) Selection {
	count := r.U32(field)
	if r.Failed() {
		return nil
	}
	if count > maxBanks {
		r.Failf(field, "count of %d banks exceeds the maximum of %d", count, maxBanks)
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
		algs[i] = Algorithm(r.U16("attested.quote.pcrSelect.pcrSelections.hash"))
		size := int(r.U8("attested.quote.pcrSelect.pcrSelections.sizeofSelect"))
		if !r.Failed() && size > maxSelectSize {
			r.Failf(fmt.Sprintf("attested.quote.pcrSelect.pcrSelections[%d].sizeofSelect", i), "%d bytes exceed the maximum of %d", size, maxSelectSize)
		}
		bitmaps[i] = r.Bytes("attested.quote.pcrSelect.pcrSelections.pcrSelect", size)
		if r.Failed() {
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
