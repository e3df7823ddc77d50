package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Learn reference values from a golden machine and judge boots offline",
		Long: `Judges a TCG boot event log against signed bundles, a machine's approved
firmware values and local rules, and explains each event that matched nothing.
See docs/policy.md.`,
	}
	cmd.AddCommand(newPolicyLearnCmd(), newPolicyCheckCmd())
	return cmd
}

// logFlags select the event log's PCR values.
type logFlags struct {
	pcrs          string
	ignore        string
	replayAsQuote bool
	quote         string
	nonceHex      string
	akPath        string
	unpinnedAK    bool
	// insecure lists the checks the command skipped on request, printed
	// with the verdict.
	insecure []string
}

func (f *logFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.pcrs, "pcrs", "", "PCR values to replay the log against: JSON or tpm2_pcrread YAML, read from the TPM or from a verified quote")
	cmd.Flags().StringVar(&f.quote, "quote", "", "quote file from 'vouch tpm quote -o json': the log is replayed against the PCR values it signs")
	cmd.Flags().StringVar(&f.nonceHex, "nonce", "", "with --quote: the nonce you issued, in hex (default: the file's, which proves no freshness)")
	cmd.Flags().StringVar(&f.akPath, "ak", "", "with --quote: the enrolled AK public area, TPMT_PUBLIC binary or an AK file from 'vouch tpm quote --ak' (required unless --insecure-unpinned-ak)")
	cmd.Flags().BoolVar(&f.unpinnedAK, "insecure-unpinned-ak", false, "with --quote and no --ak: check the signature with the AK in the quote file, which proves nothing about which machine signed")
	cmd.Flags().StringVar(&f.ignore, "ignore-pcrs", "10", "PCRs of --pcrs to leave out, such as PCR 10, which IMA extends outside the boot log; \"none\" keeps all")
	cmd.Flags().BoolVar(&f.replayAsQuote, "insecure-replay-as-quote", false, "take the log's own replay as the quoted PCR values; proves nothing about the machine")
}

// evidence parses the log, verifies it against the PCR values and builds
// the policy evidence. The PCR values stand in for a verified quote: the
// offline commands do not verify one.
func (f *logFlags) evidence(cmd *cobra.Command, path string) (*policy.Evidence, error) {
	if err := f.checkSource(); err != nil {
		return nil, err
	}
	raw, err := readLimited(path, nil, maxEventLogSize)
	if err != nil {
		return nil, withExitCode(exitUnreadable, err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", path, err))
	}
	if f.quote != "" {
		return f.quoteEvidence(cmd, path, log)
	}
	var quoted eventlog.PCRValues
	if f.replayAsQuote {
		quoted, err = eventlog.Replay(log)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", path, err))
		}
	} else {
		data, err := readLimited(f.pcrs, nil, maxSmallFileSize)
		if err != nil {
			return nil, withExitCode(exitUnreadable, err)
		}
		quoted, err = eventlog.ParseExpectedPCRs(data)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", f.pcrs, err))
		}
		if f.ignore != "none" && f.ignore != "" {
			ignore, err := attest.ParsePCRList(f.ignore)
			if err != nil {
				return nil, withExitCode(exitUsage, fmt.Errorf("--ignore-pcrs: %w", err))
			}
			for _, bank := range quoted {
				for _, i := range ignore {
					delete(bank, i)
				}
			}
		}
	}
	res, err := eventlog.Verify(log, quoted, eventlog.VerifyOptions{})
	if err := replayError(path, err); err != nil {
		return nil, err
	}
	ev, err := policy.FromVerifiedLog(log, res)
	if err != nil {
		return nil, withExitCode(exitMismatch, err)
	}
	return ev, nil
}

// checkSource returns a usage error unless exactly one source of PCR
// values is given.
func (f *logFlags) checkSource() error {
	sources := 0
	for _, set := range []bool{f.pcrs != "", f.quote != "", f.replayAsQuote} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return withExitCode(exitUsage, errors.New("pass one of --quote FILE, --pcrs FILE or --insecure-replay-as-quote to give the PCR values the log must reproduce"))
	}
	return nil
}

