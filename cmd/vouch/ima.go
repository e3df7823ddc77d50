package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/ima"
	"github.com/vouch-attest/vouch/ima/allowlist"
)

func newIMACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ima",
		Short: "Inspect, replay and check Linux IMA measurement lists",
		Long: `Work with Linux IMA runtime measurement lists, such as
/sys/kernel/security/ima/binary_runtime_measurements or
ascii_runtime_measurements. The format is detected from the first byte.`,
	}
	cmd.AddCommand(newIMAShowCmd(), newIMAReplayCmd(), newIMACheckCmd(), newIMAAllowlistCmd())
	return cmd
}

// maxIMAListSize bounds a measurement list read from a file, as
// maxEventLogSize bounds event logs. A list grows by about 100 to 300
// bytes per measured file, so this is several hundred thousand entries.
const maxIMAListSize = 64 << 20

// readIMAFile reads a measurement list file up to maxIMAListSize.
func readIMAFile(path string) ([]byte, error) {
	data, err := readLimited(path, nil, maxIMAListSize)
	if err != nil {
		return nil, withExitCode(exitUnreadable, err)
	}
	return data, nil
}

// readIMAList reads and parses a list. A list cut inside its last entry
// still returns the complete entries, with the error.
func readIMAList(path string) ([]ima.Entry, ima.Format, error) {
	data, err := readIMAFile(path)
	if err != nil {
		return nil, 0, err
	}
	entries, format, err := ima.Parse(data, ima.ParseOptions{})
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return entries, format, err
}

// printableName shows a file name as is when it is printable UTF-8, and
// quoted with escapes otherwise.
func printableName(name []byte) string {
	if utf8.Valid(name) && !slices.ContainsFunc([]rune(string(name)), func(r rune) bool { return !unicode.IsPrint(r) }) {
		return string(name)
	}
	return strconv.Quote(string(name))
}

type shownEntry struct {
	Index        int    `json:"index"`
	PCR          uint32 `json:"pcr"`
	TemplateHash string `json:"template_hash"`
	Template     string `json:"template"`
	Digest       string `json:"digest,omitempty"`
	Name         string `json:"name,omitempty"`
	Violation    bool   `json:"violation,omitempty"`
	Signature    string `json:"signature,omitempty"`
	Problem      string `json:"problem,omitempty"`
}

func describeEntry(e *ima.Entry) shownEntry {
	s := shownEntry{Index: e.Index, PCR: e.PCR, TemplateHash: hex.EncodeToString(e.TemplateHash), Template: e.TemplateName, Violation: e.IsViolation()}
	f, err := e.Fields()
	if err != nil {
		s.Problem = err.Error()
		return s
	}
	s.Digest = f.DigestAlgorithm + ":" + hex.EncodeToString(f.Digest)
	s.Name = printableName(f.Name)
	if len(f.Signature) > 0 {
		if sig, err := ima.ParseSignature(f.Signature); err != nil {
			s.Signature = fmt.Sprintf("unparseable (%d bytes): %v", len(f.Signature), err)
		} else {
			s.Signature = fmt.Sprintf("v%d %s key %x (%d bytes)", sig.Version, sig.HashName(), sig.KeyID, len(sig.Value))
		}
	}
	if !s.Violation {
		if err := e.CheckTemplateHash(); err != nil {
			s.Problem = err.Error()
		}
	}
	return s
}

func newIMAShowCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show LOG",
		Short: "List the entries of a measurement list",
		Long: `List each entry with its PCR, template, file digest and name. Violations
and entries whose template data does not hash to the logged template hash
are marked. Nothing is verified against a TPM.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(format, "table", "json"); err != nil {
				return err
			}
			data, err := readIMAFile(args[0])
			if err != nil {
				return err
			}
			// A file whose first entry does not decode is not a list:
			// report it without printing an empty table.
			if probe, _ := ima.NewDecoder(data, ima.ParseOptions{}); !probe.Next() && probe.Err() != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", args[0], probe.Err()))
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			var listing imaListing
			if format == "json" {
				listing, err = writeIMAJSON(out, data)
			} else {
				listing, err = writeIMATable(out, data)
			}
			if err != nil {
				return err
			}
			if err := out.Flush(); err != nil {
				return err
			}
			if listing.parseErr != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", args[0], listing.parseErr))
			}
			return nil
		},
	}
	addOutputFormatFlag(cmd.Flags(), &format, "table", "json")
	return cmd
}

// imaListing is the outcome of printing a list: the number of entries, the
// list's format and the error that stopped decoding, if any.
type imaListing struct {
	count    int
	format   ima.Format
	parseErr error
}

// imaColumns are the table columns of ima show. The name comes last, so
// that one long path does not pad every line to its width.
var imaColumns = []string{"#", "PCR", "TEMPLATE", "DIGEST", "NOTE", "NAME"}

// imaRow returns the table cells of an entry, escaped for a terminal.
func imaRow(s *shownEntry) []string {
	note := s.Signature
	if s.Violation {
		note = "VIOLATION"
	}
	if s.Problem != "" {
		note = "ERROR: " + s.Problem
	}
	return []string{strconv.Itoa(s.Index), strconv.FormatUint(uint64(s.PCR), 10),
		termText(s.Template), termText(s.Digest), termText(note), termText(s.Name)}
}

// writeIMATable prints the list as a table without holding the rows in
// memory: a first pass over the list measures the columns, a second
// prints each row as it decodes it. The error is a write error.
func writeIMATable(w *bufio.Writer, data []byte) (imaListing, error) {
	widths := make([]int, len(imaColumns))
	measure := func(cells []string) {
		for i, c := range cells[:len(cells)-1] {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	measure(imaColumns)
	dec, listFormat := ima.NewDecoder(data, ima.ParseOptions{})
	for dec.Next() {
		s := describeEntry(dec.Entry())
		measure(imaRow(&s))
	}

	const padding = 2
	writeRow := func(cells []string) {
		for i, c := range cells[:len(cells)-1] {
			w.WriteString(c)
			w.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+padding))
		}
		w.WriteString(cells[len(cells)-1])
		w.WriteByte('\n')
	}
	writeRow(imaColumns)
	count := 0
	dec, _ = ima.NewDecoder(data, ima.ParseOptions{})
	for dec.Next() {
		s := describeEntry(dec.Entry())
		writeRow(imaRow(&s))
		count++
	}
	_, err := fmt.Fprintf(w, "%d entries (%s list)\n", count, listFormat)
	return imaListing{count: count, format: listFormat, parseErr: dec.Err()}, err
}

// writeIMAJSON prints the list as one JSON object, {"entries": [...],
// "format": "binary"}, encoding each entry as it decodes it.
func writeIMAJSON(w *bufio.Writer, data []byte) (imaListing, error) {
	dec, listFormat := ima.NewDecoder(data, ima.ParseOptions{})
	w.WriteString("{\n  \"entries\": [")
	count := 0
	for dec.Next() {
		s := describeEntry(dec.Entry())
		b, err := json.MarshalIndent(s, "    ", "  ")
		if err != nil {
			return imaListing{}, err
		}
		if count > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n    ")
		w.Write(b)
		count++
	}
	if count > 0 {
		w.WriteString("\n  ")
	}
	_, err := fmt.Fprintf(w, "],\n  \"format\": %q\n}\n", listFormat.String())
	return imaListing{count: count, format: listFormat, parseErr: dec.Err()}, err
}

// parsePCRSpec reads the --expect PCR values from a file in a layout
// eventlog.ParseExpectedPCRs reads, or from an inline list
// "sha256:10=HEX,sha1:10=HEX". Its errors carry the exit code: usage for
// an invalid inline list, unreadable input for a file.
func parsePCRSpec(spec string) (ima.PCRValues, error) {
	out := ima.PCRValues{}
	if strings.Contains(spec, "=") {
		for _, item := range strings.Split(spec, ",") {
			bankPCR, value, ok := strings.Cut(strings.TrimSpace(item), "=")
			bank, pcrText, ok2 := strings.Cut(bankPCR, ":")
			if !ok || !ok2 {
				return nil, withExitCode(exitUsage, fmt.Errorf("--expect: invalid PCR value %.80q: want BANK:PCR=HEX, such as sha256:10=<64 hex digits>", item))
			}
			if err := addPCR(out, bank, pcrText, value); err != nil {
				return nil, withExitCode(exitUsage, fmt.Errorf("--expect: %w", err))
			}
		}
		return out, nil
	}
	raw, err := readLimited(spec, nil, maxSmallFileSize)
	if err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("--expect: %w", err))
	}
	v, err := eventlog.ParseExpectedPCRs(raw)
	if err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("--expect %s: %w", spec, err))
	}
	return v, nil
}

func addPCR(out ima.PCRValues, bank, pcrText, value string) error {
	alg, err := ima.ParseAlgorithm(bank)
	if err != nil {
		return err
	}
	pcr, err := strconv.Atoi(pcrText)
	if err != nil || pcr < 0 || pcr > 31 {
		return fmt.Errorf("invalid PCR index %.40q: want 0-31", pcrText)
	}
	v, err := hex.DecodeString(strings.TrimPrefix(value, "0x"))
	if err != nil || (alg.Size() != 0 && len(v) != alg.Size()) {
		return fmt.Errorf("invalid %s PCR %d value %.140q: want %d hex bytes", alg, pcr, value, alg.Size())
	}
	if out[alg] == nil {
		out[alg] = map[int][]byte{}
	}
	if _, dup := out[alg][pcr]; dup {
		return fmt.Errorf("%s PCR %d is given twice: give each PCR once", alg, pcr)
	}
	out[alg][pcr] = v
	return nil
}

// hasBootPCRs reports whether expected holds PCRs 0-7 in some bank, so
// that the boot_aggregate can be checked.
func hasBootPCRs(expected ima.PCRValues) bool {
	for _, pcrs := range expected {
		if _, ok := pcrs[0]; ok {
			if _, ok := pcrs[7]; ok {
				return true
			}
		}
	}
	return false
}

func newIMAReplayCmd() *cobra.Command {
	var expect string
	var banks []string
	cmd := &cobra.Command{
		Use:   "replay LOG",
		Short: "Replay a measurement list into PCR values",
		Long: `Replay the list into PCR 10 and every other PCR its entries name, in each
