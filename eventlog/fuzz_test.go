package eventlog

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// addCorpusSeeds adds the copied corpus logs of one format as fuzz seeds.
func addCorpusSeeds(f *testing.F, format Format) {
	dir := filepath.Join("testdata", "corpus")
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		f.Fatal(err)
	}
	var man struct {
		Records []corpusRecord `json:"records"`
	}
	if err := json.Unmarshal(b, &man); err != nil {
		f.Fatal(err)
	}
	for _, r := range man.Records {
		raw, err := os.ReadFile(filepath.Join(dir, r.Path))
		if err != nil {
			f.Fatal(err)
		}
		if len(raw) > 64<<10 {
			continue // keep the seeds small so the fuzzer mutates quickly
		}
		if log, err := Parse(raw); err == nil && log.Format == format {
			f.Add(raw)
		}
	}
}

// exerciseLog runs everything a caller may do with a parsed log and checks
// invariants that hold for any input.
func exerciseLog(t *testing.T, raw []byte) {
	log, err := Parse(raw)
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse error %v is not a *ParseError wrapping ErrMalformed", err)
		}
		if pe.Offset < 0 || pe.Offset > len(raw) {
			t.Fatalf("error offset %d outside the %d-byte input", pe.Offset, len(raw))
		}
		return
	}
	prev := -1
	all := log.DecodeAll()
	for i, e := range log.Events {
		if e.Number != i || e.Offset <= prev || e.Offset >= len(raw) {
			t.Fatalf("event %d: number %d offset %d after offset %d", i, e.Number, e.Offset, prev)
		}
		prev = e.Offset
		checkDecoded(t, &log.Events[i], all[i])
	}
	_ = Check(log)
	values, err := Replay(log)
	if err != nil {
		if !errors.Is(err, ErrBadPCRIndex) {
			t.Fatalf("Replay error %v is not ErrBadPCRIndex", err)
		}
		return
	}
	if len(values) == 0 {
		return
	}
	res, err := Verify(log, values, VerifyOptions{Workarounds: Workarounds()})
	if err != nil {
		t.Fatalf("Verify against the log's own replay: %v", err)
	}
	if len(res.Workarounds) != 0 {
		t.Fatalf("Verify against the log's own replay used %v", res.Workarounds)
	}
}

func FuzzParseSHA1(f *testing.F) {
	addCorpusSeeds(f, FormatSHA1)
	f.Fuzz(exerciseLog)
}

func FuzzParseCryptoAgile(f *testing.F) {
	addCorpusSeeds(f, FormatCryptoAgile)
	f.Fuzz(exerciseLog)
}

func FuzzParseExpectedPCRs(f *testing.F) {
	for _, name := range []string{"HIRS/TpmLog.bin.expected_pcrs.json", "go-attestation/ebs_event_missing_eventlog.expected_pcrs.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("  sha1:\n    0 : 0x0000000000000000000000000000000000000000\n  sha256:\n    7 : 0x3D458CFE55CC03EA1F443F1562BEEC8DF51C75E14A9FCF9A7234A13F198E7969\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseExpectedPCRs(data)
		if err != nil {
			return
		}
		for alg, pcrs := range v {
			for i, d := range pcrs {
				if i < 0 || i > maxPCRIndex || (alg.Size() != 0 && len(d) != alg.Size()) {
					t.Fatalf("accepted %s PCR %d of %d bytes", alg, i, len(d))
				}
			}
		}
	})
}

// FuzzDecodeEvent wraps one event of any type and data in a minimal
// crypto-agile log, so the fuzzer spends its time in the event data
// decoders (EFI variables, signature lists, load options, device paths,
// GPT) rather than in log framing.
func FuzzDecodeEvent(f *testing.F) {
	for _, name := range []string{"go-eventlog/arch-linux-workstation.bin", "go-eventlog/rhel8-uefi.bin", "go-eventlog/glinux-alex.bin"} {
		raw, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
		if err != nil {
			f.Fatal(err)
		}
		log, err := Parse(raw)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range log.Events[1:] {
			if len(e.Data) <= 4096 {
				f.Add(uint32(e.Type), e.PCR, e.Data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, typ, pcr uint32, data []byte) {
		raw := append(agileHeader(sha256Only), agileEvent(pcr, EventType(typ), data, sha256Of(data))...)
		exerciseLog(t, raw)
	})
}

// checkDecoded checks that the typed view of one event can be used, that
// Decode and DecodeAll agree, and that the structural check of Check
// agrees with the decoder.
func checkDecoded(t *testing.T, e *Event, decoded EventData) {
	t.Helper()
	if decoded == nil {
		t.Fatalf("event %d has no decoded data", e.Number)
	}
	one := e.Decode()
	if one.Kind() != decoded.Kind() {
		t.Fatalf("event %d: Decode gives %T, DecodeAll %T", e.Number, one, decoded)
	}
	o, opaque := decoded.(*Opaque)
	if reason := malformed(e); (reason != "") != (opaque && o.Reason != "") {
		t.Fatalf("event %d: structural check says %q, decoder gives %T %+v", e.Number, reason, decoded, decoded)
	}
	if il, ok := decoded.(*ImageLoad); ok {
		_ = il.DevicePath.String()
	}
	if v, ok := decoded.(*EFIVariable); ok && v.LoadOption != nil {
		_ = v.LoadOption.DevicePath.String()
	}
	if _, err := json.Marshal(decoded); err != nil {
		t.Fatalf("event %d: decoded data does not marshal: %v", e.Number, err)
	}
}