// quoteEvidence verifies the quote file and replays the log against the
// PCR values it signs.
func (f *logFlags) quoteEvidence(cmd *cobra.Command, path string, log *eventlog.Log) (*policy.Evidence, error) {
	data, err := readLimited(f.quote, nil, attest.MaxQuoteFileSize)
	if err != nil {
		return nil, withExitCode(exitUnreadable, err)
	}
	qe, err := attest.ParseQuoteEvidence(data)
	if err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", f.quote, err))
	}
	nonce := []byte(qe.Nonce)
	if f.nonceHex != "" {
		if nonce, err = hex.DecodeString(f.nonceHex); err != nil {
			return nil, withExitCode(exitUsage, fmt.Errorf("--nonce %q: invalid hex: %w", f.nonceHex, err))
		}
	} else {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: no --nonce given: the nonce in the quote file was used, so freshness is not checked")
	}
	akPub := qe.AKPublic
	switch {
	case f.akPath != "":
		if akPub, err = readAKPublic(f.akPath); err != nil {
			return nil, withExitCode(exitUnreadable, err)
		}
	case f.unpinnedAK:
		f.insecure = append(f.insecure, "--insecure-unpinned-ak: the quote was checked with the AK in its own file, so any key could have signed it")
	default:
		return nil, withExitCode(exitUsage, fmt.Errorf("%s: pass --ak FILE with the machine's enrolled AK public area: without it the quote's signature proves nothing (--insecure-unpinned-ak to accept the file's own AK)", f.quote))
	}
	ak, err := attest.ParseAKPublic(akPub)
	if err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("AK public area: %w", err))
	}
	vq, err := attest.VerifyQuote(ak, attest.Quote{Attest: qe.Attest, Signature: qe.Signature}, attest.QuoteExpectations{
		Nonce: nonce, Selection: attest.Selection(qe.Selection), PCRs: attest.PCRValues(qe.PCRs),
	})
	var verr *attest.VerificationError
	switch {
	case errors.As(err, &verr):
		return nil, withExitCode(exitMismatch, fmt.Errorf("%s: %w", f.quote, err))
	case err != nil:
		return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", f.quote, err))
	}
	ev, _, err := policy.FromQuote(log, vq, eventlog.VerifyOptions{})
	if err := replayError(path, err); err != nil {
		return nil, err
	}
	return ev, nil
}

// replayError maps an eventlog.Verify error to an exit code: a log that
// does not reproduce the PCR values is a mismatch.
func replayError(path string, err error) error {
	var mismatch *eventlog.MismatchError
	switch {
	case errors.As(err, &mismatch):
		return withExitCode(exitMismatch, fmt.Errorf("%s does not reproduce the PCR values: %w", path, err))
	case errors.Is(err, eventlog.ErrNoVerifiedBank):
		return withExitCode(exitMismatch, fmt.Errorf("%s: %w", path, err))
	case err != nil:
		return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", path, err))
	}
	return nil
}

