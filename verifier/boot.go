package verifier

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/policy"
	"github.com/vouch-attest/vouch/store"
)

// Boot is one verified boot as passed to a Policy: the events whose replay
// reproduced the quoted PCRs and, on request, the evidence of the policy
// package built from the same log and quote.
type Boot struct {
	// Machine is the machine's name.
	Machine string
	// Events are the replayed events of the quoted PCRs, in the verified
	// banks.
	Events []MeasuredEvent
	// At is the time of the judgement.
	At time.Time

	build    func() (*policy.Evidence, error)
	once     sync.Once
	evidence *policy.Evidence
	err      error
}

// NewBoot returns a boot whose Evidence is built, on first use, by build.
// A nil build makes Evidence fail.
func NewBoot(machine string, events []MeasuredEvent, at time.Time, build func() (*policy.Evidence, error)) *Boot {
	return &Boot{Machine: machine, Events: events, At: at, build: build}
}

// Evidence returns the quote-verified evidence of policy.FromQuote:
// decoded events whose data matched their digest, of quoted PCRs only,
// in the banks whose replay matched. It is built once, when first asked
// for, because only some policies need it.
func (b *Boot) Evidence() (*policy.Evidence, error) {
	b.once.Do(func() {
		if b.build == nil {
			b.err = errors.New("the verifier's back end does not build policy evidence")
			return
		}
		b.evidence, b.err = b.build()
	})
	return b.evidence, b.err
}

// Outcome is a policy's judgement of one boot.
type Outcome struct {
	// Reasons are the findings that make the machine untrusted.
	Reasons []api.Reason
	// Warnings are findings reported while the machine stays trusted
	// (rules whose action is warn). Their Action is "warn".
	Warnings []api.Reason
	// Revised, when not nil, replaces the stored reference values: a
	// firmware update produced a new revision of the machine's values that
	// awaits an administrator's approval, or went away again.
	Revised []byte
	// RevisedApproved reports whether Revised counts without a new approval.
	RevisedApproved bool
	// RevisionNote describes the revision for the machine's history.
	RevisionNote string
}

// ReferenceApprover is implemented by policies whose reference values
// record their own approval, such as BundlePolicy's firmware values.
type ReferenceApprover interface {
	// ApproveReference returns reference marked approved by by at at,
	// and a line for the history saying what was approved.
	ApproveReference(reference []byte, by string, at time.Time) ([]byte, string, error)
}

// EvidenceBackend is implemented by back ends that build the policy
// package's evidence from an event log and a quote they verified.
type EvidenceBackend interface {
	// PolicyEvidence replays log against the verified PCR values of q,
	// as ReplayEventLog does, and returns the evidence.
	PolicyEvidence(log []byte, q *QuoteResult) (*policy.Evidence, error)
}

// newBoot returns the boot policy judges: the replayed events, and the
// evidence built from the same log and quote when the back end can.
func (s *Server) newBoot(m store.Machine, events []MeasuredEvent, log []byte, q *QuoteResult, now time.Time) *Boot {
	var build func() (*policy.Evidence, error)
	if eb, ok := s.be.(EvidenceBackend); ok {
		build = func() (*policy.Evidence, error) { return eb.PolicyEvidence(log, q) }
	}
	return NewBoot(m.Name, events, now, build)
}

// approver is the administrator name recorded in approvals made through
// the admin API, which authenticates a shared token rather than a person.
const approver = "administrator"

// learnReference learns the machine's reference values from boot. When
// the machine's values were approved in advance (an administrator approved
// the machine before this boot, or AutoApproveReference is set), the
// learned values are approved at once.
func (s *Server) learnReference(m *store.Machine, boot *Boot) error {
	ref, err := s.policy.Learn(boot)
	if err != nil {
		return err
	}
	m.ReferenceApproved = m.ReferenceApproved || s.cfg.AutoApproveReference
	if a, ok := s.policy.(ReferenceApprover); ok && m.ReferenceApproved {
		by := approver
		if s.cfg.AutoApproveReference {
			by = "auto-approve"
		}
		if ref, _, err = a.ApproveReference(ref, by, boot.At); err != nil {
			return fmt.Errorf("approve learned reference values: %w", err)
		}
	}
	m.Reference = ref
	return nil
}

// approveReference marks the machine's stored reference values approved,
// returning the history line for policies that record approvals.
func (s *Server) approveReference(m *store.Machine, at time.Time) (string, error) {
	m.ReferenceApproved = true
	a, ok := s.policy.(ReferenceApprover)
	if !ok || m.Reference == nil {
		return "", nil
	}
	ref, note, err := a.ApproveReference(m.Reference, approver, at)
	if err != nil {
		return "", err
	}
	m.Reference = ref
	return note, nil
}
