package eventlog

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// agileHeader builds a Spec ID event in the SHA-1 event layout.
func agileHeader(algs ...AlgorithmSize) []byte {
	var data []byte
	data = append(data, specIDSignature...)
	data = binary.LittleEndian.AppendUint32(data, 0) // platformClass
	data = append(data, 0, 2, 0, 2)                  // version 2.0, errata 0, uintnSize 2
	data = binary.LittleEndian.AppendUint32(data, uint32(len(algs)))
	for _, a := range algs {
		data = binary.LittleEndian.AppendUint16(data, uint16(a.Alg))
		data = binary.LittleEndian.AppendUint16(data, uint16(a.Size))
	}
	data = append(data, 0) // vendorInfoSize
	return sha1Event(0, EV_NO_ACTION, make([]byte, 20), data)
}

func sha1Event(pcr uint32, typ EventType, digest, data []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, pcr)
	b = binary.LittleEndian.AppendUint32(b, uint32(typ))
	b = append(b, digest...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

type agileDigest struct {
	alg    Algorithm
	digest []byte
}

func agileEvent(pcr uint32, typ EventType, data []byte, digests ...agileDigest) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, pcr)
	b = binary.LittleEndian.AppendUint32(b, uint32(typ))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(digests)))
	for _, d := range digests {
		b = binary.LittleEndian.AppendUint16(b, uint16(d.alg))
		b = append(b, d.digest...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func sha256Of(data []byte) agileDigest {
	s := sha256.Sum256(data)
	return agileDigest{SHA256, s[:]}
}

var sha256Only = AlgorithmSize{SHA256, 32}

func TestParseBadInput(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	good := append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, sep, sha256Of(sep))...)
	tests := []struct {
		name    string
		log     []byte
		event   int
		offset  int
		message string
	}{
		{"empty", nil, 0, 0, "shorter than one 32-byte event header"},
		{"truncated data", good[:len(good)-2], 1, 65, "event data size 4 (0x00000004) runs past the end"},
		{"truncated digest", good[:65+20], 1, 65, "truncated sha256 digest"},
		{"truncated sha1 event", append(sha1Event(0, EV_SEPARATOR, make([]byte, 20), sep), bytes.Repeat([]byte{1}, 30)...), 1, 36, "truncated event header"},
		{"huge size", append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, nil, sha256Of(nil))[:46]...), 0, 0, ""},
		{"negative-looking size", func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(b[len(b)-8:], 0x80000000)
			return b
		}(), 1, 65, "event data size 2147483648 (0x80000000) runs past the end"},
		{"unknown digest algorithm", append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, sep, agileDigest{0x0099, make([]byte, 32)})...), 1, 65, "algorithm 0x0099, which the Spec ID event does not list"},
		{"too many digests", append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, sep, sha256Of(sep), sha256Of(sep))...), 1, 65, "has 2 digests, expected 1 to the 1 algorithms"},
		{"no algorithms", agileHeader(), 0, 0, "numberOfAlgorithms is 0"},
		{"wrong digest size", agileHeader(AlgorithmSize{SHA256, 20}), 0, 0, "digest size of sha256 is 20, expected 32"},
		{"only unknown algorithms", agileHeader(AlgorithmSize{0x0099, 24}), 0, 0, "no hash algorithm this parser supports"},
		{"trailing garbage", append(append([]byte(nil), good...), 1, 2, 3), 2, 119, "truncated event header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "huge size" {
				b := append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, nil, sha256Of(nil))...)
				binary.LittleEndian.PutUint32(b[len(b)-4:], 0xFFFFFFFF)
				tt.log, tt.event, tt.offset, tt.message = b, 1, 65, "event data size 4294967295 (0xffffffff) runs past the end"
			}
			log, err := Parse(tt.log)
			if err == nil {
				t.Fatalf("Parse succeeded with %d events, want an error", len(log.Events))
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Event != tt.event || pe.Offset != tt.offset {
				t.Errorf("error at event %d offset %d, want event %d offset %d: %v", pe.Event, pe.Offset, tt.event, tt.offset, err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not contain %q", err, tt.message)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error does not wrap ErrMalformed")
			}
		})
	}
}

func TestParseUnknownAlgorithmSkipped(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	raw := append(agileHeader(AlgorithmSize{0x0099, 24}, sha256Only),
		agileEvent(7, EV_SEPARATOR, sep, agileDigest{0x0099, make([]byte, 24)}, sha256Of(sep))...)
	log, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Banks) != 1 || log.Banks[0] != SHA256 {
		t.Errorf("banks = %v, want [sha256]", log.Banks)
	}
	if d := log.Events[1].Digests; len(d) != 1 || d[0].Alg != SHA256 {
		t.Errorf("digests = %v, want the sha256 digest only", d)
	}
}