bank, under both ways kernels extend banks other than SHA-1: the template
data hashed with the bank's algorithm (Linux 5.8 and later) and the SHA-1
template hash padded with zeros (older kernels).

With --expect, verify the list against PCR values the way the verifier
does: the longest prefix of the list that reproduces them is verified and
the rest is pending. When the values include PCRs 0-9 (0-7 for SHA-1), the
boot_aggregate is checked too. Exit status 1 means no prefix matches.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			entries, _, err := readIMAList(args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			out := cmd.OutOrStdout()
			if expect != "" {
				expected, err := parsePCRSpec(expect)
				if err != nil {
					return err
				}
				_, err = verifyIMA(out, entries, expected)
				return err
			}
			var algs []ima.Algorithm
			for _, b := range banks {
				alg, err := ima.ParseAlgorithm(b)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--bank: %w", err))
				}
				algs = append(algs, alg)
			}
			r, err := ima.ReplayEntries(entries, algs)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			fmt.Fprintf(out, "%d entries, %d violations\n", r.Entries, len(r.Violations))
			for _, e := range r.TemplateHashErrors {
				fmt.Fprintf(out, "template hash error: %s\n", termText(e.Error()))
			}
			if more := r.TemplateHashErrorCount - len(r.TemplateHashErrors); more > 0 {
				fmt.Fprintf(out, "template hash errors: %d more not listed\n", more)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BANK\tPCR\tSCHEME\tVALUE")
			for _, alg := range algs {
				for _, s := range []ima.ExtendScheme{ima.PerBankHash, ima.PaddedSHA1} {
					if alg == ima.SHA1 && s == ima.PaddedSHA1 {
						continue
					}
					pcrs := r.PCRs[s][alg]
					idx := make([]int, 0, len(pcrs))
					for i := range pcrs {
						idx = append(idx, i)
					}
					slices.Sort(idx)
					for _, i := range idx {
						fmt.Fprintf(tw, "%s\t%d\t%s\t%x\n", alg, i, s, pcrs[i])
					}
				}
			}
			tw.Flush()
			if r.TemplateHashErrorCount > 0 {
				return withExitCode(exitMismatch, fmt.Errorf("%d entries do not hash to their template hash", r.TemplateHashErrorCount))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&expect, "expect", "", "expected PCR values: a JSON file ({\"sha256\": {\"10\": \"HEX\"}}), tpm2_pcrread output, or BANK:PCR=HEX,...")
	cmd.Flags().StringSliceVar(&banks, "bank", []string{"sha1", "sha256"}, "banks to replay without --expect")
	return cmd
}

