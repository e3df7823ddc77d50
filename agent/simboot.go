package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/ima"
)

// SimulateBoot extends the TPM's PCRs with the digests of a recorded boot
// event log, in every bank both the log and the TPM have, so the TPM's
// quotes are genuine quotes of that boot. It is meant for the simulator
// and swtpm. It does nothing and returns false when PCR 0 is not at its
// reset value, which means the boot was already replayed into this TPM.
//
// A log that starts PCR 0 at a locality other than 0 (a StartupLocality
// event or an H-CRTM sequence) cannot be reproduced, because only the
// platform sets that start value; SimulateBoot rejects it.
func SimulateBoot(d *DeviceTPM, raw []byte) (bool, error) {
	log, err := eventlog.Parse(raw)
	if err != nil {
		return false, fmt.Errorf("simulated boot: %w", err)
	}
	for i := range log.Events {
		e := &log.Events[i]
		if l, ok := e.Decode().(*eventlog.StartupLocality); ok && l.Locality != 0 {
			return false, fmt.Errorf("simulated boot: event %d sets the startup locality to %d, which a TPM simulator cannot reproduce: use a log without it", e.Number, l.Locality)
		}
		if e.Type == eventlog.EV_EFI_HCRTM_EVENT {
			return false, fmt.Errorf("simulated boot: event %d is an H-CRTM event, which a TPM simulator cannot reproduce: use a log without it", e.Number)
		}
	}
	pcr0, err := d.PCR(attest.AlgSHA256, 0)
	if err != nil {
		return false, err
	}
	if !bytes.Equal(pcr0, make([]byte, len(pcr0))) {
		return false, nil
	}
	for i := range log.Events {
		e := &log.Events[i]
		if e.Type == eventlog.EV_NO_ACTION || e.PCR >= eventlog.NumPCRs {
			continue
		}
		digests := map[attest.Algorithm][]byte{}
		for _, dg := range e.Digests {
			digests[attest.Algorithm(dg.Alg)] = dg.Value
		}
		if _, err := d.Extend(int(e.PCR), digests); err != nil {
			return false, fmt.Errorf("simulated boot: event %d: %w", e.Number, err)
		}
	}
	return true, nil
}

// RogueImage stands for a boot application nobody approved, and
// RogueImagePath for the path the firmware logs for it.
var (
	RogueImage     = []byte("vouch demo: a boot application that no reference value covers")
	RogueImagePath = `\EFI\BOOT\unapproved.efi`
)

// AppendRogueEvent simulates an unapproved boot application: it extends
// pcr with the digest of RogueImage in every bank of the log the TPM has,
// and appends the matching EV_EFI_BOOT_SERVICES_APPLICATION event to the
// log file at path, as firmware would record it. It returns the new
// event's number.
func AppendRogueEvent(d *DeviceTPM, path string, pcr int) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		return 0, fmt.Errorf("rogue event: %w", err)
	}
	// UEFI_IMAGE_LOAD_EVENT: location, length and link-time address of the
	// image, then a device path of a media file path node and an end node.
	var file []byte
	for _, r := range RogueImagePath + "\x00" {
		file = binary.LittleEndian.AppendUint16(file, uint16(r))
	}
	node := append([]byte{0x04, 0x04}, binary.LittleEndian.AppendUint16(nil, uint16(4+len(file)))...)
	node = append(append(node, file...), 0x7f, 0xff, 0x04, 0x00)
	var data bytes.Buffer
	binary.Write(&data, binary.LittleEndian, []uint64{0x7f000000, uint64(len(RogueImage)), 0, uint64(len(node))})
	data.Write(node)

	var rec bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&rec, le, uint32(pcr))
	binary.Write(&rec, le, uint32(eventlog.EV_EFI_BOOT_SERVICES_APPLICATION))
	digests := map[attest.Algorithm][]byte{}
	if log.SpecID == nil {
		d := digestOf(attest.AlgSHA1, RogueImage)
		digests[attest.AlgSHA1] = d
		rec.Write(d)
	} else {
		binary.Write(&rec, le, uint32(len(log.SpecID.Algorithms)))
		for _, a := range log.SpecID.Algorithms {
			alg := attest.Algorithm(a.Alg)
			d := digestOf(alg, RogueImage)
			if d == nil || len(d) != a.Size {
				return 0, fmt.Errorf("rogue event: cannot compute a digest of algorithm %s, which the log's header lists", alg)
			}
			digests[alg] = d
			binary.Write(&rec, le, uint16(a.Alg))
			rec.Write(d)
		}
	}
	binary.Write(&rec, le, uint32(data.Len()))
	rec.Write(data.Bytes())

	banks, err := d.Extend(pcr, digests)
	if err != nil {
		return 0, err
	}
	if len(banks) == 0 {
		return 0, errors.New("rogue event: the TPM has none of the log's banks")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write(rec.Bytes()); err != nil {
		f.Close()
		return 0, err
	}
	return len(log.Events), f.Close()
}