func TestParsePadding(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	good := append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, sep, sha256Of(sep))...)
	for _, pad := range []byte{0x00, 0xFF} {
		raw := append(append([]byte(nil), good...), bytes.Repeat([]byte{pad}, 1000)...)
		log, err := Parse(raw)
		if err != nil {
			t.Fatalf("padding 0x%02x: %v", pad, err)
		}
		if log.Padding != 1000 || len(log.Events) != 2 {
			t.Errorf("padding 0x%02x: %d events, padding %d, want 2 events and 1000", pad, len(log.Events), log.Padding)
		}
	}
	// Padding followed by anything else is not padding.
	raw := append(append(append([]byte(nil), good...), make([]byte, 40)...), 1)
	if _, err := Parse(raw); err == nil {
		t.Error("Parse accepted zeros followed by a non-zero byte")
	}
}

func TestParseZeroLengthData(t *testing.T) {
	raw := append(agileHeader(sha256Only), agileEvent(4, EV_EFI_BOOT_SERVICES_APPLICATION, nil, sha256Of([]byte("image")))...)
	log, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	e := log.Events[1]
	if len(e.Data) != 0 {
		t.Errorf("data = %x, want empty", e.Data)
	}
	if d := e.Decode(); d.Kind() != "opaque" {
		t.Errorf("decoded as %T, want *Opaque", d)
	}
}

func TestReplayRules(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	locality := append([]byte("StartupLocality\x00"), 3)
	raw := append(agileHeader(sha256Only), agileEvent(0, EV_NO_ACTION, locality, agileDigest{SHA256, make([]byte, 32)})...)
	raw = append(raw, agileEvent(0, EV_SEPARATOR, sep, sha256Of(sep))...)
	// A Windows-style trailer: never extended, whatever its index.
	raw = append(raw, agileEvent(0xFFFFFFFF, EV_NO_ACTION, []byte("WBCL"), sha256Of(nil))...)
	log, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	values, err := Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	start := make([]byte, 32)
	start[31] = 3
	want := append(start, sha256Of(sep).digest...)
	sum := sha256.Sum256(want)
	if got := values[SHA256][0]; !bytes.Equal(got, sum[:]) {
		t.Errorf("PCR 0 = %x, want %x (locality 3 start, then the separator)", got, sum)
	}
	if got := values[SHA256][17]; !bytes.Equal(got, bytes.Repeat([]byte{0xFF}, 32)) {
		t.Errorf("PCR 17 = %x, want its all-ones reset value", got)
	}

	bad := append(agileHeader(sha256Only), agileEvent(24, EV_SEPARATOR, sep, sha256Of(sep))...)
	log, err = Parse(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(log); !errors.Is(err, ErrBadPCRIndex) || !strings.Contains(err.Error(), "event 1 at byte offset 65") {
		t.Errorf("Replay error = %v, want ErrBadPCRIndex naming event 1", err)
	}
}

func TestCheckGRUBStrings(t *testing.T) {
	cmd := "linux /vmlinuz root=/dev/sda1"
	hash := func(s string) agileDigest { return sha256Of([]byte(s)) }
	tests := []struct {
		name   string
		data   string
		digest agileDigest
		ok     bool
	}{
		{"GRUB 2.06 with NUL", "grub_cmd: " + cmd + "\x00", hash(cmd), true},
		{"GRUB 2.06 without NUL", "grub_cmd: " + cmd, hash(cmd), true},
		{"kernel command line", "kernel_cmdline: root=/dev/sda1\x00", hash("root=/dev/sda1"), true},
		{"older patch, NUL hashed", "grub_cmd " + cmd + "\x00", hash(cmd + "\x00"), true},
		{"forged command", "grub_cmd: linux /evil\x00", hash(cmd), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := append(agileHeader(sha256Only), agileEvent(8, EV_IPL, []byte(tt.data), tt.digest)...)
			log, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			findings := Check(log)
			if tt.ok && len(findings) != 0 {
				t.Errorf("findings = %v, want none", findings)
			}
			if !tt.ok && (len(findings) != 1 || findings[0].Kind != FindingDigestMismatch || findings[0].Event != 1) {
				t.Errorf("findings = %v, want one digest mismatch on event 1", findings)
			}
		})
	}
}

