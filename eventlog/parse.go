// Package eventlog parses, decodes and replays TCG PC Client boot event
// logs, the logs that firmware writes while it extends PCRs
// (/sys/kernel/security/tpm0/binary_bios_measurements on Linux).
//
// Everything in a Log is untrusted: the log is written by the firmware and
// the operating system and travels next to the quote. An event proves
// nothing until Verify shows that the log replays to PCR values that a
// verified quote covers. Verify also reports event data that does not hash
// to the event's digest, because such data can show one thing while the
// PCR contains another.
//
// Both formats are read: the TPM 1.2 format of SHA-1 TCG_PCClientPCREvent
// records, and the crypto-agile format (TCG_PCR_EVENT2) announced by a
// "Spec ID Event03" header event (TCG PC Client Platform Firmware Profile,
// sections 10.2 and 10.4).
package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Format is the record layout of a log.
type Format int

// Log formats.
const (
	// FormatSHA1 is the TPM 1.2 layout (TCG_PCClientPCREvent): one SHA-1
	// digest per event. TPM 2.0 firmware writes it too when it logs only
	// the SHA-1 bank.
	FormatSHA1 Format = iota + 1
	// FormatCryptoAgile is the TPM 2.0 layout (TCG_PCR_EVENT2) with one
	// digest per bank listed in the Spec ID event.
	FormatCryptoAgile
)