// verifyIMA verifies entries against expected PCR values, as the verifier
// does in the first round of a boot, and prints the outcome.
func verifyIMA(out io.Writer, entries []ima.Entry, expected ima.PCRValues) (*ima.Result, error) {
	opts := ima.VerifyOptions{}
	if !hasBootPCRs(expected) {
		opts.InsecureSkipBootAggregate = true
		fmt.Fprintln(out, "boot_aggregate not checked: the expected values lack PCRs 0-9")
	}

	res, err := ima.Verify(nil, ima.Round{Entries: entries, Quoted: expected}, opts)
	if err != nil {
		if ima.IsVerificationError(err) {
			return nil, withExitCode(exitMismatch, err)
		}
		return nil, withExitCode(exitUsage, err)
	}

	fmt.Fprintf(out, "verified %d entries, %d pending, %d violations\n", len(res.Verified), res.Pending, len(res.Violations))
	if res.Pending > 0 {
		fmt.Fprintf(out, "entries %d-%d are pending: no PCR values cover them (logged after the PCRs were read, or in a PCR that other software also extends)\n",
			res.State.Entries, res.State.Entries+res.Pending-1)
	}
	algs := make([]ima.Algorithm, 0, len(res.Schemes))
	for alg := range res.Schemes {
		algs = append(algs, alg)
	}
	slices.Sort(algs)
	for _, alg := range algs {
		fmt.Fprintf(out, "%s: matches (%s)\n", alg, res.Schemes[alg])
	}
	for _, alg := range res.SkippedBanks {
		fmt.Fprintf(out, "%s: not replayed (algorithm not supported)\n", alg)
	}
	if ba := res.BootAggregate; ba != nil {
		fmt.Fprintf(out, "boot_aggregate: matches %s PCRs 0-%d\n", ba.Algorithm, ba.PCRs[len(ba.PCRs)-1])
	}
	return res, nil
}

