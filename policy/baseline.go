package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/internal/strictjson"
)

// FirmwarePCRs are the PCRs whose events the platform firmware and its
// configuration produce: code (0, 2), configuration (1, 3), the boot
// loader's partition table and boot manager (5, 6) and Secure Boot (7).
// They differ from machine to machine, so their reference values are
// recorded per machine at enrollment instead of published in bundles.
var FirmwarePCRs = []int{0, 1, 2, 3, 5, 6, 7}

// firmwareParts marks the events that the firmware itself logged: every
// event of PCRs 0 to 7 before the first boot application starts, every
// later event of PCRs 0 to 3, 5 and 6, and separators and actions. The
// rest of PCR 7 after that point is shim's: its SbatLevel and the
// certificates it verified GRUB and the kernel with. That, and the boot
// applications in PCR 4, belong to the operating system and its bundles,
// so that a baseline never keeps an old shim's values accepted.
func firmwareParts(ev *Evidence) []bool {
	parts := make([]bool, len(ev.events))
	booted := false
	for i := range ev.events {
		e := &ev.events[i]
		if e.Type == "EV_EFI_BOOT_SERVICES_APPLICATION" {
			booted = true
		}
		if e.PCR > 7 {
			continue
		}
		kind := Classify(e)
		switch {
		case e.Type == "EV_EFI_BOOT_SERVICES_APPLICATION":
		case !booted, kind == bundle.KindSeparator, kind == bundle.KindAction:
			parts[i] = true
		case e.PCR != 4 && e.PCR != 7:
			parts[i] = true
		}
	}
	return parts
}

// Baseline is a machine's firmware values: the events of the firmware
// PCRs recorded from one boot. It is used only once approved. A firmware
// update yields a new revision that needs a new approval, and the
// verifier keeps earlier revisions as history.
type Baseline struct {
	Machine    string             `json:"machine"`
	Revision   int                `json:"revision"`
	RecordedAt time.Time          `json:"recorded_at"`
	Components []bundle.Component `json:"components"`
	Approval   *Approval          `json:"approval,omitempty"`
}

// Approval records who approved a baseline revision and when.
type Approval struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// Approved reports whether an administrator approved the baseline.
func (b *Baseline) Approved() bool { return b.Approval != nil && b.Approval.By != "" }

// Approve marks the baseline approved by the named administrator.
func (b *Baseline) Approve(by string, at time.Time, comment string) error {
	if by == "" {
		return errors.New("approve baseline: the approver's name is empty")
	}
	b.Approval = &Approval{By: by, At: at, Comment: comment}
	return nil
}

func (b *Baseline) sourceName() string {
	return fmt.Sprintf("machine firmware values (revision %d)", b.Revision)
}

// LearnBaseline records the firmware's events (see FirmwarePCRs: PCRs 0 to
// 7, less what boot applications logged) as a new, unapproved baseline for
// the machine. prev is the current baseline or
// nil; the new revision follows it.
func LearnBaseline(machine string, ev *Evidence, prev *Baseline, at time.Time) (*Baseline, error) {
	if ev == nil || ev.quoted == nil {
		return nil, errNoEvidence
	}
	b := &Baseline{Machine: machine, Revision: 1, RecordedAt: at}
	if prev != nil {
		b.Revision = prev.Revision + 1
	}
	parts := firmwareParts(ev)
	b.Components = learn(ev, func(i int) bool { return parts[i] })
	if len(b.Components) == 0 {
		return nil, fmt.Errorf("learn baseline: no firmware events in the quoted PCRs %v", FirmwarePCRs)
	}
	return b, nil
}

// Learn returns reference values for the events of the given PCRs that
// the firmware did not log itself (those belong in a Baseline): one
// component per name and kind, with one value per distinct measurement, in
// the verified banks. Use it on a golden machine whose boot is known good.
func Learn(ev *Evidence, pcrs []int) []bundle.Component {
	want := make(map[int]bool, len(pcrs))
	for _, p := range pcrs {
		want[p] = true
	}
	parts := firmwareParts(ev)
	return learn(ev, func(i int) bool { return want[ev.events[i].PCR] && !parts[i] })
}

// learn returns components for the events that keep selects by index.
func learn(ev *Evidence, keep func(i int) bool) []bundle.Component {
	type key struct {
		name string
		kind bundle.Kind
	}
	index := make(map[key]int)
	var out []bundle.Component
	seen := make(map[string]bool)
	for i := range ev.events {
		e := &ev.events[i]
		if !keep(i) || len(e.Digests) == 0 {
			continue
		}
		v := bundle.Value{PCR: e.PCR, Digests: make(map[bundle.Bank]bundle.Digest, len(e.Digests))}
		for bank, d := range e.Digests {
			v.Digests[bank] = bundle.Digest(d)
		}
		id := valueID(v)
		kind := Classify(e)
		if e.DataTrusted && (kind == bundle.KindGRUBCommand || kind == bundle.KindKernelCmdline) {
			v.Data = e.Text
		}
		k := key{ComponentName(e), kind}
		j, ok := index[k]
		if !ok {
			j = len(out)
			index[k] = j
			out = append(out, bundle.Component{Name: k.name, Kind: k.kind, Source: fmt.Sprintf("event %d", e.Number)})
		}
		if seen[fmt.Sprint(j)+id] {
			continue
		}
		seen[fmt.Sprint(j)+id] = true
		out[j].Values = append(out[j].Values, v)
	}
	return out
}

