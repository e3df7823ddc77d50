package api

import (
	"fmt"
	"regexp"
	"strings"
)

// newMachineNamePattern is the form of a name a machine may enroll as.
var newMachineNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckNewMachineName returns an error when a machine may not enroll as
// name. Host names compare without case and a trailing dot names the same
// DNS host, so new names are lower case without a trailing dot, and WEB1
// or web1. cannot enroll beside web1 as look-alikes. Machines enrolled
// under older rules keep their names until they enroll again.
func CheckNewMachineName(name string) error {
	lower := strings.TrimRight(strings.ToLower(name), ".")
	if lower != name && newMachineNamePattern.MatchString(lower) {
		return fmt.Errorf("invalid machine name %q: machine names are lower case and end without a dot, as host names compare that way: use %q", name, lower)
	}
	if !newMachineNamePattern.MatchString(name) || strings.HasSuffix(name, ".") {
		return fmt.Errorf("invalid machine name %q: use 1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit and not ending with a dot", name)
	}
	return nil
}
