package verifier

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
)

// Reason codes of the attest back end.
const (
	ReasonQuoteInvalid         = "quote_invalid"
	ReasonEventLogInvalid      = "eventlog_invalid"
	ReasonEventLogMismatch     = "eventlog_replay_mismatch"
	ReasonEventLogNoBank       = "eventlog_no_verified_bank"
	ReasonEKCertificateInvalid = "ek_certificate_invalid"
)

// AttestBackend is the production Backend: the attest package checks keys
// and quotes, the eventlog package replays logs.
type AttestBackend struct {
	// Roots are the TPM vendor CA certificates EK certificates must chain
	// to in vendor-roots mode.
	Roots []*x509.Certificate
	// Intermediates are vendor intermediate CAs, if any.
	Intermediates []*x509.Certificate
	// InsecureAllowSHA1 accepts SHA-1 signatures in EK certificate chains,
	// which older Infineon and Nuvoton CAs use.
	InsecureAllowSHA1 bool
	// Workarounds lists the event log quirks replay may correct for.
	Workarounds []eventlog.Workaround
	// IMA configures the IMA checks (VerifyIMA, in ima.go).
	IMA IMAOptions

	// replacedIMAPolicy holds the policy of SetIMAPolicy.
	replacedIMAPolicy atomic.Pointer[imaPolicyBox]
}

// ParseEK implements Backend.
func (b *AttestBackend) ParseEK(publicArea []byte) (EKKey, error) {
	ek, err := attest.ParseEKPublic(publicArea)
	if err != nil {
		return EKKey{}, err
	}
	pkix, err := x509.MarshalPKIXPublicKey(ek.Key)
	if err != nil {
		return EKKey{}, fmt.Errorf("EK public key: %w", err)
	}
	return EKKey{PKIX: pkix, Opaque: ek}, nil
}

// VerifyEKCertificate implements Backend with attest.VerifyEKCertificate:
// the certificate must certify the EK and chain to Roots.
func (b *AttestBackend) VerifyEKCertificate(certDER []byte, ek EKKey, now time.Time) error {
	if len(b.Roots) == 0 {
		return errors.New("no TPM vendor roots are configured: give --ek-roots, or pin the EK")
	}
	pub, ok := ek.Opaque.(*attest.EKPublic)
	if !ok {
		return errors.New("EK was not parsed by this back end")
	}
	_, err := attest.VerifyEKCertificate(certDER, pub.Key, attest.EKCertificateOptions{
		Roots: b.Roots, Intermediates: b.Intermediates, CurrentTime: now, InsecureAllowSHA1: b.InsecureAllowSHA1,
	})
	return err
}

// ParseAK implements Backend.
func (b *AttestBackend) ParseAK(publicArea []byte) (AKKey, error) {
	ak, err := attest.ParseAKPublic(publicArea)
	if err != nil {
		return AKKey{}, err
	}
	return AKKey{Name: ak.Name, Opaque: ak}, nil
}

// MakeCredential implements Backend.
func (b *AttestBackend) MakeCredential(rand io.Reader, ek EKKey, ak AKKey, secret []byte) ([]byte, []byte, error) {
	pub, ok := ek.Opaque.(*attest.EKPublic)
	if !ok {
		return nil, nil, errors.New("EK was not parsed by this back end")
	}
	cred, err := attest.MakeCredential(rand, pub, ak.Name, secret)
	if err != nil {
		return nil, nil, err
	}
	return cred.CredentialBlob, cred.EncryptedSecret, nil
}