// Learned is the output of vouch policy learn: a golden machine's firmware
// values and the reference values of its other events. The "components"
// member makes the file usable as input to vouch bundle create.
type Learned struct {
	Baseline   *Baseline          `json:"baseline"`
	Components []bundle.Component `json:"components"`
}

// ParseBaseline decodes a baseline, either bare or as the "baseline"
// member of a Learned document, and validates its components. Duplicate
// members and member names in another case than the schema's are
// rejected; other unknown members are ignored.
func ParseBaseline(data []byte) (*Baseline, error) {
	if len(data) > bundle.MaxEnvelopeSize {
		return nil, fmt.Errorf("baseline is %d bytes, more than the limit of %d", len(data), bundle.MaxEnvelopeSize)
	}
	var doc struct {
		Baseline *Baseline `json:"baseline"`
	}
	lenient := strictjson.Options{AllowUnknown: true}
	if err := strictjson.Decode(data, &doc, lenient); err != nil {
		return nil, fmt.Errorf("decode baseline: %w", err)
	}
	b := doc.Baseline
	if b == nil {
		b = new(Baseline)
		if err := strictjson.Decode(data, b, lenient); err != nil {
			return nil, fmt.Errorf("decode baseline: %w", err)
		}
	}
	if b.Machine == "" {
		return nil, errors.New("baseline: machine is empty")
	}
	if len(b.Components) == 0 {
		return nil, errors.New("baseline: no components")
	}
	if len(b.Components) > bundle.MaxComponents {
		return nil, fmt.Errorf("baseline has %d components, more than the limit of %d", len(b.Components), bundle.MaxComponents)
	}
	for i := range b.Components {
		if err := b.Components[i].Validate(); err != nil {
			return nil, fmt.Errorf("baseline component %d (%q): %w", i, b.Components[i].Name, err)
		}
	}
	return b, nil
}

// Diff lists what changed from one baseline revision to the next, one line
// per component whose values differ, for the administrator who approves
// the new revision ("PCR 0 firmware blob 0x820000+0xe0000 (firmware-blob):
// sha256 c4ff2cfc23ae… → f4f0c5269727…").
func Diff(old, next *Baseline) []string {
	type key struct {
		name string
		kind bundle.Kind
	}
	values := func(b *Baseline) (map[key][]bundle.Value, []key) {
		m := make(map[key][]bundle.Value)
		var order []key
		if b == nil {
			return m, nil
		}
		for _, c := range b.Components {
			k := key{c.Name, c.Kind}
			if _, ok := m[k]; !ok {
				order = append(order, k)
			}
			m[k] = append(m[k], c.Values...)
		}
		return m, order
	}
	oldValues, oldOrder := values(old)
	newValues, newOrder := values(next)

	var out []string
	seen := make(map[key]bool)
	for _, k := range append(oldOrder, newOrder...) {
		if seen[k] {
			continue
		}
		seen[k] = true
		removed := subtractValues(oldValues[k], newValues[k])
		added := subtractValues(newValues[k], oldValues[k])
		if len(removed) == 0 && len(added) == 0 {
			continue
		}
		pcr := 0
		if len(removed) > 0 {
			pcr = removed[0].PCR
		} else {
			pcr = added[0].PCR
		}
		out = append(out, fmt.Sprintf("PCR %d %s (%s): %s → %s", pcr, k.name, k.kind, describeValues(removed), describeValues(added)))
	}
	return out
}

// valueID identifies a value by its PCR and digests in a fixed bank order.
func valueID(v bundle.Value) string {
	id := fmt.Sprint(v.PCR)
	for _, bank := range bankOrder {
		if d, ok := v.Digests[bank]; ok {
			id += "/" + string(bank) + ":" + string(d)
		}
	}
	return id
}

// subtractValues returns the values of a whose id is not in b.
func subtractValues(a, b []bundle.Value) []bundle.Value {
	in := make(map[string]bool, len(b))
	for _, v := range b {
		in[valueID(v)] = true
	}
	var out []bundle.Value
	for _, v := range a {
		if !in[valueID(v)] {
			out = append(out, v)
		}
	}
	return out
}

func describeValues(vs []bundle.Value) string {
	if len(vs) == 0 {
		return "(none)"
	}
	var parts []string
	for _, v := range vs {
		for _, bank := range bankOrder {
			if d, ok := v.Digests[bank]; ok {
				parts = append(parts, fmt.Sprintf("%s %s", bank, shortHex(d)))
				break
			}
		}
	}
	return strings.Join(parts, ", ")
}
