package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vouch-attest/vouch/agent"
)

// simulateIMAList sets up --simulate-ima-log: the agent's list becomes
// STATE_DIR/simulated-ima.bin, started over on a fresh boot, and the
// returned TPM brings it up to date with the recorded list before each
// quote. Without the flag it returns dev.
func simulateIMAList(dev *agent.DeviceTPM, source, simulateBoot, stateDir string, freshBoot bool, imaPath *string) (agent.TPM, error) {
	if source == "" {
		return dev, nil
	}
	if simulateBoot == "" {
		return nil, withExitCode(exitUsage, errors.New("--simulate-ima-log needs --simulate-boot"))
	}
	*imaPath = filepath.Join(stateDir, "simulated-ima.bin")
	if freshBoot {
		if err := os.Remove(*imaPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, withExitCode(exitUnavailable, err)
		}
	}
	sim := &agent.SimulatedIMA{Device: dev, Source: source, List: *imaPath}
	if _, err := sim.Sync(); err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("--simulate-ima-log: %w", err))
	}
	return agent.WithBeforeQuote(dev, func() error { _, err := sim.Sync(); return err }), nil
}
