package policy

import (
	"errors"
	"fmt"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
)

// FromVerifiedLog builds the evidence policy judges from a parsed log and
// the result of eventlog.Verify on it. The caller must have passed
// eventlog.Verify only PCR values from a quote whose signature, nonce and
// attestation key it verified (attest does this), and Verify must have
// returned a nil error.
//
// FromVerifiedLog keeps:
//
//  1. the banks whose replay matched the quote (BankMatch);
//  2. the events of PCRs the quote covered in such a bank, each with the
//     digests of only the banks that covered its PCR. A quote may select
//     other PCRs in each bank, and a bank that did not cover a PCR
//     authenticates nothing about its events. Events of PCRs no such bank
//     covered prove nothing and are dropped;
//  3. decoded data, marked trusted only for event types whose digest is
//     the hash of the data and that eventlog.Check found no fault with.
//
// EV_NO_ACTION events are dropped: they are never extended.
func FromVerifiedLog(log *eventlog.Log, res *eventlog.Result) (*Evidence, error) {
	if log == nil || res == nil {
		return nil, errors.New("policy: log or verification result is missing")
	}
	if !res.Verified() {
		return nil, errors.New("policy: the log did not verify against the quote: policy judges only a log whose replay matched a verified quote")
	}

	ev := &Evidence{quoted: make(map[int]bool), logged: make(map[int]int)}
	// covering maps each bank to the PCRs its quote covered and matched.
	algs := make(map[eventlog.Algorithm]bundle.Bank)
	covering := make(map[eventlog.Algorithm]map[int]bool)
	for _, b := range res.Banks {
		if b.Status != eventlog.BankMatch {
			continue
		}
		bank := bundle.Bank(b.Bank.String())
		if bank.DigestSize() == 0 {
			continue
		}
		algs[b.Bank] = bank
		covering[b.Bank] = make(map[int]bool, len(b.PCRs))
		ev.banks = append(ev.banks, bank)
		for _, p := range b.PCRs {
			if p.Match {
				ev.quoted[p.Index] = true
				covering[b.Bank][p.Index] = true
			}
		}
	}
	if len(ev.banks) == 0 {
		return nil, errors.New("policy: no bank of the log matched the quote")
	}
	sortBanks(ev.banks)

	faulty := make(map[int]bool)
	for _, f := range res.Findings {
		faulty[f.Event] = true
	}

	decoded := log.DecodeAll()
	for i := range log.Events {
		le := &log.Events[i]
		if le.Type == eventlog.EV_NO_ACTION {
			continue
		}
		ev.logged[int(le.PCR)]++
		if !ev.quoted[int(le.PCR)] {
			continue
		}
		e := Event{
			Number:      le.Number,
			PCR:         int(le.PCR),
			Type:        le.Type.String(),
			Digests:     make(map[bundle.Bank][]byte, len(algs)),
			DataTrusted: digestIsDataHash(le) && !faulty[le.Number],
		}
		for _, d := range le.Digests {
			if bank, ok := algs[d.Alg]; ok && covering[d.Alg][e.PCR] {
				e.Digests[bank] = d.Value
			}
		}
		if len(e.Digests) == 0 {
			return nil, fmt.Errorf("policy: event %d (PCR %d) has no digest in the verified banks %v", le.Number, le.PCR, ev.banks)
		}
		decodeInto(&e, decoded[i])
		ev.events = append(ev.events, e)
	}
	labelEvents(ev.events)
	return ev, nil
}

// digestIsDataHash reports whether the event type defines the digest as
// the hash of the event data, the types eventlog.Check verifies.
func digestIsDataHash(e *eventlog.Event) bool {
	switch e.Type {
	case eventlog.EV_SEPARATOR, eventlog.EV_ACTION, eventlog.EV_EFI_ACTION, eventlog.EV_OMIT_BOOT_DEVICE_EVENTS,
		eventlog.EV_S_CRTM_VERSION, eventlog.EV_EFI_GPT_EVENT, eventlog.EV_EFI_GPT_EVENT2,
		eventlog.EV_EFI_VARIABLE_DRIVER_CONFIG, eventlog.EV_EFI_VARIABLE_BOOT, eventlog.EV_EFI_VARIABLE_BOOT2,
		eventlog.EV_EFI_VARIABLE_AUTHORITY:
		return true
	case eventlog.EV_IPL:
		return e.PCR == 8
	}
	return false
}

func decodeInto(e *Event, data eventlog.EventData) {
	switch d := data.(type) {
	case *eventlog.IPL:
		e.Text = d.Text
	case *eventlog.Action:
		e.Text = d.Text
	case *eventlog.Text:
		e.Text = d.Text
	case *eventlog.ImageLoad:
		e.ImagePath = d.DevicePath.File()
	case *eventlog.FirmwareBlob:
		e.Label = fmt.Sprintf("firmware blob %#x+%#x", d.Base, d.Length)
	case *eventlog.EFIVariable:
		v := &Variable{Name: d.Name, VendorGUID: d.VendorGUID.String(), Enabled: d.Enabled}
		for _, l := range d.SignatureLists {
			for _, s := range l.Signatures {
				switch l.Type {
				case eventlog.CertSHA256GUID:
					v.SHA256 = append(v.SHA256, s.Data)
				case eventlog.CertX509GUID:
					v.Certificates = append(v.Certificates, s.Data)
				}
			}
		}
		if d.Authority != nil {
			v.Authority = d.Authority.Data
		}
		e.Variable = v
	}
}