// VerifyQuote implements Backend.
func (b *AttestBackend) VerifyQuote(ak AKKey, quote, signature, nonce []byte, pcrs []int, reported []api.PCRBank) (*QuoteResult, error) {
	pub, ok := ak.Opaque.(*attest.AKPublic)
	if !ok {
		return nil, errors.New("AK was not parsed by this back end")
	}
	values := attest.PCRValues{}
	var sel attest.Selection
	for _, bank := range reported {
		alg := attest.Algorithm(bank.Alg)
		if _, dup := values[alg]; dup {
			return nil, Fail(ReasonQuoteInvalid, fmt.Sprintf("bank %s is reported twice", alg))
		}
		values[alg] = map[int][]byte{}
		for i, v := range bank.Values {
			attest.SetPCR(values, alg, i, v)
		}
		sel = append(sel, attest.BankSelection{Hash: alg, PCRs: pcrs})
	}
	if len(sel) == 0 {
		return nil, Fail(ReasonQuoteInvalid, "the evidence reports no PCR bank")
	}
	vq, err := attest.VerifyQuote(pub, attest.Quote{Attest: quote, Signature: signature}, attest.QuoteExpectations{
		Nonce: nonce, Selection: sel, PCRs: values,
	})
	var ve *attest.VerificationError
	if errors.As(err, &ve) {
		return nil, Fail(ReasonQuoteInvalid, fmt.Sprintf("quote rejected (%s): %s", ve.Reason, ve.Detail))
	}
	if err != nil {
		return nil, err
	}
	res := &QuoteResult{
		ResetCount:   vq.Clock.ResetCount,
		RestartCount: vq.Clock.RestartCount,
		Clock:        vq.Clock.Clock,
		Opaque:       vq,
	}
	h := sha256.New()
	for _, alg := range vq.Verified.Banks() {
		res.Banks = append(res.Banks, alg.String())
		for _, i := range vq.Verified.Indexes(alg) {
			fmt.Fprintf(h, "%d/%d/%x;", alg, i, vq.Verified[alg][i])
		}
	}
	res.ValuesSHA256 = hex.EncodeToString(h.Sum(nil))
	return res, nil
}

// ReplayEventLog implements Backend. Only events of quoted PCRs, in banks
// whose replay matched, are returned; EV_NO_ACTION events extend nothing
// and are left out.
func (b *AttestBackend) ReplayEventLog(raw []byte, q *QuoteResult) ([]MeasuredEvent, error) {
	vq, ok := q.Opaque.(*attest.VerifiedQuote)
	if !ok {
		return nil, errors.New("quote was not verified by this back end")
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		return nil, Fail(ReasonEventLogInvalid, "the event log does not parse: "+err.Error())
	}
	// PCR 10 is IMA's: its events are in the IMA list, not the boot log.
	quoted := eventlog.PCRValues{}
	for alg, bank := range vq.Verified {
		for i, v := range bank {
			if i != imaPCR {
				attest.SetPCR(quoted, alg, i, v)
			}
		}
	}
	res, err := eventlog.Verify(log, quoted, eventlog.VerifyOptions{Workarounds: b.Workarounds})
	var mismatch *eventlog.MismatchError
	switch {
	case errors.As(err, &mismatch):
		return nil, &Failure{Reasons: mismatchReasons(log, res)}
	case errors.Is(err, eventlog.ErrNoVerifiedBank):
		return nil, Fail(ReasonEventLogNoBank, "no quoted PCR bank can be checked against the event log (the log has digests for none of the TPM's active banks)")
	case err != nil:
		return nil, Fail(ReasonEventLogInvalid, "the event log cannot be replayed: "+err.Error())
	}

	banks := res.VerifiedBanks()
	suspect := map[int]bool{}
	for _, f := range res.Findings {
		suspect[f.Event] = true
	}
	selected := map[int]bool{}
	for _, pcrs := range quoted {
		for i := range pcrs {
			selected[i] = true
		}
	}
	var events []MeasuredEvent
	decoded := log.DecodeAll()
	for i := range log.Events {
		e := &log.Events[i]
		if e.Type == eventlog.EV_NO_ACTION || e.PCR >= eventlog.NumPCRs || !selected[int(e.PCR)] {
			continue // not extended, or a PCR the quote does not cover
		}
		me := MeasuredEvent{Index: e.Number, PCR: int(e.PCR), Type: e.Type.String(), Digests: map[string]string{}}
		if suspect[e.Number] {
			me.Summary = "its data does not match its digest, so what it shows is not what was measured"
		} else {
			me.Summary = summarizeEvent(decoded[i])
		}
		for _, alg := range banks {
			if d := e.Digest(alg); d != nil {
				me.Digests[alg.String()] = fmt.Sprintf("%x", d)
			}
		}
		events = append(events, me)
	}
	return events, nil
}

