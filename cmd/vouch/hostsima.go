package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/vouch-attest/vouch/api"
)

// printIMAReport prints the IMA part of a verdict under "vouch hosts show".
func printIMAReport(w io.Writer, r *api.IMAReport) {
	if r == nil {
		return
	}
	if r.Missing != "" {
		fmt.Fprintf(w, "  IMA:     no list: %s\n", termText(r.Missing))
		return
	}
	fmt.Fprintf(w, "  IMA:     %d entries verified in this boot, %d violations; this round %d from offset %d, %d pending\n",
		r.Entries, r.Violations, r.Verified, r.Offset, r.Pending)
	var details []string
	if r.BootAggregate != "" {
		details = append(details, "boot_aggregate "+r.BootAggregate)
	}
	if len(r.Schemes) > 0 {
		banks := make([]string, 0, len(r.Schemes))
		for bank, scheme := range r.Schemes {
			banks = append(banks, bank+" "+scheme)
		}
		sort.Strings(banks)
		details = append(details, "extended as "+strings.Join(banks, ", "))
	}
	if len(details) > 0 {
		fmt.Fprintf(w, "           %s\n", strings.Join(details, "; "))
	}
	if r.Policy == "on" {
		fmt.Fprintf(w, "           file policy: %d checked, %d accepted, %d excluded, %d warnings\n", r.Checked, r.Accepted, r.Excluded, len(r.Warnings))
	} else {
		fmt.Fprintln(w, "           file policy: off (entries replayed, not checked against an allowlist)")
	}
	for _, x := range r.Warnings {
		fmt.Fprintf(w, "    ! [%s] %s\n", x.Code, printableName([]byte(x.Message)))
	}
}
