// Package policy judges a machine's measured boot against reference values
// and local rules, and explains each event it could not accept.
//
// Policy accepts only evidence that a quote verified. Its input, [Evidence],
// contains the events of a log whose replay reproduced PCR values covered
// by a verified quote, restricted to the banks that matched. A caller
// obtains it with [FromVerifiedLog] after eventlog.Verify succeeded. Reference values
// come from signed bundles ([bundle.Verified]) and from per-machine firmware
// values that an administrator approved ([Baseline]). Rules ([Rules]) check
// decoded state such as Secure Boot and the kernel command line.
package policy

import (
	"sort"

	"github.com/vouch-attest/vouch/bundle"
)

// Event is one event of a verified log, as passed to a policy.
type Event struct {
	// Number is the event's position in the log, counting from 0.
	Number int
	PCR    int
	// Type is the TCG event type name, such as "EV_IPL".
	Type string
	// Digests holds the event's digests in the verified banks only.
	Digests map[bundle.Bank][]byte
	// DataTrusted is true when the event type defines the digest as the
	// hash of the event data and the data matched it, so the decoded
	// fields below describe what was measured. Otherwise they are
	// unverified claims of the log's writer: usable to name an event in a
	// verdict, and for nothing else.
	DataTrusted bool
	// Text is the decoded string of EV_IPL, EV_ACTION, EV_EFI_ACTION and
	// similar string events.
	Text string
	// Variable is set for EV_EFI_VARIABLE_* events.
	Variable *Variable
	// ImagePath is the file path from the device path of an image load
	// event, such as `\EFI\debian\grubx64.efi`. It is never trusted.
	ImagePath string
	// Label names the component when the event data does not: for an
	// image GRUB loaded from memory, the file it read just before. Like
	// ImagePath it is a label for verdicts, never evidence.
	Label string
}

// Variable is the decoded UEFI_VARIABLE_DATA of a variable event.
type Variable struct {
	Name       string
	VendorGUID string
	// Enabled is set for one-byte boolean variables such as SecureBoot.
	Enabled *bool
	// SHA256 lists the EFI_CERT_SHA256 entries of a signature database
	// (db, dbx, MokListX).
	SHA256 [][]byte
	// Certificates lists the X.509 DER entries of a signature database.
	Certificates [][]byte
	// Authority is the signature data of an EV_EFI_VARIABLE_AUTHORITY
	// event: the certificate (DER) or digest that verified the next image.
	Authority []byte
}

// Evidence is a verified boot: the events of a log whose replay matched the
// PCR values of a verified quote. Build it with [FromVerifiedLog]; policy
// trusts nothing else.
type Evidence struct {
	events []Event
	// banks are the banks whose replay matched the quote.
	banks []bundle.Bank
	// quoted lists the PCRs the quote covered in a verified bank.
	quoted map[int]bool
	// logged counts the log's measured events per PCR, quoted or not.
	logged map[int]int
}

// Events returns the events of the evidence. Callers must not modify them.
func (e *Evidence) Events() []Event { return e.events }

// Banks returns the verified banks.
func (e *Evidence) Banks() []bundle.Bank { return e.banks }

// Quoted reports whether the quote covered PCR i in a verified bank.
func (e *Evidence) Quoted(i int) bool { return e.quoted[i] }

// LoggedEvents returns how many measured events (EV_NO_ACTION excluded)
// the log holds for PCR i, whether or not the quote covered it.
func (e *Evidence) LoggedEvents(i int) int { return e.logged[i] }

// QuotedPCRs returns the PCRs the quote covered, sorted.
func (e *Evidence) QuotedPCRs() []int {
	out := make([]int, 0, len(e.quoted))
	for i := range e.quoted {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}
