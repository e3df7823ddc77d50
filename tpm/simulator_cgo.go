//go:build cgo

package tpm

import (
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
)

// SimulatorAvailable reports whether this build includes the reference
// simulator (it needs cgo).
const SimulatorAvailable = true

// openSimulator starts the reference simulator in this process. Only one
// simulator runs at a time: a second Open blocks until the first is closed.
func openSimulator() (transport.TPMCloser, error) {
	sim, err := simulator.Get()
	if err != nil {
		return nil, err
	}
	return transport.FromReadWriteCloser(sim), nil
}
