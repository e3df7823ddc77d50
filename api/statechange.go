package api

import "time"

// StateChangeType is the Type of every StateChange.
const StateChangeType = "machine.state_changed"

// StateChange is the JSON document the verifier sends to webhooks when a
// machine's state changes. OldState is empty for a machine that just
// enrolled and NewState is empty for one an administrator removed.
type StateChange struct {
	Type string `json:"type"`
	// DeliveryID identifies the change. Retries of a delivery carry the
	// same ID, so a receiver can drop duplicates.
	DeliveryID string    `json:"delivery_id"`
	Time       time.Time `json:"time"`
	Machine    string    `json:"machine"`
	OldState   string    `json:"old_state"`
	NewState   string    `json:"new_state"`
	// Kind is the history entry's kind: state, enrolled, revoked or
	// forgotten.
	Kind        string   `json:"kind"`
	ReasonCodes []string `json:"reason_codes"`
	// Detail is the history entry's explanation, such as the first reason's
	// message. It may quote data the machine sent.
	Detail    string `json:"detail,omitempty"`
	BootCount int64  `json:"boot_count"`
}
