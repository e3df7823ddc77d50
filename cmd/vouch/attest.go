package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/internal/strictjson"
)

func newAttestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attest",
		Short: "Verify TPM evidence offline (quotes, EK certificates)",
	}
	cmd.AddCommand(newVerifyQuoteCmd(), newVerifyEKCertCmd())
	return cmd
}

// verifyQuoteResult is the JSON output of `vouch attest verify-quote`.
type verifyQuoteResult struct {
	Verified        bool                 `json:"verified"`
	Reason          string               `json:"reason,omitempty"`
	Error           string               `json:"error,omitempty"`
	Warnings        []string             `json:"warnings,omitempty"`
	Clock           *attest.ClockInfo    `json:"clock,omitempty"`
	FirmwareVersion uint64               `json:"firmware_version,omitempty"`
	VerifiedPCRs    attest.PCRValuesJSON `json:"verified_pcrs,omitempty"`
	UnverifiedPCRs  attest.PCRValuesJSON `json:"unverified_pcrs,omitempty"`
	Selection       attest.SelectionJSON `json:"selection,omitempty"`
}

func newVerifyQuoteCmd() *cobra.Command {
	var (
		in, nonceHex, akPath, output string
		allowSHA1                    bool
	)
	cmd := &cobra.Command{
		Use:   "verify-quote",
		Short: "Verify a quote file written by 'vouch tpm quote -o json'",
		Long: `Verify a quote offline: magic, attestation type, nonce, PCR selection, PCR
digest and signature (see docs/tpm.md for the numbered checks).

Pass --nonce with the challenge you issued and --ak with the enrolled AK's
public area (TPMT_PUBLIC, binary): without them the nonce and AK are taken
from the file itself, which proves only that the file is self-consistent,
and a warning says so.

Exit status: 0 verified, 1 did not verify, 2 usage error, 3 unreadable input.`,
		Example: `  vouch tpm quote --tpm simulator --pcrs 0-7 --nonce 00112233 -o json > quote.json
  vouch attest verify-quote --in quote.json --nonce 00112233`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("invalid --output %q: use text or json", output))
			}
			if in == "" {
				return withExitCode(exitUsage, errors.New("--in is required: the quote file to verify"))
			}
			b, err := readLimited(in, nil, attest.MaxQuoteFileSize)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			ev, err := attest.ParseQuoteEvidence(b)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", in, err))
			}
			res := verifyQuoteResult{}
			nonce := []byte(ev.Nonce)
			if nonceHex != "" {
				if nonce, err = hex.DecodeString(nonceHex); err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--nonce %q: invalid hex: %w", nonceHex, err))
				}
			} else {
				res.Warnings = append(res.Warnings, "no --nonce given: the nonce in the file was used, so freshness is not checked")
			}
			akPub := ev.AKPublic
			if akPath != "" {
				if akPub, err = readAKPublic(akPath); err != nil {
					return withExitCode(exitUnreadable, err)
				}
			} else {
				res.Warnings = append(res.Warnings, "no --ak given: the AK in the file was used, so the signer is not checked against an enrolled key")
			}

			verr := func() error {
				ak, err := attest.ParseAKPublic(akPub)
				if err != nil {
					return err
				}
				vq, err := attest.VerifyQuote(ak, attest.Quote{Attest: ev.Attest, Signature: ev.Signature}, attest.QuoteExpectations{
					Nonce:             nonce,
					Selection:         attest.Selection(ev.Selection),
					PCRs:              attest.PCRValues(ev.PCRs),
					InsecureAllowSHA1: allowSHA1,
				})
				if err != nil {
					return err
				}
				res.Verified = true
				res.Clock = &vq.Clock
				res.FirmwareVersion = vq.FirmwareVersion
				res.VerifiedPCRs = attest.PCRValuesJSON(vq.Verified)
				res.UnverifiedPCRs = attest.PCRValuesJSON(vq.Unverified)
				res.Selection = attest.SelectionJSON(vq.Selection)
				return nil
			}()
			var ve *attest.VerificationError
			if verr != nil && !errors.As(verr, &ve) {
				return withExitCode(exitUnreadable, verr)
			}
			if ve != nil {
				res.Reason = ve.Reason.String()
				res.Error = ve.Error()
			}

			out := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(out, res); err != nil {
					return err
				}
			} else {
				for _, w := range res.Warnings {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
				}
				if res.Verified {
					fmt.Fprintf(out, "quote verified: PCRs %s\n", attest.Selection(res.Selection))
					fmt.Fprintf(out, "clock: %d ms, reset count %d, restart count %d, safe %t\n", res.Clock.Clock, res.Clock.ResetCount, res.Clock.RestartCount, res.Clock.Safe)
				}
			}
			if ve != nil {
				return withExitCode(exitMismatch, ve)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "quote file (JSON from 'vouch tpm quote -o json')")
	cmd.Flags().StringVar(&nonceHex, "nonce", "", "the nonce you issued, in hex")
	cmd.Flags().StringVar(&akPath, "ak", "", "the enrolled AK: its public area (TPMT_PUBLIC, binary) or the AK file of 'vouch tpm quote --ak'")
	cmd.Flags().BoolVar(&allowSHA1, "insecure-allow-sha1", false, "accept quotes signed with a SHA-1 digest")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// readAKPublic reads an AK public area: a binary TPMT_PUBLIC, or the
