package eventlog

import (
	"bytes"
	"crypto/sha512"
	"fmt"
)

// FindingKind classifies a Finding.
type FindingKind string

// Finding kinds.
const (
	// FindingDigestMismatch: the event's type defines its digest as the
	// hash of its data, and the digest of this bank is not. The decoded
	// data of such an event shows something other than what was extended.
	FindingDigestMismatch FindingKind = "digest-mismatch"
	// FindingMalformedData: the event data does not have the structure its
	// type defines, so it stays opaque.
	FindingMalformedData FindingKind = "malformed-data"
	// FindingNotInBank: the event has no digest in the bank Verify
	// verified, so that bank's replay does not cover it.
	FindingNotInBank FindingKind = "not-in-verified-bank"
)

// Finding is a problem with one event that does not stop replay.
type Finding struct {
	Event  int         `json:"event"`
	Offset int         `json:"offset"`
	PCR    uint32      `json:"pcr"`
	Type   EventType   `json:"type"`
	Kind   FindingKind `json:"kind"`
	// Bank is the bank whose digest does not match, for
	// FindingDigestMismatch.
	Bank   Algorithm `json:"bank,omitempty"`
	Detail string    `json:"detail"`
}

func (f Finding) String() string {
	return fmt.Sprintf("event %d (%s, PCR %d): %s", f.Event, f.Type, f.PCR, f.Detail)
}

// Check compares each event's data with its digests for every event type
// whose digest the PC Client Platform Firmware Profile defines as the hash
// of the data, and reports data that does not decode as its type defines.
// The checked types are EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION,
// EV_OMIT_BOOT_DEVICE_EVENTS, EV_S_CRTM_VERSION, EV_EFI_GPT_EVENT(2),
// EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT(2),
// EV_EFI_VARIABLE_AUTHORITY and the EV_IPL strings GRUB writes to PCR 8.
// Three known variants are accepted. Most firmware digests only the value
// of an EV_EFI_VARIABLE_BOOT variable. GRUB hashes a command without its
// "grub_cmd: " prefix, with or without a trailing NUL. Some firmware
// digests a prefix of a variable event's data that contains the whole
// structure.
//
// Events of other types (images, firmware blobs, GRUB's PCR 9 files,
// systemd-stub's PCR 11 to 13 events) are not checked: their digest covers
// memory or files that are not in the log.
func Check(log *Log) []Finding {
	return checkBank(log, 0)
}

// checkBank checks the digests of one bank, or of all banks when bank is 0.
func checkBank(log *Log, bank Algorithm) []Finding {
	var out []Finding
	for i := range log.Events {
		out = checkEvent(&log.Events[i], bank, out)
	}
	return out
}

// checkCovered checks each event against the bank that banks names for
// its PCR, or against all banks when it names none (0) or the PCR index is
// out of range.
func checkCovered(log *Log, banks *[NumPCRs]Algorithm) []Finding {
	var out []Finding
	for i := range log.Events {
		e := &log.Events[i]
		var bank Algorithm
		if e.PCR < NumPCRs {
			bank = banks[e.PCR]
		}
		out = checkEvent(e, bank, out)
	}
	return out
}

func checkEvent(e *Event, bank Algorithm, out []Finding) []Finding {
	if reason := malformed(e); reason != "" {
		out = append(out, Finding{Event: e.Number, Offset: e.Offset, PCR: e.PCR, Type: e.Type, Kind: FindingMalformedData, Detail: reason})
	}
	if bank != 0 && e.Type != EV_NO_ACTION && e.Digest(bank) == nil {
		out = append(out, Finding{Event: e.Number, Offset: e.Offset, PCR: e.PCR, Type: e.Type, Kind: FindingNotInBank, Bank: bank,
			Detail: fmt.Sprintf("event has no %s digest, so the verified %s bank does not cover it: do not trust its data", bank, bank)})
		return out
	}
	if !digestIsDataHash(e) {
		return out
	}
	var buf [sha512.Size]byte
	for _, d := range e.Digests {
		if _, ok := d.Alg.Hash(); !ok || (bank != 0 && d.Alg != bank) {
			continue
		}
		if matchesData(e, d, &buf) {
			continue
		}
		out = append(out, Finding{
			Event: e.Number, Offset: e.Offset, PCR: e.PCR, Type: e.Type, Kind: FindingDigestMismatch, Bank: d.Alg,
			Detail: fmt.Sprintf("%s digest %x is not the hash of the event data: the data may not be what was measured, do not trust it", d.Alg, d.Value),
		})
	}
	return out
}

