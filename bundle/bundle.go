// Package bundle reads, writes, signs and verifies reference-value bundles:
// the digests that one release or package of an operating system is expected
// to leave in a measured boot, published per component and event kind so
// that independently updated components combine.
//
// A bundle travels as a DSSE envelope (payload type PayloadType) whose
// payload is the bundle's JSON, described by the JSON Schema in
// schema/bundle-v1.schema.json. Only [Verify] and the loaders built on it
// return a [Verified] bundle, and only a Verified bundle should feed policy:
// it was signed by a configured publisher key and is inside its validity
// period at the injected time.
package bundle

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SchemaV1 is the value of a version 1 bundle's "schema" member.
const SchemaV1 = "https://github.com/vouch-attest/vouch/bundle/v1"

// Limits on a bundle's contents. They bound the work and memory spent on an
// untrusted bundle and are meant to be far above what one OS release needs
// (by estimate, a release with every kernel flavour has a few hundred
// components).
const (
	MaxEnvelopeSize = 8 << 20 // bytes of envelope JSON
	MaxComponents   = 4096
	MaxValues       = 65536 // reference values summed over all components
	MaxNameLength   = 256   // publisher, product, version, component name
	MaxDataLength   = 16384 // a reference value's measured text
	MaxPCR          = 23    // PC Client TPMs have PCRs 0 to 23
)

// Kind names the kind of boot event a component's reference values match.
type Kind string

// Event kinds. Each matches events of the given TCG event types in the
// given PCRs; policy decides which event is which kind.
const (
	KindFirmwareBlob    Kind = "firmware-blob"        // EV_EFI_PLATFORM_FIRMWARE_BLOB(2), EV_POST_CODE, PCR 0 and 2
	KindFirmwareConfig  Kind = "firmware-config"      // EV_EFI_HANDOFF_TABLES(2), EV_TABLE_OF_DEVICES, PCR 1
	KindCRTMVersion     Kind = "crtm-version"         // EV_S_CRTM_VERSION, EV_S_CRTM_CONTENTS, PCR 0
	KindBootVariable    Kind = "boot-variable"        // EV_EFI_VARIABLE_BOOT(2), PCR 1
	KindSecureBootVar   Kind = "secure-boot-variable" // EV_EFI_VARIABLE_DRIVER_CONFIG, PCR 7
	KindAuthority       Kind = "variable-authority"   // EV_EFI_VARIABLE_AUTHORITY, PCR 7
	KindBootApplication Kind = "boot-application"     // EV_EFI_BOOT_SERVICES_APPLICATION (Authenticode), PCR 2 and 4
	KindDriver          Kind = "driver"               // EV_EFI_BOOT_SERVICES_DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER, PCR 2
	KindGPT             Kind = "gpt"                  // EV_EFI_GPT_EVENT, PCR 5
	KindAction          Kind = "action"               // EV_EFI_ACTION, EV_ACTION, PCR 4, 5 and 7
	KindSeparator       Kind = "separator"            // EV_SEPARATOR, PCR 0 to 7
	KindGRUBFile        Kind = "grub-file"            // GRUB's EV_IPL file hashes, PCR 9
	KindGRUBCommand     Kind = "grub-command"         // GRUB's EV_IPL "grub_cmd:" strings, PCR 8
	KindKernelCmdline   Kind = "kernel-cmdline"       // GRUB's "kernel_cmdline:" (PCR 8), systemd-stub's command line (PCR 12)
	KindUKISection      Kind = "uki-section"          // systemd-stub's section measurements, PCR 11
	KindShimVariable    Kind = "shim-variable"        // shim's MokList, MokListX, MokListTrusted, SbatLevel, PCR 14 and 7
	KindIMAFile         Kind = "ima-file"             // a file IMA measures (PCR 10): Data is its logged path, Digests its file digest
	KindOther           Kind = "other"                // anything else, matched by PCR and digest alone
)

var knownKinds = map[Kind]bool{
	KindFirmwareBlob: true, KindFirmwareConfig: true, KindCRTMVersion: true,
	KindBootVariable: true, KindSecureBootVar: true, KindAuthority: true,
	KindBootApplication: true, KindDriver: true, KindGPT: true, KindAction: true,
	KindSeparator: true, KindGRUBFile: true, KindGRUBCommand: true,
	KindKernelCmdline: true, KindUKISection: true, KindShimVariable: true,
	KindIMAFile: true, KindOther: true,
}