// "public" member of an AK file written by 'vouch tpm quote --ak'. A file
// that holds neither is an unreadable input, not a failed verification.
func readAKPublic(path string) ([]byte, error) {
	b, err := readLimited(path, nil, maxSmallFileSize)
	if err != nil {
		return nil, err
	}
	if json.Valid(b) {
		var f struct {
			Public []byte `json:"public"`
		}
		if err := strictjson.Decode(b, &f, strictjson.Options{AllowUnknown: true}); err != nil {
			return nil, fmt.Errorf("%s: not an AK file: %w", path, err)
		}
		if len(f.Public) == 0 {
			return nil, fmt.Errorf("%s: a JSON file without an AK \"public\" member: give the AK file of 'vouch tpm quote --ak' or a binary TPMT_PUBLIC", path)
		}
		b = f.Public
	}
	// The SHA-1 nameAlg is accepted here only to tell a malformed file
	// from a key that fails the AK checks, which the caller applies.
	var verr *attest.VerificationError
	if _, err := attest.ParseAKPublicAllowSHA1Name(b); errors.As(err, &verr) && verr.Reason == attest.ReasonMalformedPublic {
		return nil, fmt.Errorf("%s: not an AK public area: give the AK file of 'vouch tpm quote --ak' or a binary TPMT_PUBLIC: %w", path, verr.Err)
	}
	return b, nil
}

func newVerifyEKCertCmd() *cobra.Command {
	var (
		roots, intermediates []string
		at                   string
		allowSHA1            bool
	)
	cmd := &cobra.Command{
		Use:   "verify-ek-cert CERT",
		Short: "Verify an EK certificate against explicitly given vendor roots",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(roots) == 0 {
				return withExitCode(exitUsage, errors.New("--roots is required: give the TPM vendor CA certificates to trust"))
			}
			now := time.Now()
			if at != "" {
				var err error
				if now, err = time.Parse(time.RFC3339, at); err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--at %q: use RFC 3339, such as 2026-01-02T15:04:05Z", at))
				}
			}
			r, err := attest.LoadCertificates(roots...)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			i, err := attest.LoadCertificates(intermediates...)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			certs, err := attest.LoadCertificates(args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			c, err := attest.VerifyEKCertificate(certs[0].Raw, nil, attest.EKCertificateOptions{Roots: r, Intermediates: i, CurrentTime: now, InsecureAllowSHA1: allowSHA1})
			if err != nil {
				var ve *attest.VerificationError
				if errors.As(err, &ve) {
					return withExitCode(exitMismatch, err)
				}
				return withExitCode(exitUsage, err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "EK certificate verified: serial %s, issuer %s\n", c.SerialNumber.Text(16), termText(c.Issuer.String()))
			fmt.Fprintf(out, "TPM: manufacturer %s, model %s, version %s\n", termText(c.Manufacturer), termText(c.Model), termText(c.Version))
			for depth, cc := range c.Chain {
				subject := cc.Subject.String()
				if subject == "" {
					subject = "(empty subject: the TPM identity is in the subjectAltName)"
				}
				fmt.Fprintf(out, "chain %d: %s\n", depth, termText(subject))
			}
			for _, q := range c.Quirks {
				fmt.Fprintf(out, "accepted quirk: %s\n", q)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&roots, "roots", nil, "trusted vendor CA certificate files (PEM or DER), comma-separated or repeated")
	cmd.Flags().StringSliceVar(&intermediates, "intermediates", nil, "untrusted intermediate CA certificate files")
	cmd.Flags().StringVar(&at, "at", "", "check validity at this time (RFC 3339; default now)")
	cmd.Flags().BoolVar(&allowSHA1, "insecure-allow-sha1", false, "accept SHA-1 signatures in the chain")
	return cmd
}