func (f Format) String() string {
	switch f {
	case FormatSHA1:
		return "sha1"
	case FormatCryptoAgile:
		return "crypto-agile"
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// MarshalText encodes the format by name.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Log is a parsed event log. Its contents are untrusted until Verify has
// compared its replay with quoted PCR values.
type Log struct {
	Format Format
	// Banks are the PCR banks the log has digests for, in header order:
	// SHA1 for a FormatSHA1 log, the known algorithms of the Spec ID
	// event for a crypto-agile log.
	Banks []Algorithm
	// SpecID is the decoded Spec ID event of a crypto-agile log, nil for a
	// FormatSHA1 log.
	SpecID *SpecIDEvent
	// Events are all events in log order, the Spec ID event included as
	// event 0 of a crypto-agile log.
	Events []Event
	// Padding is the number of bytes after the last event that were
	// skipped because they are all 0x00 or all 0xFF.
	Padding int
}

// Event is one log record. Digests and Data, and the slices inside the
// EventData that Decode returns, share memory with the input of Parse: do
// not modify that input while the Log is in use.
type Event struct {
	// Number is the event's position in the log, counting from 0 and
	// including the Spec ID event. It is the EventNum of tpm2_eventlog.
	Number int
	// Offset is the byte offset of the event header in the log.
	Offset int
	// PCR is the PCR index as logged. Windows logs end with an
	// EV_NO_ACTION event for index 0xFFFFFFFF; such events are never
	// extended.
	PCR  uint32
	Type EventType
	// Digests holds one digest per bank the event carries, in log order.
	// Digests of algorithms this package does not know are skipped.
	Digests []Digest
	// Data is the raw event data. Decode returns its typed view.
	Data []byte
}

// Digest is an event digest for one bank.
type Digest struct {
	Alg   Algorithm
	Value []byte
}

// Digest returns the event's digest for the bank, or nil.
func (e *Event) Digest(alg Algorithm) []byte {
	for _, d := range e.Digests {
		if d.Alg == alg {
			return d.Value
		}
	}
	return nil
}

// SpecIDEvent is the TCG_EfiSpecIDEvent structure that opens a crypto-agile
// log (PFP section 10.4.5.1).
type SpecIDEvent struct {
	PlatformClass uint32 `json:"platform_class"`
	VersionMinor  uint8  `json:"version_minor"`
	VersionMajor  uint8  `json:"version_major"`
	Errata        uint8  `json:"errata"`
	UintnSize     uint8  `json:"uintn_size"`
	// Algorithms lists every algorithm with the digest size the header
	// gives, unknown algorithms included.
	Algorithms []AlgorithmSize `json:"algorithms"`
	VendorInfo HexBytes        `json:"vendor_info,omitempty"`
}

// AlgorithmSize is one entry of the Spec ID event's digest size list.
type AlgorithmSize struct {
	Alg  Algorithm `json:"alg"`
	Size int       `json:"size"`
}

// ParseError reports malformed log bytes, with the event number and byte
// offset where parsing stopped.
type ParseError struct {
	Event  int
	Offset int
	Err    error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("event %d at byte offset %d: %v", e.Event, e.Offset, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// ErrMalformed is wrapped by every ParseError.
var ErrMalformed = errors.New("malformed event log")

const (
	sha1EventHeaderSize = 32 // pcrIndex, eventType, SHA-1 digest, eventDataSize
	specIDSignature     = "Spec ID Event03\x00"
	// maxSpecIDAlgorithms bounds numberOfAlgorithms. TPM_ALG_ID is 16 bits,
	// and no TPM has more than a handful of banks.
	maxSpecIDAlgorithms = 64
)

// Parse parses a binary event log in either format. A log must contain at
// least one event and, when crypto-agile, list at least one algorithm this
// package supports. Bytes after the last event are accepted only when they
// are all 0x00 or all 0xFF, the unused space of a fixed-size log area (TDX
// CCEL tables are padded with 0xFF).
//
// Parse checks the record structure only. It neither hashes nor decodes
// event data: Replay and Verify hash, Check and Verify check the data of
// the types whose digest is its hash, and Event.Decode and Log.DecodeAll
// return the typed view of the data.
func Parse(raw []byte) (*Log, error) {
	if len(raw) < sha1EventHeaderSize {
		return nil, &ParseError{Event: 0, Offset: 0, Err: fmt.Errorf("%w: log is %d bytes, shorter than one %d-byte event header; check that the whole file was read", ErrMalformed, len(raw), sha1EventHeaderSize)}
	}
	p := parser{raw: raw}
	var first Event
	if err := p.sha1Event(&first, 0, 0); err != nil {
		return nil, err
	}
	log := &Log{Format: FormatSHA1, Banks: []Algorithm{SHA1}}
	// The PFP puts the Spec ID event in PCR 0. TDX CC event logs (CCEL)
	// put it at index 1, their RTMR0, so the index is not checked.
	if first.Type == EV_NO_ACTION && bytes.HasPrefix(first.Data, []byte(specIDSignature)) {
		spec, err := parseSpecID(first.Data)
		if err != nil {
			return nil, &ParseError{Event: 0, Offset: 0, Err: fmt.Errorf("%w: Spec ID event: %w", ErrMalformed, err)}
		}
		log.Format = FormatCryptoAgile
		log.SpecID = spec
		log.Banks = log.Banks[:0]
		for _, a := range spec.Algorithms {
			if a.Alg.Size() != 0 {
				log.Banks = append(log.Banks, a.Alg)
			}
		}
		if len(log.Banks) == 0 {
			return nil, &ParseError{Event: 0, Offset: 0, Err: fmt.Errorf("%w: Spec ID event lists no hash algorithm this parser supports (%v): the log has no bank to replay", ErrMalformed, spec.Algorithms)}
		}
		p.algs = spec.Algorithms
		p.known = log.Banks
	}

	// Size the slices exactly, so a log costs one allocation each.
	nEvents, nDigests := countEvents(raw, p.off, log.Format, p.algs)
	p.events = make([]Event, 0, nEvents+1)
	p.digests = make([]Digest, 0, nDigests)
	p.add(first)

	off := p.off
	for off < len(raw) {
		if startsLikePadding(raw[off:]) {
			if n := paddingLen(raw[off:]); n > 0 {
				log.Padding = n
				break
			}
		}
		ev := p.next()
		var err error
		if log.Format == FormatSHA1 {
			err = p.sha1Event(ev, len(p.events)-1, off)
		} else {
			err = p.agileEvent(ev, len(p.events)-1, off)
		}
		if err != nil {
			return nil, withHeaderHint(err, &first, log.Format)
		}
		off = p.off
	}
	log.Events = p.events
	return log, nil
}

// withHeaderHint adds the header's signature to a parse error of a SHA-1
// format log whose first event has a Spec ID signature other than "Spec
// ID Event03". TPM 1.2 logs may start with "Spec ID Event00" or "Spec ID
// Event02", so those signatures are no error. A crypto-agile log with a
// damaged signature, though, fails later at an event that looks
// unrelated.
func withHeaderHint(err error, first *Event, format Format) error {
	const prefix = "Spec ID Event"
	var pe *ParseError
	if format != FormatSHA1 || first.Type != EV_NO_ACTION || !bytes.HasPrefix(first.Data, []byte(prefix)) || !errors.As(err, &pe) {
		return err
	}
	sig := first.Data[:min(len(first.Data), len(specIDSignature))]
	pe.Err = fmt.Errorf("%w (event 0 has the signature %q, not %q, so the log was read in the SHA-1 format: if it is a crypto-agile log, its header is damaged)", pe.Err, bytes.TrimRight(sig, "\x00"), strings.TrimRight(specIDSignature, "\x00"))
	return pe
}

type parser struct {
	raw     []byte
	off     int
	algs    []AlgorithmSize // crypto-agile header list
	known   []Algorithm
	events  []Event
	digests []Digest
}

func (p *parser) add(ev Event) {
	*p.next() = ev
}

// next extends p.events by one event and returns it, for the parser to
// fill in place.
func (p *parser) next() *Event {
	if n := len(p.events); n < cap(p.events) {
		p.events = p.events[:n+1]
	} else {
		p.events = append(p.events, Event{})
	}
	return &p.events[len(p.events)-1]
}

// takeDigests sets ev.Digests to the digests appended since start. When
// an append reallocated p.digests, earlier events keep pointing into the
// old array, which stays valid.
func (p *parser) takeDigests(ev *Event, start int) {
	end := len(p.digests)
	ev.Digests = p.digests[start:end:end]
}

func (p *parser) errorf(num, off int, format string, args ...any) error {
	return &ParseError{Event: num, Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)}
}

// sha1Event parses a TCG_PCClientPCREvent at off.
func (p *parser) sha1Event(ev *Event, num, off int) error {
	rest := p.raw[off:]
	if len(rest) < sha1EventHeaderSize {
		return p.errorf(num, off, "truncated event header: %d bytes left, a SHA-1 event header needs %d; the log was cut short", len(rest), sha1EventHeaderSize)
	}
	*ev = Event{
		Number: num,
		Offset: off,
		PCR:    binary.LittleEndian.Uint32(rest[0:]),
		Type:   EventType(binary.LittleEndian.Uint32(rest[4:])),
	}
	start := len(p.digests)
	p.digests = append(p.digests, Digest{Alg: SHA1, Value: rest[8:28:28]})
	p.takeDigests(ev, start)
	size := binary.LittleEndian.Uint32(rest[28:])
	if uint64(size) > uint64(len(rest)-sha1EventHeaderSize) {
		return p.errorf(num, off, "event data size %d (0x%08x) runs past the end of the log (%d bytes left) in %s event for PCR %d; the log is truncated or corrupt", size, size, len(rest)-sha1EventHeaderSize, ev.Type, ev.PCR)
	}
	end := sha1EventHeaderSize + int(size)
	ev.Data = rest[sha1EventHeaderSize:end:end]
	p.off = off + end
	return nil
}

// agileEvent parses a TCG_PCR_EVENT2 at off.
func (p *parser) agileEvent(ev *Event, num, off int) error {
	rest := p.raw[off:]
	if len(rest) < 12 {
		return p.errorf(num, off, "truncated event header: %d bytes left, a crypto-agile event header needs at least 12; the log was cut short", len(rest))
	}
	*ev = Event{
		Number: num,
		Offset: off,
		PCR:    binary.LittleEndian.Uint32(rest[0:]),
		Type:   EventType(binary.LittleEndian.Uint32(rest[4:])),
	}
	// An event may carry fewer digests than the Spec ID event lists:
	// Windows extends some events into the SHA-256 bank only, and a TPM
	// extends only the banks a TPML_DIGEST_VALUES names.
	count := binary.LittleEndian.Uint32(rest[8:])
	if count == 0 || count > uint32(len(p.algs)) {
		return p.errorf(num, off, "%s event for PCR %d has %d digests, expected 1 to the %d algorithms the Spec ID event lists", ev.Type, ev.PCR, count, len(p.algs))
	}

	pos := 12
	start := len(p.digests)
	var seen uint64 // bit i set when p.algs[i] was seen
	for i := uint32(0); i < count; i++ {
		if len(rest)-pos < 2 {
			return p.errorf(num, off, "truncated digest %d of %s event for PCR %d at byte offset %d; the log was cut short", i, ev.Type, ev.PCR, off+pos)
		}
		alg := Algorithm(binary.LittleEndian.Uint16(rest[pos:]))
		idx := -1
		for j, a := range p.algs {
			if a.Alg == alg {
				idx = j
				break
			}
		}
		if idx < 0 {
			return p.errorf(num, off, "digest %d of %s event for PCR %d uses algorithm 0x%04x, which the Spec ID event does not list, so its size is unknown", i, ev.Type, ev.PCR, uint16(alg))
		}
		if seen&(1<<idx) != 0 {
			return p.errorf(num, off, "%s event for PCR %d has two %s digests", ev.Type, ev.PCR, alg)
		}
		seen |= 1 << idx
		size := p.algs[idx].Size
		pos += 2
		if len(rest)-pos < size {
			return p.errorf(num, off, "truncated %s digest of %s event for PCR %d: %d bytes left, %d needed; the log was cut short", alg, ev.Type, ev.PCR, len(rest)-pos, size)
		}
		if alg.Size() != 0 {
			p.digests = append(p.digests, Digest{Alg: alg, Value: rest[pos : pos+size : pos+size]})
		}
		pos += size
	}
	p.takeDigests(ev, start)

	if len(rest)-pos < 4 {
		return p.errorf(num, off, "truncated event data size of %s event for PCR %d; the log was cut short", ev.Type, ev.PCR)
	}
	size := binary.LittleEndian.Uint32(rest[pos:])
	pos += 4
	if uint64(size) > uint64(len(rest)-pos) {
		return p.errorf(num, off, "event data size %d (0x%08x) runs past the end of the log (%d bytes left) in %s event for PCR %d; the log is truncated or corrupt", size, size, len(rest)-pos, ev.Type, ev.PCR)
	}
	end := pos + int(size)
	ev.Data = rest[pos:end:end]
	p.off = off + end
	return nil
}

// countEvents walks the event headers from off and returns how many events
// and known-algorithm digests they hold, stopping at the first header that
// does not fit (the parse loop then reports it).
func countEvents(raw []byte, off int, format Format, algs []AlgorithmSize) (events, digests int) {
	for off < len(raw) {
		rest := raw[off:]
		if startsLikePadding(rest) && paddingLen(rest) > 0 {
			return events, digests
		}
		if format == FormatSHA1 {
			if len(rest) < sha1EventHeaderSize {
				return events, digests
			}
			size := uint64(binary.LittleEndian.Uint32(rest[28:]))
			if size > uint64(len(rest)-sha1EventHeaderSize) {
				return events, digests
			}
			off += sha1EventHeaderSize + int(size)
			events++
			digests++
			continue
		}
		if len(rest) < 12 {
			return events, digests
		}
		count := binary.LittleEndian.Uint32(rest[8:])
		if count > uint32(len(algs)) {
			return events, digests
		}
		pos := 12
		for i := uint32(0); i < count; i++ {
			if len(rest)-pos < 2 {
				return events, digests
			}
			alg := Algorithm(binary.LittleEndian.Uint16(rest[pos:]))
			size := -1
			for _, a := range algs {
				if a.Alg == alg {
					size = a.Size
					break
				}
			}
			if size < 0 || len(rest)-pos-2 < size {
				return events, digests
			}
			if alg.Size() != 0 {
				digests++
			}
			pos += 2 + size
		}
		if len(rest)-pos < 4 {
			return events, digests
		}
		size := uint64(binary.LittleEndian.Uint32(rest[pos:]))
		if size > uint64(len(rest)-pos-4) {
			return events, digests
		}
		off += pos + 4 + int(size)
		events++
	}
	return events, digests
}

// parseSpecID decodes TCG_EfiSpecIDEvent.
func parseSpecID(data []byte) (*SpecIDEvent, error) {
	const fixed = 16 + 4 + 4 + 4 // signature, platformClass, versions+errata+uintnSize, numberOfAlgorithms
	if len(data) < fixed {
		return nil, fmt.Errorf("data is %d bytes, shorter than the %d-byte fixed part", len(data), fixed)
	}
	s := &SpecIDEvent{
		PlatformClass: binary.LittleEndian.Uint32(data[16:]),
		VersionMinor:  data[20],
		VersionMajor:  data[21],
		Errata:        data[22],
		UintnSize:     data[23],
	}

	n := binary.LittleEndian.Uint32(data[24:])
	if n == 0 || n > maxSpecIDAlgorithms {
		return nil, fmt.Errorf("numberOfAlgorithms is %d, expected 1 to %d", n, maxSpecIDAlgorithms)
	}
	pos := fixed
	if uint64(len(data)-pos) < uint64(n)*4+1 {
		return nil, fmt.Errorf("numberOfAlgorithms %d needs %d bytes of digest sizes and vendorInfoSize, the event has %d", n, n*4+1, len(data)-pos)
	}
	s.Algorithms = make([]AlgorithmSize, n)
	for i := range s.Algorithms {
		alg := Algorithm(binary.LittleEndian.Uint16(data[pos:]))
		size := int(binary.LittleEndian.Uint16(data[pos+2:]))
		if want := alg.Size(); want != 0 && size != want {
			return nil, fmt.Errorf("digest size of %s is %d, expected %d", alg, size, want)
		}
		if size == 0 {
			return nil, fmt.Errorf("digest size of algorithm 0x%04x is 0", uint16(alg))
		}
		for _, prev := range s.Algorithms[:i] {
			if prev.Alg == alg {
				return nil, fmt.Errorf("algorithm %s is listed twice", alg)
			}
		}
		s.Algorithms[i] = AlgorithmSize{Alg: alg, Size: size}
		pos += 4
	}

	vendorSize := int(data[pos])
	pos++
	if vendorSize > len(data)-pos {
		return nil, fmt.Errorf("vendorInfoSize %d runs past the end of the %d-byte event data", vendorSize, len(data))
	}
	s.VendorInfo = data[pos : pos+vendorSize : pos+vendorSize]
	return s, nil
}

var (
	zeroBlock [512]byte
	onesBlock = func() (b [512]byte) {
		for i := range b {
			b[i] = 0xFF
		}
		return b
	}()
)

// startsLikePadding reports whether b may be padding rather than an
// event. A real event differs from the padding within its 8-byte PCR index
// and event type. It is small enough to inline, so the parse loops pay no
// call for it.
func startsLikePadding(b []byte) bool {
	if len(b) < 8 {
		return true
	}
	w := binary.LittleEndian.Uint64(b)
	return w == 0 || w == ^uint64(0)
}

// paddingLen returns len(b) when b is non-empty and all 0x00 or all 0xFF,
// and 0 otherwise.
func paddingLen(b []byte) int {
	var block []byte
	switch b[0] {
	case 0x00:
		block = zeroBlock[:]
	case 0xFF:
		block = onesBlock[:]
	default:
		return 0
	}
	for rest := b; len(rest) > 0; {
		n := min(len(rest), len(block))
		if !bytes.Equal(rest[:n], block[:n]) {
			return 0
		}
		rest = rest[n:]
	}
	return len(b)
}