func newPolicyLearnCmd() *cobra.Command {
	var (
		lf        logFlags
		machine   string
		approveBy string
		out       string
		osPCRs    string
	)
	cmd := &cobra.Command{
		Use:   "learn LOG --pcrs FILE",
		Short: "Record a golden machine's reference values",
		Long: `Reads a boot event log from a machine known to be good and writes the events
the firmware logged (PCRs 0-7 up to the first boot application, and later
firmware events) as a machine baseline, and the other events as components. The output works as input to
vouch bundle create --components and as vouch policy check --baseline.
The baseline counts only once approved: pass --approve-by to approve it now.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ev, err := lf.evidence(cmd, args[0])
			if err != nil {
				return err
			}
			pcrs, err := attest.ParsePCRList(osPCRs)
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("--os-pcrs: %w", err))
			}
			now := time.Now().UTC().Truncate(time.Second)
			baseline, err := policy.LearnBaseline(machine, ev, nil, now)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			if approveBy != "" {
				if err := baseline.Approve(approveBy, now, "approved at learning"); err != nil {
					return withExitCode(exitUsage, err)
				}
			}
			learned := policy.Learned{Baseline: baseline, Components: policy.Learn(ev, pcrs)}
			data, err := json.MarshalIndent(learned, "", "  ")
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			return writeOutput(cmd, out, append(data, '\n'))
		},
	}
	lf.register(cmd)
	cmd.Flags().StringVar(&machine, "machine", "golden", "machine name recorded in the baseline")
	cmd.Flags().StringVar(&approveBy, "approve-by", "", "approve the baseline in the name of this administrator")
	cmd.Flags().StringVar(&osPCRs, "os-pcrs", "4,7-9,11-14", "PCRs whose events, less those the firmware logged, become components")
	cmd.Flags().StringVar(&out, "out", "", "file to write the baseline and components to (default: standard output)")
	return cmd
}

// noReferenceMessage is the usage error of a check without reference
// values. Every event would match nothing, so "not trusted" would be a
// false alarm.
const noReferenceMessage = "no reference values to judge the events against: give --bundle SOURCE with --trust PUBLISHER=KEY.pub, or --baseline FILE from vouch policy learn; " +
	`to judge by the rules alone, set "reference_values": "warn" in the --rules file`

func newPolicyCheckCmd() *cobra.Command {
	var (
		lf       logFlags
		trust    trustFlags
		bundles  []string
		baseline string
		rules    string
		expect   string
		format   string
		sha1     bool
	)
	cmd := &cobra.Command{
		Use:   "check LOG (--quote FILE | --pcrs FILE) --bundle SOURCE --trust PUBLISHER=KEY.pub",
		Short: "Judge a boot event log against bundles, firmware values and rules",
		Long: `Replays LOG against the PCR values that --quote signs (the quote is verified
first) or that --pcrs lists (taken as quoted, not verified here), then judges
each event of a quoted PCR against the verified bundles (files, directories
or URLs) and the approved machine baseline, and applies the rules. Prints the
verdict with one line per event that matched nothing. Give at least one
reference (--bundle or --baseline), or rules that set "reference_values"
to "warn". Exits 0 when trusted, 1 when not, 2 for invalid flags, 3 when
an input cannot be read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(format, "text", "json"); err != nil {
				return err
			}
			if err := lf.checkSource(); err != nil {
				return err
			}
			p := &policy.Policy{}
			if rules != "" {
				data, err := readLimited(rules, nil, policy.MaxRulesSize)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				r, err := policy.ParseRules(data)
				if err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", rules, err))
				}
				p.Rules = *r
			}
			if len(bundles) == 0 && baseline == "" && p.Rules.ReferenceValues != policy.Warn {
				return withExitCode(exitUsage, errors.New(noReferenceMessage))
			}
			if sha1 {
				p.Rules.InsecureAllowSHA1 = true
			}
			if expect != "" {
				pcrs, err := attest.ParsePCRList(expect)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--expect: %w", err))
				}
				if p.Rules.QuotedPCRs == nil {
					p.Rules.QuotedPCRs = &policy.QuotedPCRsRule{}
				}
				p.Rules.QuotedPCRs.PCRs = append(p.Rules.QuotedPCRs.PCRs, pcrs...)
			}
			if baseline != "" {
				data, err := bundle.ReadFile(baseline)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				b, err := policy.ParseBaseline(data)
				if err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", baseline, err))
				}
				p.Baseline = b
			}
			if len(bundles) > 0 {
				l, err := trust.loader()
				if err != nil {
					return err
				}
				p.Bundles, err = loadBundles(cmd.Context(), l, bundles, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
			}

			ev, err := lf.evidence(cmd, args[0])
			if err != nil {
				return err
			}
			v, err := p.Check(ev)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			if format == "json" {
				v.Notes = append(v.Notes, lf.insecure...)
				data, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				cmd.OutOrStdout().Write(append(data, '\n'))
			} else {
				printVerdict(cmd.OutOrStdout(), ev, v, p, lf.insecure)
			}
			if !v.Trusted {
				return withExitCode(exitMismatch, errors.New("boot is not trusted by the policy"))
			}
			return nil
		},
	}
	lf.register(cmd)
	trust.register(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&bundles, "bundle", nil, "bundle envelope file, directory or http(s) URL (repeatable)")
	f.StringVar(&baseline, "baseline", "", "machine firmware values, as written by vouch policy learn; used only when approved")
	f.StringVar(&rules, "rules", "", "rules file (JSON, see docs/policy.md)")
	f.StringVar(&expect, "expect", "", "PCRs the quote must cover, such as 0-9,14")
	f.BoolVar(&sha1, "insecure-allow-sha1", false, "trust a boot whose only verified bank is SHA-1, as the rule insecure_allow_sha1 does; SHA-1 collisions can be computed")
	addOutputFormatFlag(f, &format, "text", "json")
	return cmd
}

