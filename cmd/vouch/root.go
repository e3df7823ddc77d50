package main

import (
	"github.com/spf13/cobra"
)

// Exit codes shared by every subcommand. A verification failure (the
// evidence was read and does not match) is distinct from an operational
// failure (the evidence could not be read or reached).
const (
	exitOK          = 0
	exitMismatch    = 1 // evidence was read and did not verify
	exitUsage       = 2 // invalid flags or arguments
	exitUnreadable  = 3 // input could not be read or parsed
	exitUnavailable = 4 // a TPM, server or other dependency could not be reached
)

// exitError carries the process exit code for an error returned by a
// subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withExitCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "vouch",
		Short:         "TPM measured boot and remote attestation",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(explainFlagError)

	// Each subcommand tree lives in its own file of this package.
	root.AddCommand(
		newVersionCmd(),
		newHostsCmd(),
		newEKCmd(),
		newServerCmd(),
		newAgentCmd(),
		newDemoCmd(),
		newBundleCmd(),
		newPolicyCmd(),
		newSealCmd(),
		newUnsealCmd(),
		newTOTPCmd(),
		newEventlogCmd(),
		newTPMCmd(),
		newAttestCmd(),
		newIMACmd(),
		newPredictCmd(),
		newResultCmd(),
		newTokenCmd(),
	)
	return root
}
