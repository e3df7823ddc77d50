// Package store persists the verifier's state: enrolled machines, the EKs
// they were enrolled with (including revoked ones), verdicts and an
// append-only history of every state change.
//
// Store is the interface the verifier uses. OpenSQLite returns the embedded
// implementation, and OpenPostgres the one that several verifier replicas
// share. Both run the same SQL, every method in a single transaction.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every implementation. Callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Machine states, as reported by the API.
const (
	StatePending     = "pending"
	StateTrusted     = "trusted"
	StateUntrusted   = "untrusted"
	StateUnreachable = "unreachable"
)

// EK statuses.
const (
	EKPinned   = "pinned"   // registered by an administrator, not yet used
	EKEnrolled = "enrolled" // bound to a machine
	EKRevoked  = "revoked"  // never accepted again, under any name
)

// Machine is one enrolled machine.
type Machine struct {
	Name string
	// EKHash is the hex SHA-256 of the EK's PKIX public key. It identifies the TPM.
	EKHash string
	// AKPublic is the AK's TPMT_PUBLIC area, bound to the EK by credential activation.
	AKPublic []byte
	// Approved is set when no approval is required or an administrator approved the machine.
	Approved bool
	State    string
	// Reasons holds machine-readable reason codes of the last verdict.
	Reasons []string
	// StateSince is when State last changed.
	StateSince time.Time
	// LastVerdictAt is when evidence was last judged (zero before the first).
	LastVerdictAt time.Time
	// LastSeenAt is when the agent last had an open session.
	LastSeenAt time.Time
	// BootCount counts boots seen by the verifier (resetCount changes).
	BootCount int64
	// ResetCount, RestartCount and Clock are the last verified TPMS_CLOCK_INFO values.
	ResetCount   uint32
	RestartCount uint32
	Clock        uint64
	// EventLogSHA256 is the hex digest of the last verified event log of the current boot.
	EventLogSHA256 string
	// IMAOffset is the number of IMA entries verified in the current boot.
	IMAOffset int64
	// IMAState holds the verifier's IMA record of the current boot: the
	// replayed PCR values at IMAOffset and the boot's IMA findings (JSON,
	// opaque to the store).
	IMAState []byte
	// Reference holds the policy's reference values (JSON, opaque to the store).
	Reference []byte
	// ReferenceApproved is set when an administrator approved Reference.
	ReferenceApproved bool
	// Facts holds the host facts the agent sent at enrollment (JSON, untrusted).
	Facts     []byte
	IntervalS int64 // attestation interval in seconds; 0 means the server default
	CreatedAt time.Time
	UpdatedAt time.Time
}

// EK is an endorsement key known to the verifier.
type EK struct {
	Hash      string // hex SHA-256 of the PKIX public key
	PublicDER []byte // PKIX public key, may be empty for a pin by hash
	CertDER   []byte // EK certificate, if any
	Status    string
	Machine   string // machine name when enrolled or revoked after enrollment
	Note      string
	UpdatedAt time.Time
}

// Verdict is one judgement of a machine's evidence.
type Verdict struct {
	ID        int64
	Machine   string
	At        time.Time
	State     string
	Reasons   []string
	Detail    []byte // JSON explanation, opaque to the store
	BootCount int64
	IMA       []byte // JSON IMA part of the verdict, opaque to the store; nil when none
}

// Event is one append-only history entry.
type Event struct {
	ID      int64
	At      time.Time
	Machine string
	Kind    string // enrolled, state, approved, revoked, forgotten, ek-pinned, ...
	From    string
	To      string
	Detail  string
}

// Store is the verifier's persistence. Every method is atomic: it commits
// completely or not at all, and a committed write survives a crash of the
// process (kill -9) or of the machine.
type Store interface {
	// CreateMachine inserts m and marks its EK enrolled to it. It returns
	// ErrConflict if the name or the EK is taken or the EK is revoked.
	CreateMachine(ctx context.Context, m Machine, ek EK, ev Event) error
	// UpdateMachine replaces the stored machine named m.Name, and appends ev
	// to the history when ev.Kind is set. When m.UpdatedAt is set (as in a
	// Machine read from the store), the stored machine must not have been
	// written since. Otherwise UpdateMachine changes nothing and returns
	// ErrConflict, and the caller should read the machine again and retry.
	// A zero UpdatedAt replaces the machine unconditionally.
	UpdateMachine(ctx context.Context, m Machine, ev Event) error
	// RecordVerdict stores v, replaces the machine and appends ev when
	// ev.Kind is set, in one transaction. It checks m.UpdatedAt as
	// UpdateMachine does.
	RecordVerdict(ctx context.Context, m Machine, v Verdict, ev Event) (int64, error)
	// DeleteMachine removes a machine and its verdicts; its EK goes back to
	// pinned (so it may enroll again) unless revoked. History is kept.
	DeleteMachine(ctx context.Context, name string, ev Event) error
	Machine(ctx context.Context, name string) (Machine, error)
	MachineByEK(ctx context.Context, ekHash string) (Machine, error)
	Machines(ctx context.Context) ([]Machine, error)

	// PutEK inserts or replaces an EK record and appends ev.
	PutEK(ctx context.Context, ek EK, ev Event) error
	EK(ctx context.Context, hash string) (EK, error)
	EKs(ctx context.Context) ([]EK, error)

	// Verdicts returns up to limit verdicts of a machine, newest first.
	Verdicts(ctx context.Context, machine string, limit int) ([]Verdict, error)
	// History returns up to limit events, newest first. An empty machine
	// means every machine.
	History(ctx context.Context, machine string, limit int) ([]Event, error)

	Close() error
}
