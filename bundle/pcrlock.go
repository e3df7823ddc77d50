package bundle

import (
	"fmt"
	"path/filepath"
	"strings"
)

// pcrlockKinds maps a PCR to the kind its events usually are, for
// .pcrlock records, which carry no event type.
var pcrlockKinds = map[int]Kind{
	0: KindFirmwareBlob, 1: KindFirmwareConfig, 2: KindFirmwareBlob, 3: KindFirmwareConfig,
	4: KindBootApplication, 5: KindGPT, 7: KindSecureBootVar, 8: KindGRUBCommand,
	9: KindGRUBFile, 11: KindUKISection, 12: KindKernelCmdline, 14: KindShimVariable,
}

// PCRLockName returns the component name for a .pcrlock file path: the
// file name without ".pcrlock", prefixed by the drop-in directory's
// component ("650-kernel/6.5.5-200.fc38.x86_64") when the file is in one.
func PCRLockName(path string) string {
	name := strings.TrimSuffix(filepath.Base(path), ".pcrlock")
	if dir := filepath.Base(filepath.Dir(path)); strings.HasSuffix(dir, ".pcrlock.d") {
		name = strings.TrimSuffix(dir, ".pcrlock.d") + "/" + name
	}
	return name
}

// ImportPCRLock converts one systemd .pcrlock file (a subset of the TCG
// Canonical Event Log JSON format: {"records": [{"pcr": N, "digests":
// [{"hashAlg": "sha256", "digest": "hex"}]}]}) into a component with one
// value per record. systemd-pcrlock ignores the records' "content",
// "content_type" and "recnum" members, and so does ImportPCRLock. The kind
// is taken from the first record's PCR, or is KindOther when that PCR has
// no usual kind; pass kind to override it.
func ImportPCRLock(name string, data []byte, kind Kind) (*Component, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("pcrlock %s is %d bytes, more than the limit of %d", name, len(data), MaxEnvelopeSize)
	}
	var doc struct {
		Records []struct {
			PCR     *int `json:"pcr"`
			Digests []struct {
				HashAlg Bank   `json:"hashAlg"`
				Digest  Digest `json:"digest"`
			} `json:"digests"`
		} `json:"records"`
	}
	if err := decodeStrict(data, &doc, true); err != nil {
		return nil, fmt.Errorf("pcrlock %s: %w", name, err)
	}
	if len(doc.Records) == 0 {
		return nil, fmt.Errorf("pcrlock %s has no records: a component that measures nothing needs no reference value", name)
	}
	if len(doc.Records) > MaxValues {
		return nil, fmt.Errorf("pcrlock %s has %d records, more than the limit of %d", name, len(doc.Records), MaxValues)
	}
	c := &Component{Name: name, Kind: kind, Source: "systemd pcrlock " + name}
	for i, r := range doc.Records {
		if r.PCR == nil {
			return nil, fmt.Errorf("pcrlock %s record %d: pcr is missing", name, i)
		}
		v := Value{PCR: *r.PCR, Digests: make(map[Bank]Digest, len(r.Digests))}
		for _, d := range r.Digests {
			if _, dup := v.Digests[d.HashAlg]; dup {
				return nil, fmt.Errorf("pcrlock %s record %d: two %s digests", name, i, d.HashAlg)
			}
			v.Digests[d.HashAlg] = d.Digest
		}
		c.Values = append(c.Values, v)
	}
	if c.Kind == "" {
		c.Kind = pcrlockKinds[c.Values[0].PCR]
		if c.Kind == "" {
			c.Kind = KindOther
		}
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("pcrlock %s: %w", name, err)
	}
	return c, nil
}