func printVerdict(w io.Writer, ev *policy.Evidence, v *policy.Verdict, p *policy.Policy, insecure []string) {
	state := "trusted"
	if !v.Trusted {
		state = "NOT trusted"
	}
	banks := make([]string, len(v.Banks))
	for i, b := range v.Banks {
		banks[i] = string(b)
	}
	fmt.Fprintf(w, "verdict   %s\n", state)
	for _, s := range insecure {
		fmt.Fprintf(w, "insecure  %s\n", s)
	}
	fmt.Fprintf(w, "evidence  banks %s, quoted PCRs %s, %d events\n", strings.Join(banks, ", "), attest.FormatPCRList(ev.QuotedPCRs()), len(ev.Events()))
	if len(v.UnquotedPCRs) > 0 {
		fmt.Fprintf(w, "coverage  FAILED: PCRs %s are required (PCRs 0-7 and those of the reference values) but not quoted\n", attest.FormatPCRList(v.UnquotedPCRs))
	}
	if v.Matched == 0 && len(v.Unmatched) == 0 {
		fmt.Fprintln(w, "coverage  FAILED: no measured event of a quoted PCR was judged")
	}
	if v.SHA1Only && !v.SHA1Accepted {
		fmt.Fprintln(w, "banks     FAILED: sha1 is the only verified bank and SHA-1 collisions can be computed: quote a sha256 bank, or pass --insecure-allow-sha1")
	}
	var sources []string
	for _, b := range p.Bundles {
		sources = append(sources, "bundle "+termText(b.Bundle().ID()))
	}
	if p.Baseline != nil {
		sources = append(sources, fmt.Sprintf("baseline %s revision %d", termText(p.Baseline.Machine), p.Baseline.Revision))
	}
	if len(sources) == 0 {
		sources = []string{"none"}
	}
	fmt.Fprintf(w, "reference %s\n", strings.Join(sources, ", "))
	fmt.Fprintf(w, "events    %d matched, %d matched nothing (%s)\n", v.Matched, len(v.Unmatched), v.UnmatchedAction)
	for i := range v.Unmatched {
		fmt.Fprintf(w, "  %s\n", termText(v.Unmatched[i].String()))
	}
	for _, r := range v.Rules {
		result := "passed"
		if !r.Passed {
			result = "FAILED (" + string(r.Action) + ")"
		}
		fmt.Fprintf(w, "rule      %s %s: %s\n", r.Rule, result, termText(r.Detail))
	}
	for _, a := range v.BootAuthorities {
		switch {
		case a.Authority < 0:
			fmt.Fprintf(w, "authority %s (event %d): no new authority logged\n", termText(a.Name), a.Application)
		case a.Certificate != "":
			fmt.Fprintf(w, "authority %s (event %d): %s (event %d)\n", termText(a.Name), a.Application, termText(a.Certificate), a.Authority)
		default:
			fmt.Fprintf(w, "authority %s (event %d): event %d\n", termText(a.Name), a.Application, a.Authority)
		}
	}
	for _, n := range v.Notes {
		fmt.Fprintf(w, "note      %s\n", termText(n))
	}
}