// Kinds returns every event kind a version 1 bundle may name.
func Kinds() []Kind {
	return []Kind{
		KindFirmwareBlob, KindFirmwareConfig, KindCRTMVersion, KindBootVariable,
		KindSecureBootVar, KindAuthority, KindBootApplication, KindDriver, KindGPT,
		KindAction, KindSeparator, KindGRUBFile, KindGRUBCommand, KindKernelCmdline,
		KindUKISection, KindShimVariable, KindIMAFile, KindOther,
	}
}

// Known reports whether k is one of the kinds listed by [Kinds].
func (k Kind) Known() bool { return knownKinds[k] }

// Bank names a PCR bank by its hash algorithm, spelled as in the TCG
// algorithm registry in lower case: "sha1", "sha256", "sha384", "sha512".
type Bank string

// Banks a bundle may carry digests for, with their digest sizes in bytes.
var bankSizes = map[Bank]int{
	"sha1":    20,
	"sha256":  32,
	"sha384":  48,
	"sha512":  64,
	"sm3_256": 32,
}

// DigestSize returns the digest size of the bank in bytes, or 0 for an
// unknown bank.
func (b Bank) DigestSize() int { return bankSizes[b] }

// Digest is a hash value, written in JSON as lower-case hexadecimal.
type Digest []byte

// MarshalText encodes d as lower-case hexadecimal.
func (d Digest) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(d)), nil
}

// UnmarshalText decodes hexadecimal, in either case.
func (d *Digest) UnmarshalText(text []byte) error {
	if len(text) > 2*64 {
		return fmt.Errorf("digest of %d hex digits is longer than any supported bank's", len(text))
	}
	b := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(b, text); err != nil {
		return fmt.Errorf("digest is not hexadecimal: %w", err)
	}
	*d = b
	return nil
}

// String returns the digest in lower-case hexadecimal.
func (d Digest) String() string { return hex.EncodeToString(d) }

// Bundle is one release's or one package's reference values.
type Bundle struct {
	// Schema is SchemaV1.
	Schema string `json:"schema"`
	// Publisher names who computed and signs the values ("debian"). A
	// verifier trusts a bundle only when a key configured for this
	// publisher signed it.
	Publisher string `json:"publisher"`
	// Product and Version name the release or package ("debian", "12.8").
	Product string `json:"product"`
	Version string `json:"version"`
	// NotBefore and NotAfter bound the period in which verifiers accept
	// the bundle. Both are required.
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Description is free text for people.
	Description string      `json:"description,omitempty"`
	Components  []Component `json:"components"`
}

// Component is one measured artifact or setting, such as a boot loader
// binary, a kernel, a GRUB command or a Secure Boot variable.
type Component struct {
	// Name identifies the component in verdicts ("grubx64.efi").
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Source names where the values came from: a package and version, a
	// file path, or a golden machine's log.
	Source string `json:"source,omitempty"`
	// Values lists every measurement the component may produce. An event
	// matches the component when it matches any one value.
	Values []Value `json:"values"`
}

// Value is one acceptable measurement: the PCR it is extended into and its
// digest in one or more banks.
type Value struct {
	PCR int `json:"pcr"`
	// Digests maps a bank to the event digest in that bank. An event
	// matches when every bank that both carry agrees and at least one bank
	// is shared.
	Digests map[Bank]Digest `json:"digests"`
	// Data is the measured text, for kinds that measure text (GRUB
	// commands, kernel command lines), so that verdicts can show it.
	Data string `json:"data,omitempty"`
	// Description is free text for people ("Authenticode SHA-256").
	Description string `json:"description,omitempty"`
}

// ID returns the name verdicts use for the bundle, "product-version".
func (b *Bundle) ID() string {
	return b.Product + "-" + b.Version
}

// Marshal returns the canonical JSON encoding of b, the bytes that a
// signature covers. It validates b first.
func (b *Bundle) Marshal() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	return append(out, '\n'), nil
}

// Parse decodes and validates an unsigned bundle's JSON. It rejects unknown
// members, duplicate member names (also in another case), names spelled in
// another case than the schema's and values outside the limits above.
// Parse does not check who made the bundle: use [Verify] for that.
func Parse(data []byte) (*Bundle, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("bundle is %d bytes, more than the limit of %d", len(data), MaxEnvelopeSize)
	}
	var b Bundle
	if err := decodeStrict(data, &b, false); err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Validate checks that b is a well-formed version 1 bundle. It does not
