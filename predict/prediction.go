// Package predict computes the digests that a measured boot records, from the
// boot artifacts themselves: Authenticode hashes of EFI applications, GRUB's
// file and command measurements, systemd-stub's UKI section measurements,
// Secure Boot variables and shim's MOK and SBAT measurements.
//
// The result is a Prediction: a list of reference values, each naming the
// event kind, the PCR, the component it came from and its digest in every
// bank. A Prediction states what a boot would measure if it used these
// artifacts, and nothing about whether they should be trusted. Signing
// and policy are the bundle and policy packages' concern.
//
// Every parser in this package reads untrusted bytes (a package downloaded
// from a mirror, a firmware variable store) and bounds-checks each length
// before use.
package predict

import (
	"crypto"
	_ "crypto/sha1" // registers SHA-1 for crypto.Hash.New
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// FormatVersion is the version of the Prediction JSON form written by this
// package. A reader rejects a Prediction whose version it does not know.
const FormatVersion = 1

// Bank names a PCR bank by its hash algorithm, as TCG's algorithm registry
// spells it in lower case.
type Bank string

// The banks this package computes.
const (
	SHA1   Bank = "sha1"
	SHA256 Bank = "sha256"
	SHA384 Bank = "sha384"
)

// AllBanks lists every bank this package computes, in the order used for
// output.
var AllBanks = []Bank{SHA1, SHA256, SHA384}

// Hash returns the hash function of the bank.
func (b Bank) Hash() (crypto.Hash, error) {
	switch b {
	case SHA1:
		return crypto.SHA1, nil
	case SHA256:
		return crypto.SHA256, nil
	case SHA384:
		return crypto.SHA384, nil
	}
	return 0, fmt.Errorf("unknown bank %q: use sha1, sha256 or sha384", string(b))
}

// ParseBank returns the bank named s (case-insensitive).
func ParseBank(s string) (Bank, error) {
	b := Bank(strings.ToLower(strings.TrimSpace(s)))
	if _, err := b.Hash(); err != nil {
		return "", err
	}
	return b, nil
}

// Digest is a hash value. Its JSON form is a lower-case hex string.
type Digest []byte

// String returns the digest in lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d) }

// MarshalText encodes the digest as lower-case hex.
func (d Digest) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(d)))
	hex.Encode(out, d)
	return out, nil
}

// UnmarshalText decodes a hex digest.
func (d *Digest) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(out, text); err != nil {
		return fmt.Errorf("invalid hex digest %.80q: %w", text, err)
	}
	*d = out
	return nil
}

// Digests maps each bank to a digest.
type Digests map[Bank]Digest

// Kind names what a reference value measures. Each kind fixes the event type
// and the usual PCR. Reference records both so that a reader need not know
// the table below.
type Kind string

// Reference value kinds.
const (
	// KindBootApplication is a PE/COFF image's Authenticode hash, measured by
	// UEFI firmware (or by shim for the image it verifies) as an
	// EV_EFI_BOOT_SERVICES_APPLICATION event in PCR 4.
	KindBootApplication Kind = "boot-application"
	// KindGrubFile is the plain hash of a file GRUB read (configuration,
	// kernel, initrd): EV_IPL in PCR 9.
	KindGrubFile Kind = "grub-file"
	// KindGrubCommand is the hash of a GRUB command line as GRUB ran it
	// (after quote removal and variable expansion): EV_IPL in PCR 8, event
	// text "grub_cmd: ...".
	KindGrubCommand Kind = "grub-command"
	// KindKernelCmdline is a kernel command line: GRUB's "kernel_cmdline: ..."
	// EV_IPL in PCR 8, or systemd-stub's load options in PCR 12.
	KindKernelCmdline Kind = "kernel-cmdline"
	// KindUKISection is one systemd-stub measurement of a unified kernel
	// image in PCR 11: either a section name (with its NUL) or the section's
	// contents. Reference.Event names the section.
	KindUKISection Kind = "uki-section"
	// KindSecureBootVariable is an EV_EFI_VARIABLE_DRIVER_CONFIG event in
	// PCR 7 (SecureBoot, PK, KEK, db, dbx), hashed as a UEFI_VARIABLE_DATA
	// structure.
	KindSecureBootVariable Kind = "secure-boot-variable"
	// KindVariableAuthority is an EV_EFI_VARIABLE_AUTHORITY event in PCR 7:
	// the db or MokList entry (an EFI_SIGNATURE_DATA) that authorized a boot
	// application.
	KindVariableAuthority Kind = "variable-authority"
	// KindShimVariable is one of shim's own variable measurements: MokList,
	// MokListX or MokListTrusted (EV_IPL in PCR 14), or SbatLevel
	// (EV_EFI_VARIABLE_AUTHORITY in PCR 7). Reference.Event names the
	// variable.
	KindShimVariable Kind = "shim-variable"
	// KindSeparator is the EV_SEPARATOR event firmware logs in PCRs 0 to 7
	// when it hands over to the boot loader.
	KindSeparator Kind = "separator"
	// KindEFIAction is an EV_EFI_ACTION event whose text the TCG firmware
	// profile fixes, such as "Exit Boot Services Invocation".
	KindEFIAction Kind = "action"
)