func digestOf(alg attest.Algorithm, data []byte) []byte {
	h := attest.HashFunc(alg)
	if h == 0 {
		return nil
	}
	w := h.New()
	w.Write(data)
	return w.Sum(nil)
}

// ExtendUnrecorded extends pcr with the digest of RogueImage in every
// active bank without recording an event, as code that hides from the
// event log would. The log then no longer replays to the PCR.
func ExtendUnrecorded(d *DeviceTPM, pcr int) error {
	digests := map[attest.Algorithm][]byte{}
	for _, alg := range []attest.Algorithm{attest.AlgSHA1, attest.AlgSHA256, attest.AlgSHA384, attest.AlgSHA512} {
		digests[alg] = digestOf(alg, RogueImage)
	}
	banks, err := d.Extend(pcr, digests)
	if err != nil {
		return err
	}
	if len(banks) == 0 {
		return errors.New("unrecorded extend: the TPM has no SHA bank")
	}
	return nil
}

// SimulateIMA appends to the binary IMA measurement list at path as the
// kernel would: when the list is empty or missing, first a boot_aggregate
// over the SHA-256 PCRs 0-9, then one ima-ng entry per name in files. It
// extends PCR 10 with each entry's template hash in every active bank, the
// way Linux 5.8 and later do.
func SimulateIMA(d *DeviceTPM, path string, files []string) error {
	list, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	agg := sha256.New()
	for pcr := 0; pcr < 10; pcr++ {
		v, err := d.PCR(attest.AlgSHA256, pcr)
		if err != nil {
			return fmt.Errorf("simulated IMA: %w", err)
		}
		agg.Write(v)
	}
	add := func(name string, digest []byte) error {
		e := &ima.Entry{PCR: 10, TemplateName: "ima-ng", TemplateData: imaNGData(name, digest)}
		sha1Hash, err := e.TemplateHashOf(attest.AlgSHA1)
		if err != nil {
			return err
		}
		e.TemplateHash = sha1Hash
		digests := map[attest.Algorithm][]byte{}
		for _, alg := range []attest.Algorithm{attest.AlgSHA1, attest.AlgSHA256, attest.AlgSHA384, attest.AlgSHA512} {
			if h, err := e.TemplateHashOf(alg); err == nil {
				digests[alg] = h
			}
		}
		if _, err := d.Extend(10, digests); err != nil {
			return err
		}
		list = ima.AppendBinary(list, e)
		return nil
	}
	if len(list) == 0 {
		if err := add(ima.BootAggregateName, agg.Sum(nil)); err != nil {
			return fmt.Errorf("simulated IMA: %w", err)
		}
	}
	for _, f := range files {
		sum := sha256.Sum256([]byte("contents of " + f))
		if err := add(f, sum[:]); err != nil {
			return fmt.Errorf("simulated IMA: %w", err)
		}
	}
	return os.WriteFile(path, list, 0o600)
}

// imaNGData encodes the ima-ng template fields d-ng and n-ng, each with
// its little-endian length.
func imaNGData(name string, digest []byte) []byte {
	dng := append([]byte("sha256:\x00"), digest...)
	nng := append([]byte(name), 0)
	var out []byte
	out = binary.LittleEndian.AppendUint32(out, uint32(len(dng)))
	out = append(out, dng...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(nng)))
	return append(out, nng...)
}
