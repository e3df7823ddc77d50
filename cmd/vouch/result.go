package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/result"
)

func newResultCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "result",
		Short: "Verify signed attestation results",
		Long: `The verifier signs each machine's state as an attestation result: a DSSE
envelope that a relying party can check offline with the verifier's public
key (result-key.pub in the server's data directory, or GET /v1/result-key).
Agents write their latest result to result.json in their state directory,
and administrators fetch one with 'vouch hosts result NAME'.`,
	}
	cmd.AddCommand(newResultVerifyCmd())
	return cmd
}

func newResultVerifyCmd() *cobra.Command {
	var keyFile, machine, at, format string
	cmd := &cobra.Command{
		Use:   "verify FILE --key PUBKEY",
		Short: "Check a signed attestation result and print the machine's state",
		Long: `Check that FILE is an attestation result signed by the verifier key in
--key and valid now (or at --at), and print it. FILE "-" reads standard
input.

Exit codes:
  0  the result is genuine, valid, and says the machine is trusted
  1  the result is not signed by the key, has expired, names another
     machine than --machine, or says the machine is not trusted
  2  invalid flags or arguments
  3  FILE or --key cannot be read, or FILE is not an attestation result`,
		Args: exactArgs("result FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(format, "table", "json"); err != nil {
				return withExitCode(exitUsage, err)
			}
			now := time.Now()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("invalid --at %q: give an RFC 3339 time such as 2026-12-01T12:00:00Z", at))
				}
				now = t
			}
			pub, err := readResultKey(keyFile)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			data, err := readLimited(args[0], cmd.InOrStdin(), result.MaxSize)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}

			r, err := result.Verify(data, pub, now)
			if err != nil && !errors.Is(err, result.ErrExpired) {
				code := exitUnreadable
				if errors.Is(err, result.ErrSignature) {
					code = exitMismatch
				}
				return withExitCode(code, fmt.Errorf("%s: %w", args[0], err))
			}
			if perr := printResult(cmd.OutOrStdout(), format, r); perr != nil {
				return perr
			}
			switch {
			case err != nil:
				return withExitCode(exitMismatch, fmt.Errorf("%s: %w", args[0], err))
			case machine != "" && r.Machine != machine:
				return withExitCode(exitMismatch, fmt.Errorf("%s: the result is for machine %q, not %q", args[0], r.Machine, machine))
			case !r.Trusted():
				return withExitCode(exitMismatch, fmt.Errorf("%s: machine %q is %s", args[0], r.Machine, r.State))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "PEM public key of the verifier (result-key.pub in its data directory)")
	f.StringVar(&machine, "machine", "", "fail unless the result is for this machine name")
	f.StringVar(&at, "at", "", "check validity at this RFC 3339 time instead of now")
	addOutputFormatFlag(f, &format, "table", "json")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func readResultKey(path string) (any, error) {
	data, err := readLimited(path, nil, maxSmallFileSize)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	pub, err := bundle.ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("--key %s is not the verifier's result key: give result-key.pub from the server's data directory, or save GET /v1/result-key", path)
	}
	return pub, nil
}

func printResult(w io.Writer, format string, r *result.Result) error {
	if format == "json" {
		return printJSON(w, r)
	}
	fmt.Fprintf(w, "Machine:   %s\n", termText(r.Machine))
	fmt.Fprintf(w, "State:     %s\n", termText(r.State))
	for _, code := range r.Reasons {
		fmt.Fprintf(w, "Reason:    %s\n", termText(code))
	}
	fmt.Fprintf(w, "Boot:      %d (TPM resetCount %d)\n", r.BootCount, r.ResetCount)
	fmt.Fprintf(w, "Verified:  %s\n", r.VerifiedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "Valid:     %s to %s\n", r.IssuedAt.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339))
	fmt.Fprintf(w, "EK:        sha256:%s\n", termText(r.EKSHA256))
	fmt.Fprintf(w, "Signed by: %s\n", termText(r.Verifier))
	return nil
}

// newHostsResultCmd fetches a machine's signed attestation result.
func newHostsResultCmd(flags *clientFlags) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "result NAME",
		Short: "Fetch a machine's signed attestation result, for 'vouch result verify'",
		Args:  exactArgs("machine NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client()
			if err != nil {
				return err
			}
			var signed json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/v1/machines/"+url.PathEscape(args[0])+"/result", nil, &signed); err != nil {
				return apiExit(err)
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(signed)
				return err
			}
			if err := os.WriteFile(out, signed, 0o644); err != nil {
				return withExitCode(exitUnreadable, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the result to (default: standard output)")
	return cmd
}