// check the validity period against any clock.
func (b *Bundle) Validate() error {
	if b.Schema != SchemaV1 {
		return fmt.Errorf("bundle schema %q is not supported: expected %q", b.Schema, SchemaV1)
	}
	for _, f := range []struct{ name, value string }{
		{"publisher", b.Publisher}, {"product", b.Product}, {"version", b.Version},
	} {
		if err := checkName(f.value); err != nil {
			return fmt.Errorf("bundle %s: %w", f.name, err)
		}
	}
	if b.NotBefore.IsZero() || b.NotAfter.IsZero() {
		return errors.New("bundle validity period is missing: set not_before and not_after")
	}
	if !b.NotAfter.After(b.NotBefore) {
		return fmt.Errorf("bundle not_after %s is not after not_before %s",
			b.NotAfter.Format(time.RFC3339), b.NotBefore.Format(time.RFC3339))
	}
	if len(b.Description) > MaxDataLength {
		return fmt.Errorf("bundle description is %d bytes, more than %d", len(b.Description), MaxDataLength)
	}
	if len(b.Components) == 0 {
		return errors.New("bundle has no components")
	}
	if len(b.Components) > MaxComponents {
		return fmt.Errorf("bundle has %d components, more than the limit of %d", len(b.Components), MaxComponents)
	}
	total := 0
	for i := range b.Components {
		c := &b.Components[i]
		if err := c.validate(); err != nil {
			return fmt.Errorf("bundle component %d (%q): %w", i, c.Name, err)
		}
		total += len(c.Values)
		if total > MaxValues {
			return fmt.Errorf("bundle has more than %d reference values", MaxValues)
		}
	}
	return nil
}

// Validate checks one component as Parse would, for components that travel
// outside a bundle, such as a machine's firmware values.
func (c *Component) Validate() error { return c.validate() }

func (c *Component) validate() error {
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if !c.Kind.Known() {
		return fmt.Errorf("kind %q is not a known event kind", c.Kind)
	}
	if len(c.Source) > MaxDataLength {
		return fmt.Errorf("source is %d bytes, more than %d", len(c.Source), MaxDataLength)
	}
	if len(c.Values) == 0 {
		return errors.New("component has no values")
	}
	for i := range c.Values {
		if err := c.Values[i].validate(); err != nil {
			return fmt.Errorf("value %d: %w", i, err)
		}
	}
	return nil
}

func (v *Value) validate() error {
	if v.PCR < 0 || v.PCR > MaxPCR {
		return fmt.Errorf("pcr %d is outside 0 to %d", v.PCR, MaxPCR)
	}
	if len(v.Digests) == 0 {
		return errors.New("value has no digests")
	}
	for bank, d := range v.Digests {
		size := bank.DigestSize()
		if size == 0 {
			return fmt.Errorf("bank %q is not supported: use sha1, sha256, sha384, sha512 or sm3_256", bank)
		}
		if len(d) != size {
			return fmt.Errorf("%s digest is %d bytes, expected %d", bank, len(d), size)
		}
	}
	if len(v.Data) > MaxDataLength {
		return fmt.Errorf("data is %d bytes, more than %d", len(v.Data), MaxDataLength)
	}
	if !utf8.ValidString(v.Data) || !utf8.ValidString(v.Description) {
		return errors.New("data or description is not valid UTF-8")
	}
	if len(v.Description) > MaxDataLength {
		return fmt.Errorf("description is %d bytes, more than %d", len(v.Description), MaxDataLength)
	}
	return nil
}

// checkName accepts a short, printable, non-empty identifier. Names appear in
// verdicts and terminals, so control characters are rejected.
func checkName(s string) error {
	if s == "" {
		return errors.New("value is empty")
	}
	if len(s) > MaxNameLength {
		return fmt.Errorf("value is %d bytes, more than %d", len(s), MaxNameLength)
	}
	if !utf8.ValidString(s) {
		return errors.New("value is not valid UTF-8")
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("value %q has leading or trailing space", s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("value %q contains the non-printable character %U", s, r)
		}
	}
	return nil
}