func TestCheckForgedEventData(t *testing.T) {
	log := loadTestLog(t, "go-eventlog/rhel8-uefi.bin")
	want, err := Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	// Change the action text of event 13 without changing its digests,
	// as a forged log would: the PCRs still match, the data does not.
	e := &log.Events[13]
	forged := append([]byte(nil), e.Data...)
	forged[0] = 'X'
	e.Data = forged
	res, err := Verify(log, want, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(res.Findings) != 1 || res.Findings[0].Event != 13 || res.Findings[0].Kind != FindingDigestMismatch {
		t.Errorf("findings = %v, want a digest mismatch on event 13", res.Findings)
	}
}

func TestVerifyMismatchListsEvents(t *testing.T) {
	log := loadTestLog(t, "HIRS/TpmLog.bin")
	quoted, err := Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	quoted[SHA256][4] = make([]byte, 32)
	res, err := Verify(log, quoted, VerifyOptions{Workarounds: Workarounds()})
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Verify error = %v, want *MismatchError", err)
	}
	if got := mm.Mismatches[SHA256]; len(got) != 1 || got[0] != 4 {
		t.Errorf("mismatches = %v, want sha256 PCR 4", mm.Mismatches)
	}
	for _, p := range res.Banks[0].PCRs {
		if p.Index == 4 && len(p.Events) == 0 {
			t.Error("PCR 4 mismatch lists no events")
		}
	}
	if len(res.Workarounds) != 0 {
		t.Errorf("workarounds = %v, want none to apply", res.Workarounds)
	}
}

func TestVerifyRejectsBadQuotedValues(t *testing.T) {
	log := loadTestLog(t, "HIRS/TpmLog.bin")
	if _, err := Verify(log, PCRValues{SHA256: {0: make([]byte, 20)}}, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "quoted sha256 PCR 0 is 20 bytes") {
		t.Errorf("Verify error = %v, want a digest size error", err)
	}
	if _, err := Verify(log, PCRValues{SHA256: {24: make([]byte, 32)}}, VerifyOptions{}); err == nil {
		t.Error("Verify accepted PCR index 24")
	}
	if _, err := Verify(log, PCRValues{SHA1: {0: make([]byte, 20)}}, VerifyOptions{}); !errors.Is(err, ErrNoVerifiedBank) {
		t.Errorf("Verify of a bank the log lacks = %v, want ErrNoVerifiedBank", err)
	}
}

