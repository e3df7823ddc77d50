package predict

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf16"
)

// ukiSections lists the PE sections systemd-stub measures into PCR 11, in
// the order it measures them (systemd's unified_sections table, v252 to
// v257). .pcrsig is left out: it holds signatures over the PCR 11 value and
// so cannot be part of it.
var ukiSections = []string{
	".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb",
	".uname", ".sbat", ".pcrpkey", ".profile", ".dtbauto", ".hwids", ".efifw",
}

// IsUKI reports whether a PE image is a unified kernel image: it has a
// .linux section.
func IsUKI(pe *PEFile) bool { return pe.Section(".linux") != nil }

// UKIReferences predicts systemd-stub's PCR 11 measurements of a unified
// kernel image: for each section present, in systemd's order, one event for
// the section name with its NUL and one for the section contents as loaded
// (VirtualSize bytes).
//
// NOTE: systemd-stub (257 and later) measures only the sections of the
// booted profile of a UKI with several .profile sections. This function
// measures the image as one profile.
func UKIReferences(pe *PEFile, component string, banks []Bank) ([]Reference, error) {
	var refs []Reference
	for _, name := range ukiSections {
		s := pe.Section(name)
		if s == nil {
			continue
		}
		nameDigests, err := hashBytes(banks, append([]byte(name), 0))
		if err != nil {
			return nil, err
		}
		refs = append(refs, Reference{
			Kind: KindUKISection, PCR: 11, EventType: EventIPL, Component: component,
			Event: name, Note: "section name", Digests: nameDigests,
		})

		r, _, err := pe.SectionData(s)
		if err != nil {
			return nil, err
		}
		m, err := newMultiHash(banks)
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(m, r); err != nil {
			return nil, fmt.Errorf("read UKI section %s: %w", name, err)
		}
		refs = append(refs, Reference{
			Kind: KindUKISection, PCR: 11, EventType: EventIPL, Component: component,
			Event: name, Note: "section contents", Digests: m.digests(),
		})
	}
	return refs, nil
}

// StubCmdlineReference predicts systemd-stub's PCR 12 measurement of a
// kernel command line passed as the image's load options (one that
// replaces the UKI's .cmdline section): the UTF-16LE string with its NUL
// terminator.
func StubCmdlineReference(cmdline string, banks []Bank) (Reference, error) {
	units := utf16.Encode([]rune(cmdline))
	data := make([]byte, 0, 2*len(units)+2)
	for _, u := range units {
		data = binary.LittleEndian.AppendUint16(data, u)
	}
	data = append(data, 0, 0)
	d, err := hashBytes(banks, data)
	if err != nil {
		return Reference{}, err
	}
	return Reference{
		Kind: KindKernelCmdline, PCR: 12, EventType: EventEventTag, Component: "kernel command line",
		Event: cmdline, Note: "systemd-stub load options", Digests: d,
	}, nil
}