func digestIsDataHash(e *Event) bool {
	switch e.Type {
	case EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_OMIT_BOOT_DEVICE_EVENTS, EV_S_CRTM_VERSION,
		EV_EFI_GPT_EVENT, EV_EFI_GPT_EVENT2,
		EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_BOOT2, EV_EFI_VARIABLE_AUTHORITY:
		return true
	case EV_IPL:
		return e.PCR == 8
	}
	return false
}

// matchesData reports whether the digest is the hash of the event data or
// of one of its accepted variants. The variant real logs use most is tried
// first, so a typical event costs one hash per bank.
func matchesData(e *Event, d Digest, buf *[sha512.Size]byte) bool {
	is := func(data []byte) bool { return bytes.Equal(digestOf(d.Alg, buf, data), d.Value) }
	switch e.Type {
	case EV_SEPARATOR:
		if want, ok := separatorDigest(d.Alg, e.Data); ok {
			return bytes.Equal(want, d.Value)
		}
	case EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_BOOT2, EV_EFI_VARIABLE_AUTHORITY:
		v, err := parseVariable(e.Data)
		if err != nil {
			break
		}
		if e.Type == EV_EFI_VARIABLE_BOOT && is(v.Data) {
			return true
		}
		for k := len(e.Data) - v.TrailingBytes; k < len(e.Data); k++ {
			if is(e.Data[:k]) {
				return true
			}
		}
	case EV_IPL:
		if cmd, ok := grubCommand(e.Data); ok {
			if n := len(cmd); n > 0 && cmd[n-1] == 0 && is(cmd[:n-1]) {
				return true
			}
			if is(cmd) {
				return true
			}
		}
		if utf16, _, nul := iplForm(e.Data); nul && !utf16 && is(e.Data[:len(e.Data)-1]) {
			return true
		}
	}
	return is(e.Data)
}

// grubCommand strips the prefix GRUB puts before the string it measures:
// "grub_cmd: ", "kernel_cmdline: " and "module_cmdline: " (GRUB 2.04 and
// later), or "grub_cmd " and "grub_kernel_cmdline " (older distribution
// patches).
func grubCommand(data []byte) ([]byte, bool) {
	for _, p := range []string{"grub_cmd: ", "kernel_cmdline: ", "module_cmdline: ", "grub_cmd ", "grub_kernel_cmdline "} {
		if bytes.HasPrefix(data, []byte(p)) {
			return data[len(p):], true
		}
	}
	return nil, false
}

// separatorDigests holds the hash of each separator value that firmware
// and Windows write (see Separator), in the banks most logs have. A
// typical log has eight or more separators, and checking them then takes
// no hashing.
var separatorDigests = func() (t [2][4][]byte) {
	var buf [sha512.Size]byte
	for b, alg := range []Algorithm{SHA1, SHA256} {
		for v, data := range separatorValues {
			t[b][v] = append([]byte(nil), digestOf(alg, &buf, data[:])...)
		}
	}
	return t
}()

var separatorValues = [4][4]byte{{0, 0, 0, 0}, {0xFF, 0xFF, 0xFF, 0xFF}, {1, 0, 0, 0}, {'W', 'B', 'C', 'L'}}

// separatorDigest returns the precomputed hash of separator data in the
// bank, when there is one.
func separatorDigest(alg Algorithm, data []byte) ([]byte, bool) {
	var b int
	switch alg {
	case SHA1:
		b = 0
	case SHA256:
		b = 1
	default:
		return nil, false
	}
	for v := range separatorValues {
		if bytes.Equal(data, separatorValues[v][:]) {
			return separatorDigests[b][v], true
		}
	}
	return nil, false
}