func newIMACheckCmd() *cobra.Command {
	var (
		allowlists, excludes, keys []string
		expect, violations, format string
		warn, matchName, allowSHA1 bool
	)
	cmd := &cobra.Command{
		Use:   "check LOG --allowlist FILE",
		Short: "Check a measurement list against allowlists and signing keys",
		Long: `Check every entry against the allowlists (sha256sum-style files, see
"vouch ima allowlist create") and the keys for ima-sig signatures (X.509
certificates or public keys, PEM or DER). An entry passes when its digest is
listed or its signature verifies. Each entry that does not pass gets a
verdict naming the file, its digest and the rule.

Entries whose file digest (and so signature) is MD5 are always rejected,
and SHA-1 ones unless --insecure-allow-sha1 is given: collisions let one
signed or listed benign file vouch for a malicious one.

Without --expect the entries are only parsed, not verified against a TPM.
Exit status 1 means an enforced rule rejected an entry or the replay failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(format, "table", "json"); err != nil {
				return err
			}
			if len(allowlists) == 0 && len(keys) == 0 {
				return withExitCode(exitUsage, errors.New("give at least one --allowlist or --key"))
			}
			entries, _, err := readIMAList(args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			out := cmd.OutOrStdout()
			// Progress lines go to standard error with -o json, so that
			// standard output is one JSON document.
			status := out
			if format == "json" {
				status = cmd.ErrOrStderr()
			}
			rule := ima.Rule{MatchName: matchName, AllowSHA1: allowSHA1}
			if warn {
				rule.Action = ima.Warn
			}
			var names []string
			if len(allowlists) > 0 {
				names = append(names, "allowlist")
				rule.Allowlist = ima.NewAllowlist()
				for _, path := range allowlists {
					if err := readAllowlistFile(rule.Allowlist, path); err != nil {
						return withExitCode(exitUnreadable, err)
					}
				}
			}
			if len(keys) > 0 {
				names = append(names, "signature")
				rule.Keys = &ima.Keyring{}
				for _, path := range keys {
					data, err := readLimited(path, nil, maxSmallFileSize)
					if err != nil {
						return withExitCode(exitUnreadable, err)
					}
					k, err := ima.ParseKeys(data)
					if err != nil {
						return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", path, err))
					}
					rule.Keys.Merge(k)
				}
			}
			rule.Name = strings.Join(names, "-or-")
			policy := &ima.Policy{Exclude: excludes, Rules: []ima.Rule{rule}, Uncovered: rule.Action}
			if err := policy.Violations.UnmarshalText([]byte(violations)); err != nil {
				return withExitCode(exitUsage, fmt.Errorf("--violations: %w", err))
			}

			checked := entries
			if expect != "" {
				expected, err := parsePCRSpec(expect)
				if err != nil {
					return err
				}
				res, err := verifyIMA(status, entries, expected)
				if err != nil {
					return err
				}
				checked = res.Verified
			} else {
				fmt.Fprintln(status, "entries not verified against PCR values (use --expect)")
			}
			report := policy.Check(checked)
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "#\tOUTCOME\tACTION\tRULE\tDIGEST\tREASON\tFILE")
				for _, v := range report.Verdicts {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Entry, v.Outcome, v.Action, termText(v.Rule), termText(v.Digest), termText(v.Reason), printableName([]byte(v.File)))
				}
				tw.Flush()
				fmt.Fprintf(out, "%d checked, %d accepted, %d excluded, %d verdicts\n", report.Checked, report.Accepted, report.Excluded, len(report.Verdicts))
			}
			if report.Failed() {
				return withExitCode(exitMismatch, errors.New("IMA policy rejected entries"))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&allowlists, "allowlist", nil, "allowlist file (repeatable)")
	f.StringArrayVar(&keys, "key", nil, "certificate or public key for ima-sig signatures, PEM or DER (repeatable)")
	f.StringArrayVar(&excludes, "exclude", nil, "file name pattern to skip: a path.Match glob, or a directory ending in / (repeatable)")
	f.StringVar(&expect, "expect", "", "verify against expected PCR values first, as for replay --expect")
	f.StringVar(&violations, "violations", "enforce", "action for violation entries: enforce or warn")
	f.BoolVar(&warn, "warn", false, "report rejected entries without failing")
	f.BoolVar(&matchName, "match-name", false, "require the allowlist to list the digest for the entry's own file name")
	f.BoolVar(&allowSHA1, "insecure-allow-sha1", false, "accept SHA-1 file digests and signatures, as logged by kernels with ima_hash=sha1 and the ima template; SHA-1 collisions can be computed")
	addOutputFormatFlag(f, &format, "table", "json")
	return cmd
}

func readAllowlistFile(a *ima.Allowlist, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := a.ReadFrom(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func newIMAAllowlistCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allowlist",
		Short: "Build IMA allowlists",
	}
	var dirs, debs []string
	var alg, prefix, output string
	create := &cobra.Command{
		Use:   "create (--dir DIR | --deb FILE)... [--out FILE]",
		Short: "Create an allowlist from directory trees and Debian packages",
		Long: `Hash every regular file under each --dir and in the data archive of each
--deb, and write one "DIGEST  NAME" line per file, the format of sha256sum.
Names are the paths relative to the tree or package root, under --prefix.
Symbolic links are skipped. Files that package scripts change at install
time do not match the package's digests and need their own rules.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(dirs) == 0 && len(debs) == 0 {
				return withExitCode(exitUsage, errors.New("give at least one --dir or --deb"))
			}
			a := ima.NewAllowlist()
			opts := allowlist.Options{Algorithm: alg, Prefix: prefix}
			for _, d := range dirs {
				if _, err := allowlist.AddDir(a, d, opts); err != nil {
					return withExitCode(exitUnreadable, err)
				}
			}
			for _, path := range debs {
				f, err := os.Open(path)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				_, err = allowlist.AddDeb(a, f, opts)
				f.Close()
				if err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", path, err))
				}
			}
			w := cmd.OutOrStdout()
			if output != "" && output != "-" {
				f, err := os.Create(output)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				defer f.Close()
				w = f
			}
			if _, err := a.WriteTo(w); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d digests\n", a.Len())
			return nil
		},
	}
	f := create.Flags()
	f.StringArrayVar(&dirs, "dir", nil, "directory tree to hash (repeatable)")
	f.StringArrayVar(&debs, "deb", nil, "Debian binary package to hash (repeatable)")
	f.StringVar(&alg, "alg", "sha256", "file digest algorithm, as in the IMA policy's ima_hash: sha1, sha256, sha384 or sha512")
	f.StringVar(&prefix, "prefix", "/", "path prepended to the file names")
	f.StringVar(&output, "out", "-", "file to write the allowlist to, - for standard output")
	cmd.AddCommand(create)
	return cmd
}