// TCG PC Client event type names used in Reference.EventType.
const (
	EventIPL                        = "EV_IPL"
	EventEFIBootServicesApplication = "EV_EFI_BOOT_SERVICES_APPLICATION"
	EventEFIVariableDriverConfig    = "EV_EFI_VARIABLE_DRIVER_CONFIG"
	EventEFIVariableAuthority       = "EV_EFI_VARIABLE_AUTHORITY"
	EventEventTag                   = "EV_EVENT_TAG"
	EventSeparator                  = "EV_SEPARATOR"
	EventEFIAction                  = "EV_EFI_ACTION"
)

// Package identifies the distribution package an artifact came from.
type Package struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture,omitempty"`
	// SHA256 is the digest of the package file itself, empty for an unpacked
	// tree.
	SHA256 Digest `json:"sha256,omitempty"`
}

// String returns "name version".
func (p *Package) String() string {
	if p == nil {
		return ""
	}
	return p.Name + " " + p.Version
}

// Reference is one predicted measurement.
type Reference struct {
	// Kind is the kind of measurement.
	Kind Kind `json:"kind"`
	// PCR is the PCR index the event extends.
	PCR int `json:"pcr"`
	// EventType is the TCG event type name, e.g. "EV_IPL".
	EventType string `json:"eventType"`
	// Component is the artifact's short name ("grubx64.efi", "vmlinuz",
	// "db"), the word a verdict uses to name the event.
	Component string `json:"component"`
	// Package is the package the artifact came from, when known.
	Package *Package `json:"package,omitempty"`
	// Path is the artifact's path inside the package or tree, when it is a
	// file.
	Path string `json:"path,omitempty"`
	// Event is the event's descriptive text where the event carries one: the
	// GRUB command or command line, the UKI section name, the variable name.
	Event string `json:"event,omitempty"`
	// Note qualifies the value, e.g. which of several alternatives it is.
	Note string `json:"note,omitempty"`
	// Digests is the event digest in each bank.
	Digests Digests `json:"digests"`
}

// Prediction is the output of a prediction run: the reference values for a
// set of artifacts.
type Prediction struct {
	// Version is FormatVersion.
	Version int `json:"version"`
	// Packages lists the packages read, in input order.
	Packages []Package `json:"packages,omitempty"`
	// References lists the predicted measurements in input order.
	References []Reference `json:"references"`
}

// Validate checks the structure of a Prediction read from JSON: a known
// version, a PCR in 0..23, a kind, and in each bank a digest of the bank's
// size.
func (p *Prediction) Validate() error {
	if p.Version != FormatVersion {
		return fmt.Errorf("prediction version %d is not supported: this build reads version %d", p.Version, FormatVersion)
	}
	for i, r := range p.References {
		if r.Kind == "" {
			return fmt.Errorf("reference %d: missing kind", i)
		}
		if r.PCR < 0 || r.PCR > 23 {
			return fmt.Errorf("reference %d (%s): PCR %d out of range 0..23", i, r.Component, r.PCR)
		}
		if len(r.Digests) == 0 {
			return fmt.Errorf("reference %d (%s): no digests", i, r.Component)
		}
		for bank, d := range r.Digests {
			h, err := bank.Hash()
			if err != nil {
				return fmt.Errorf("reference %d (%s): %w", i, r.Component, err)
			}
			if len(d) != h.Size() {
				return fmt.Errorf("reference %d (%s): %s digest has %d bytes, expected %d", i, r.Component, bank, len(d), h.Size())
			}
		}
	}
	return nil
}

// multiHash feeds the same bytes to one hash per bank.
type multiHash struct {
	banks  []Bank
	hashes []hash.Hash
}

func newMultiHash(banks []Bank) (*multiHash, error) {
	m := &multiHash{banks: banks}
	for _, b := range banks {
		h, err := b.Hash()
		if err != nil {
			return nil, err
		}
		m.hashes = append(m.hashes, h.New())
	}
	return m, nil
}

func (m *multiHash) Write(p []byte) (int, error) {
	for _, h := range m.hashes {
		h.Write(p)
	}
	return len(p), nil
}

func (m *multiHash) digests() Digests {
	out := make(Digests, len(m.banks))
	for i, b := range m.banks {
		out[b] = m.hashes[i].Sum(nil)
	}
	return out
}

// hashBytes returns the digest of data in each bank.
func hashBytes(banks []Bank, data ...[]byte) (Digests, error) {
	m, err := newMultiHash(banks)
	if err != nil {
		return nil, err
	}
	for _, d := range data {
		m.Write(d)
	}
	return m.digests(), nil
}
