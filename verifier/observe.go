package verifier

import (
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
)

// Notifier receives the changes of machines' states. The server calls
// Notify after it stored each change. It makes one machine's changes one
// at a time (under the machine's lock, or at enrollment before the agent
// can attest), so they reach Notify in order. Notify must not block: it
// queues the change and returns.
type Notifier interface {
	Notify(api.StateChange)
}

// stateChanged counts a change of m's state from oldState and passes it
// to the Notifier, with the kind and detail of its history entry ev.
func (s *Server) stateChanged(oldState string, m store.Machine, ev store.Event, at time.Time) {
	if oldState != m.State {
		s.metrics.stateChanges.WithLabelValues(oldState, m.State).Inc()
	}
	if s.cfg.Notifier == nil {
		return
	}
	codes := m.Reasons
	if codes == nil {
		codes = []string{}
	}
	s.cfg.Notifier.Notify(api.StateChange{
		Type:        api.StateChangeType,
		Time:        at,
		Machine:     m.Name,
		OldState:    oldState,
		NewState:    m.State,
		Kind:        ev.Kind,
		ReasonCodes: codes,
		Detail:      ev.Detail,
		BootCount:   m.BootCount,
	})
}