// mismatchReasons explains each PCR whose replay differs from the quote.
// When every quoted PCR holds its reset value, one reason says so instead:
// the TPM never measured the boot the log describes.
func mismatchReasons(log *eventlog.Log, res *eventlog.Result) []api.Reason {
	if r, ok := neverExtended(res); ok {
		return []api.Reason{r}
	}
	var reasons []api.Reason
	for _, b := range res.Banks {
		if b.Status != eventlog.BankMismatch {
			continue
		}
		for _, p := range b.PCRs {
			if p.Match {
				continue
			}
			msg := fmt.Sprintf("PCR %d (%s): the TPM quoted %x but the event log replays to %x", p.Index, b.Bank, p.Quoted, p.Replayed)
			if len(p.Events) > 0 {
				msg += fmt.Sprintf("; the log's %s for this PCR (%s) do not account for its value, so something was extended that the log does not record, or the log was altered", plural(len(p.Events), "event"), eventNames(log, p.Events))
			} else {
				msg += "; the log has no event for this PCR, so something was extended that the log does not record"
			}
			reasons = append(reasons, api.Reason{
				Code: ReasonEventLogMismatch, Message: msg, PCR: intPtr(p.Index), Bank: b.Bank.String(),
				Digest: fmt.Sprintf("%x", p.Quoted), Expected: []string{fmt.Sprintf("%x", p.Replayed)},
			})
		}
	}
	if len(reasons) == 0 {
		reasons = append(reasons, api.Reason{Code: ReasonEventLogMismatch, Message: "the event log does not replay to the quoted PCR values"})
	}
	return reasons
}

// neverExtended returns one reason when every quoted PCR of every bank
// holds the reset value while the log has events for some of them: the
// TPM's PCRs were never extended, as with a simulator that did not replay
// the log.
func neverExtended(res *eventlog.Result) (api.Reason, bool) {
	var pcrs []string
	seen := map[int]bool{}
	events := 0
	for _, b := range res.Banks {
		for _, p := range b.PCRs {
			if !isZero(p.Quoted) {
				return api.Reason{}, false
			}
			if !p.Match && len(p.Events) > 0 && !seen[p.Index] {
				seen[p.Index] = true
				pcrs = append(pcrs, strconv.Itoa(p.Index))
				events += len(p.Events)
			}
		}
	}
	if len(pcrs) == 0 {
		return api.Reason{}, false
	}
	return api.Reason{Code: ReasonEventLogMismatch, Message: fmt.Sprintf(
		"every quoted PCR holds its reset value (zeros), but the event log has %s for PCRs %s: the TPM's PCRs were never extended with the boot the log describes; a simulator or swtpm starts with its PCRs at reset, so give the agent --simulate-boot LOG instead of --eventlog LOG",
		plural(events, "event"), strings.Join(pcrs, ", "))}, true
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return len(b) > 0
}

// plural returns "1 event" or "n events".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func eventNames(log *eventlog.Log, numbers []int) string {
	var parts []string
	for i, n := range numbers {
		if i == 6 {
			parts = append(parts, fmt.Sprintf("and %d more", len(numbers)-i))
			break
		}
		name := fmt.Sprintf("#%d", n)
		for j := range log.Events {
			if log.Events[j].Number == n {
				name += " " + log.Events[j].Type.String()
				break
			}
		}
		parts = append(parts, name)
	}
	return strings.Join(parts, ", ")
}

var _ Backend = (*AttestBackend)(nil)

// PCRAtReset implements Backend.
func (b *AttestBackend) PCRAtReset(q *QuoteResult, pcr int) bool {
	vq, ok := q.Opaque.(*attest.VerifiedQuote)
	if !ok {
		return false
	}
	found := false
	for _, bank := range vq.Verified {
		v, ok := bank[pcr]
		if !ok {
			continue
		}
		found = true
		for _, c := range v {
			if c != 0 {
				return false
			}
		}
	}
	return found
}

// maxSummary bounds the event data quoted in a summary.
const maxSummary = 120

// summarizeEvent describes an event's data for a person. For a boot
// application the path comes from the log and is not covered by the
// digest (which is the image's hash), so the summary says so.
func summarizeEvent(decoded eventlog.EventData) string {
	var s string
	switch d := decoded.(type) {
	case *eventlog.ImageLoad:
		path := d.DevicePath.File()
		if path == "" {
			path = d.DevicePath.String()
		}
		if path != "" {
			s = "logged path " + path + " (not covered by the digest)"
		}
	case *eventlog.IPL:
		s = "logged text " + strconv.Quote(d.Text)
	case *eventlog.Action:
		s = "logged text " + strconv.Quote(d.Text)
	case *eventlog.Text:
		s = "logged text " + strconv.Quote(d.Text)
	case *eventlog.EFIVariable:
		s = "EFI variable " + d.Name
	}
	if len(s) > maxSummary {
		s = s[:maxSummary] + "..."
	}
	return s
}
