// Command vouch is the Vouch agent, verifier and offline toolset for TPM
// measured boot and remote attestation. This package only parses flags and
// wires the packages that do the work.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	root := newRootCmd()
	err := root.Execute()
	if err == nil {
		return
	}

	printError(os.Stderr, err)
	var exit *exitError
	if errors.As(err, &exit) {
		os.Exit(exit.code)
	}
	os.Exit(exitUsage)
}

// printError writes err for a terminal. Errors quote values read from
// logs, lists, bundles and servers, so every control character but the
// newline between joined errors is escaped, as termText does for tables.
func printError(w io.Writer, err error) {
	lines := strings.Split(err.Error(), "\n")
	for i, line := range lines {
		lines[i] = termText(line)
	}
	fmt.Fprintf(w, "vouch: %s\n", strings.Join(lines, "\n"))
}
