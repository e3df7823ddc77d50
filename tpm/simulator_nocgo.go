//go:build !cgo

package tpm

import "github.com/google/go-tpm/tpm2/transport"

// SimulatorAvailable reports whether this build includes the reference
// simulator (it needs cgo).
const SimulatorAvailable = false

func openSimulator() (transport.TPMCloser, error) { return nil, ErrNoSimulator }
