package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/eventlog"
)

func newEventlogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eventlog",
		Short: "Inspect and replay TCG boot event logs",
		Long: `Inspect and replay TCG PC Client boot event logs, such as
/sys/kernel/security/tpm0/binary_bios_measurements. Both the TPM 1.2
SHA-1 format and the TPM 2.0 crypto-agile format are read.`,
	}
	cmd.AddCommand(newEventlogShowCmd(), newEventlogReplayCmd())
	return cmd
}

const eventlogExitCodes = `
Exit codes:
  0  success (replay: every compared bank matches --expect)
  1  the log does not replay to the --expect values, or no bank in
     --expect can be verified from the log
  2  invalid flags or arguments
  3  the log or the --expect file cannot be read or parsed`

func newEventlogShowCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print the events of a log, decoded",
		Long: `Print every event of a log with its number, offset, PCR, type and a summary
of its decoded data, followed by findings such as events whose data does not
hash to their digest. -o json and -o yaml also print each event's digests,
raw data and full decoding. FILE "-" reads standard input.` + eventlogExitCodes,
		Args: exactArgs("event log FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return withExitCode(exitUsage, err)
			}
			log, err := readEventLog(cmd, args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			if err := writeShow(w, format, log); err != nil {
				return err
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func newEventlogReplayCmd() *cobra.Command {
	var (
		format      string
		expectPath  string
		workarounds []string
	)
	cmd := &cobra.Command{
		Use:   "replay FILE [--expect PCRS]",
		Short: "Replay a log into PCR values and compare them with expected values",
		Long: `Replay a log into per-bank PCR values. With --expect, compare them with
PCR values from a JSON file ({"banks": {"sha256": {"0": "hex", ...}}}) or
the YAML output of tpm2_pcrread, and print a verdict per PCR. FILE "-"
reads standard input.

Only the PCRs in --expect are compared. Banks the log has no digests for
are reported as "unused" when every expected value is a reset value, and
as "not-in-log" otherwise: they are not verified.

--insecure-workaround allows a named firmware quirk correction, tried only
when strict replay does not match (repeat it, or pass "all"):
  exit-boot-services-missing  append the unlogged ExitBootServices actions
                              to PCR 5
  windows-capped-sha1         accept a SHA-1 bank Windows capped with an
                              unlogged extend; the bank is not verified` + eventlogExitCodes,
		Args: exactArgs("event log FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return withExitCode(exitUsage, err)
			}
			opts, err := parseWorkarounds(workarounds)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			if args[0] == "-" && expectPath == "-" {
				return withExitCode(exitUsage, errors.New("FILE and --expect cannot both read standard input"))
			}
			log, err := readEventLog(cmd, args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			if expectPath == "" {
				values, err := eventlog.Replay(log)
				if err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", args[0], err))
				}
				for _, alg := range log.Banks {
					if _, ok := values[alg]; !ok {
						fmt.Fprintf(cmd.ErrOrStderr(), "vouch: %s bank not replayed: no %s implementation\n", alg, alg)
					}
				}
				return writeReplay(cmd.OutOrStdout(), format, values)
			}
			raw, err := readLimited(expectPath, cmd.InOrStdin(), maxSmallFileSize)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("--expect: %w", err))
			}
			expected, err := eventlog.ParseExpectedPCRs(raw)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", expectPath, err))
			}
			res, verr := eventlog.Verify(log, expected, opts)
			if res == nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", args[0], verr))
			}
			if err := writeVerify(cmd.OutOrStdout(), format, res); err != nil {
				return err
			}
			var mismatch *eventlog.MismatchError
			if errors.As(verr, &mismatch) {
				// The values came from a file, not from a quote.
				mismatch.Expected = "the --expect values"
			}
			if verr != nil {
				return withExitCode(exitMismatch, verr)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().StringVar(&expectPath, "expect", "", "file of expected PCR values (JSON or tpm2_pcrread YAML) to compare with")
	cmd.Flags().StringSliceVar(&workarounds, "insecure-workaround", nil, `firmware quirk to correct for when strict replay fails: a name, or "all"`)
	return cmd
}

func checkFormat(format string) error {
	switch format {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("invalid --output %q: use table, json or yaml", format)
}

func parseWorkarounds(names []string) (eventlog.VerifyOptions, error) {
	var opts eventlog.VerifyOptions
	for _, n := range names {
		if n == "all" {
			opts.Workarounds = eventlog.Workarounds()
			continue
		}
		w, err := eventlog.ParseWorkaround(n)
		if err != nil {
			return opts, err
		}
		opts.Workarounds = append(opts.Workarounds, w)
	}
	return opts, nil
}

// maxEventLogSize bounds what is read from a file or standard input.
// Firmware logs are tens of kilobytes; TDX CCEL areas are 256 KiB.
const maxEventLogSize = 64 << 20

func readInput(cmd *cobra.Command, path string) ([]byte, error) {
	return readLimited(path, cmd.InOrStdin(), maxEventLogSize)
}

func readEventLog(cmd *cobra.Command, path string) (*eventlog.Log, error) {
	raw, err := readInput(cmd, path)
	if err != nil {
		return nil, err
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return log, nil
}

func writeReplay(w io.Writer, format string, values eventlog.PCRValues) error {
	switch format {
	case "json":
		return writeJSON(w, values)
	case "yaml":
		return writeYAML(w, values)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BANK\tPCR\tVALUE")
	for _, alg := range values.Banks() {
		for _, i := range values.Indexes(alg) {
			fmt.Fprintf(tw, "%s\t%d\t%x\n", alg, i, values[alg][i])
		}
	}
	return tw.Flush()
}

func writeVerify(w io.Writer, format string, res *eventlog.Result) error {
	switch format {
	case "json":
		return writeJSON(w, res)
	case "yaml":
		return writeYAML(w, res)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BANK\tPCR\tVERDICT\tREPLAYED\tEXPECTED\tEVENTS")
	for _, b := range res.Banks {
		for _, p := range b.PCRs {
			verdict := "match"
			switch {
			case b.Status == eventlog.BankUnused || b.Status == eventlog.BankNotInLog || b.Status == eventlog.BankCapped:
				verdict = string(b.Status)
			case !p.Match:
				verdict = "MISMATCH"
			}
			replayed := "-"
			if p.Replayed != nil {
				replayed = hex.EncodeToString(p.Replayed)
			}
			events := ""
			if len(p.Events) > 0 {
				events = strings.Trim(fmt.Sprint(p.Events), "[]")
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%x\t%s\n", b.Bank, p.Index, verdict, replayed, p.Quoted, events)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, b := range res.Banks {
		line := fmt.Sprintf("%s: %s", b.Bank, b.Status)
		if b.Workaround != "" {
			line += " with workaround " + string(b.Workaround)
		}
		fmt.Fprintln(w, line)
	}
	for _, f := range res.Findings {
		fmt.Fprintf(w, "finding: %s\n", termText(fmt.Sprint(f)))
	}
	return nil
}