func TestParseAllocationBounded(t *testing.T) {
	// A small log that claims a 4 GiB event must not make Parse allocate
	// for the claim.
	b := append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, nil, sha256Of(nil))...)
	binary.LittleEndian.PutUint32(b[len(b)-4:], 0xFFFFFFFF)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 100; i++ {
		if _, err := Parse(b); err == nil {
			t.Fatal("Parse accepted the log")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 16<<10 {
		t.Errorf("Parse allocated %d bytes per call for a %d-byte log", per, len(b))
	}
}

func TestSHA1FormatDigest(t *testing.T) {
	data := []byte("Calling EFI Application from Boot Option")
	sum := sha1.Sum(data)
	raw := sha1Event(4, EV_EFI_ACTION, sum[:], data)
	log, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if log.Format != FormatSHA1 || len(Check(log)) != 0 {
		t.Errorf("format %s findings %v, want a clean SHA-1 log", log.Format, Check(log))
	}
}

func TestWorkaroundPreconditions(t *testing.T) {
	// windows-capped-sha1 needs another bank that matches strictly: with
	// the SHA-1 bank alone the capped values stay a mismatch.
	capped := loadTestLog(t, "guard-oss/evidence/t480s/t480s.eventlog0.bin")
	truth := loadTruth(t, "testdata/corpus/guard-oss/evidence/t480s/t480s.eventlog0.bin.expected_pcrs.json", []int{10})
	sha1Only := PCRValues{SHA1: truth[SHA1]}
	res, err := Verify(capped, sha1Only, VerifyOptions{Workarounds: Workarounds()})
	var mm *MismatchError
	if !errors.As(err, &mm) || len(res.Workarounds) != 0 {
		t.Errorf("SHA-1 only: error %v, workarounds %v; want a mismatch and no workaround", err, res.Workarounds)
	}

	// exit-boot-services-missing does not apply to a log that has the
	// ExitBootServices events.
	log := loadTestLog(t, "go-eventlog/rhel8-uefi.bin")
	quoted, err := Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	pcr5 := append([]byte(nil), quoted[SHA256][5]...)
	var value [64]byte
	v := value[:copy(value[:], pcr5)]
	var buf [64]byte
	extend(SHA256, v, digestOf(SHA256, &buf, []byte(ebsInvocation)))
	extend(SHA256, v, digestOf(SHA256, &buf, []byte(ebsReturned)))
	quoted = PCRValues{SHA256: {5: v}}
	res, err = Verify(log, quoted, VerifyOptions{Workarounds: []Workaround{WorkaroundExitBootServices}})
	if !errors.As(err, &mm) || len(res.Workarounds) != 0 {
		t.Errorf("log with ExitBootServices events: error %v, workarounds %v; want a mismatch and no workaround", err, res.Workarounds)
	}
}

func TestVerifyReplayError(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	raw := append(agileHeader(sha256Only), agileEvent(30, EV_SEPARATOR, sep, sha256Of(sep))...)
	log, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(log, PCRValues{SHA256: {0: make([]byte, 32)}}, VerifyOptions{})
	if res != nil || !errors.Is(err, ErrBadPCRIndex) {
		t.Errorf("Verify = %v, %v; want no result and ErrBadPCRIndex", res, err)
	}
}

func TestVerifyEventOutsideVerifiedBank(t *testing.T) {
	action := []byte("Calling EFI Application from Boot Option")
	sum1 := sha1.Sum(action)
	raw := append(agileHeader(AlgorithmSize{SHA1, 20}, sha256Only),
		agileEvent(4, EV_EFI_ACTION, action, agileDigest{SHA1, sum1[:]}, sha256Of(action))...)
	raw = append(raw, agileEvent(4, EV_EFI_ACTION, action, agileDigest{SHA1, sum1[:]})...)
	log, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	quoted, err := Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(log, quoted, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(res.Findings) != 1 || res.Findings[0].Event != 2 || res.Findings[0].Kind != FindingNotInBank || res.Findings[0].Bank != SHA256 {
		t.Errorf("findings = %v, want event 2 outside the sha256 bank", res.Findings)
	}
}

// TestCheckSeparators covers the precomputed separator digests: each
// known separator value is accepted with its own digest and reported with
// the digest of another value, in both banks that have a table and in one
// that does not.
func TestCheckSeparators(t *testing.T) {
	banks := []AlgorithmSize{{SHA1, 20}, sha256Only, {SHA384, 48}}
	digest := func(data []byte) []agileDigest {
		var out []agileDigest
		var buf [64]byte
		for _, b := range banks {
			out = append(out, agileDigest{b.Alg, append([]byte(nil), digestOf(b.Alg, &buf, data)...)})
		}
		return out
	}
	values := append(separatorValues[:], [4]byte{2, 0, 0, 0})
	for i, v := range values {
		other := values[(i+1)%len(values)]
		raw := agileHeader(banks...)
		raw = append(raw, agileEvent(7, EV_SEPARATOR, v[:], digest(v[:])...)...)
		raw = append(raw, agileEvent(7, EV_SEPARATOR, v[:], digest(other[:])...)...)
		log, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range Check(log) {
			got = append(got, fmt.Sprintf("%d/%s", f.Event, f.Bank))
		}
		want := []string{"2/sha1", "2/sha256", "2/sha384"}
		if !slices.Equal(got, want) {
			t.Errorf("separator %x: findings %v, want %v", v, got, want)
		}
	}
}

// TestParseDamagedSpecIDHint checks that a crypto-agile log whose header
// signature was damaged fails with an error that names the signature.
func TestParseDamagedSpecIDHint(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	raw := append(agileHeader(sha256Only), agileEvent(7, EV_SEPARATOR, sep, sha256Of(sep))...)
	i := bytes.Index(raw, []byte("Spec ID Event03"))
	raw[i+len("Spec ID Event0")] = '2'

	_, err := Parse(raw)
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("Parse error %v, want a *ParseError", err)
	}
	if !strings.Contains(err.Error(), `signature "Spec ID Event02", not "Spec ID Event03"`) {
		t.Errorf("error %q does not name the damaged signature", err)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("error %q does not wrap ErrMalformed", err)
	}
}

// TestVerifyChecksDataInCoveringBank covers a quote that selects other
// PCRs in each bank: SHA-1 covers PCR 4, SHA-256 only PCR 23. The event's
// SHA-256 digest fits its data but is not authenticated, because no quoted
// SHA-256 PCR holds it, so the data must be checked against the SHA-1
// digest, which does not fit.
func TestVerifyChecksDataInCoveringBank(t *testing.T) {
	shown, measured := []byte("Calling EFI Application from Boot Option"), []byte("something else")
	s1 := sha1.Sum(measured)
	raw := append(agileHeader(AlgorithmSize{SHA1, 20}, sha256Only),
		agileEvent(4, EV_EFI_ACTION, shown, agileDigest{SHA1, s1[:]}, sha256Of(shown))...)
	log, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	quoted := PCRValues{
		SHA1:   {4: replayed[SHA1][4]},
		SHA256: {23: replayed[SHA256][23]},
	}

	res, err := Verify(log, quoted, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(res.Findings) != 1 || res.Findings[0].Event != 1 || res.Findings[0].Bank != SHA1 || res.Findings[0].Kind != FindingDigestMismatch {
		t.Errorf("findings = %v, want a SHA-1 digest mismatch on event 1", res.Findings)
	}
}
