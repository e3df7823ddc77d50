package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
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
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return withExitCode(exitUsage, err)
			}
			log, err := readEventLog(cmd, args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			out := showOutput(log)
			switch format {
			case "json":
				return writeJSON(cmd.OutOrStdout(), out)
			case "yaml":
				return writeYAML(cmd.OutOrStdout(), out)
			}
			return writeShowTable(cmd.OutOrStdout(), out)
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
		Args: cobra.ExactArgs(1),
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
					return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", displayPath(args[0]), err))
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
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", displayPath(args[0]), verr))
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
	var r io.Reader
	if path == "-" {
		r = cmd.InOrStdin()
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxEventLogSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxEventLogSize {
		return nil, fmt.Errorf("%s is larger than %d MiB, which no event log is", path, maxEventLogSize>>20)
	}
	return b, nil
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

type showEvent struct {
	Number  int                `json:"number"`
	Offset  int                `json:"offset"`
	PCR     uint32             `json:"pcr"`
	Type    eventlog.EventType `json:"type"`
	Digests map[string]string  `json:"digests"`
	Size    int                `json:"data_size"`
	Data    string             `json:"data,omitempty"`
	Kind    string             `json:"kind"`
	Decoded eventlog.EventData `json:"decoded,omitempty"`
	Summary string             `json:"summary"`
}

type showLog struct {
	Format   eventlog.Format      `json:"format"`
	Banks    []eventlog.Algorithm `json:"banks"`
	Padding  int                  `json:"padding,omitempty"`
	Events   []showEvent          `json:"events"`
	Findings []eventlog.Finding   `json:"findings"`
}

// maxShownData bounds the raw data printed per event in JSON and YAML.
const maxShownData = 1024

func showOutput(log *eventlog.Log) showLog {
	out := showLog{Format: log.Format, Banks: log.Banks, Padding: log.Padding, Findings: eventlog.Check(log)}
	if out.Findings == nil {
		out.Findings = []eventlog.Finding{}
	}
	for i := range log.Events {
		e := &log.Events[i]
		se := showEvent{Number: e.Number, Offset: e.Offset, PCR: e.PCR, Type: e.Type, Size: len(e.Data),
			Digests: map[string]string{}, Kind: e.Decoded.Kind(), Summary: summarize(e)}
		for _, d := range e.Digests {
			se.Digests[d.Alg.String()] = hex.EncodeToString(d.Value)
		}
		if len(e.Data) <= maxShownData {
			se.Data = hex.EncodeToString(e.Data)
		}
		if _, opaque := e.Decoded.(*eventlog.Opaque); !opaque {
			se.Decoded = e.Decoded
		}
		out.Events = append(out.Events, se)
	}
	return out
}

// summarize returns a one-line description of an event for the table,
// or the data size when the decoded data has nothing to show.
func summarize(e *eventlog.Event) string {
	if s := summarizeDecoded(e); s != "" {
		return s
	}
	return fmt.Sprintf("%d bytes", len(e.Data))
}

func summarizeDecoded(e *eventlog.Event) string {
	switch d := e.Decoded.(type) {
	case *eventlog.SpecIDEvent:
		var algs []string
		for _, a := range d.Algorithms {
			algs = append(algs, a.Alg.String())
		}
		return fmt.Sprintf("Spec ID Event03, spec %d.%d, banks %s", d.VersionMajor, d.VersionMinor, strings.Join(algs, ","))
	case *eventlog.StartupLocality:
		return fmt.Sprintf("StartupLocality %d", d.Locality)
	case *eventlog.NoAction:
		return d.Signature
	case *eventlog.Separator:
		switch {
		case d.Error:
			return fmt.Sprintf("separator 0x%08x (error)", d.Value)
		case d.Value != 0:
			return fmt.Sprintf("separator 0x%08x", d.Value)
		}
		return "separator"
	case *eventlog.Action:
		return d.Text
	case *eventlog.IPL:
		return d.Text
	case *eventlog.Text:
		return d.Text
	case *eventlog.HCRTM:
		return d.Text
	case *eventlog.SCRTMVersion:
		switch {
		case d.GUID != nil:
			return "version GUID " + d.GUID.String()
		case d.Version == "":
			// OVMF logs a UTF-16 string of only the terminating NUL.
			return "empty version string"
		}
		return d.Version
	case *eventlog.FirmwareBlob:
		return strings.TrimSpace(fmt.Sprintf("%s base 0x%x length 0x%x", d.Description, d.Base, d.Length))
	case *eventlog.HandoffTables:
		var tables []string
		for _, t := range d.Tables {
			tables = append(tables, t.VendorGUID.String())
		}
		return strings.TrimSpace(d.Description + " " + strings.Join(tables, ","))
	case *eventlog.GPT:
		return fmt.Sprintf("GPT disk %s, %d partitions", d.DiskGUID, len(d.Partitions))
	case *eventlog.ImageLoad:
		if f := d.DevicePath.File(); f != "" {
			return f
		}
		if p := d.DevicePath.String(); p != "" {
			return p
		}
		// Firmware logs no device path for an image that LoadImage
		// read from a memory buffer, as shim does for the kernel
		// that GRUB hands it.
		return fmt.Sprintf("image of %d bytes at 0x%x, no device path (loaded from memory)", d.LengthInMemory, d.LocationInMemory)
	case *eventlog.EFIVariable:
		return summarizeVariable(d)
	case *eventlog.Opaque:
		if d.Reason != "" {
			return "undecoded: " + d.Reason
		}
	}
	return ""
}

func summarizeVariable(v *eventlog.EFIVariable) string {
	s := v.Name
	switch {
	case v.Enabled != nil:
		s += fmt.Sprintf(" = %t", *v.Enabled)
	case v.SignatureLists != nil:
		n := 0
		for _, l := range v.SignatureLists {
			n += len(l.Signatures)
		}
		s += fmt.Sprintf(": %d signature lists, %d entries", len(v.SignatureLists), n)
	case v.Authority != nil:
		kind := "not a certificate"
		if v.Authority.X509 {
			kind = "X.509 certificate"
		}
		s += fmt.Sprintf(": authority owned by %s (%s, %d bytes)", v.Authority.Owner, kind, len(v.Authority.Data))
	case v.LoadOption != nil:
		s += fmt.Sprintf(": %q %s", v.LoadOption.Description, v.LoadOption.DevicePath)
	case v.BootOrder != nil:
		s += fmt.Sprintf(" = %04X", v.BootOrder)
	case v.Text != "":
		s += ": " + strings.ReplaceAll(strings.TrimSpace(v.Text), "\n", " ")
	default:
		s += fmt.Sprintf(" (%d bytes)", len(v.Data))
	}
	return s
}

func writeShowTable(w io.Writer, out showLog) error {
	fmt.Fprintf(w, "format: %s, banks: %v, %d events\n\n", out.Format, out.Banks, len(out.Events))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tOFFSET\tPCR\tTYPE\tDATA")
	for _, e := range out.Events {
		pcr := fmt.Sprint(e.PCR)
		if e.PCR == 0xFFFFFFFF {
			pcr = "-1"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", e.Number, e.Offset, pcr, e.Type, cutText(e.Summary, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(out.Findings) > 0 {
		fmt.Fprintf(w, "\nfindings:\n")
		for _, f := range out.Findings {
			fmt.Fprintf(w, "  %s\n", termText(fmt.Sprint(f)))
		}
	}
	return nil
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
