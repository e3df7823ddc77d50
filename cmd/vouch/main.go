// Command vouch is the Vouch agent, verifier and offline toolset for TPM
// measured boot and remote attestation. This package only parses flags and
// wires the packages that do the work.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	root := newRootCmd()
	err := root.Execute()
	if err == nil {
		return
	}

	fmt.Fprintf(os.Stderr, "vouch: %v\n", err)
	var exit *exitError
	if errors.As(err, &exit) {
		os.Exit(exit.code)
	}
	os.Exit(exitUsage)
}
