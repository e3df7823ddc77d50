package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/api"
)

func newTokenCmd() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the verifier's admin token",
	}
	flags.register(cmd)

	var out string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the admin token; the current one stops working at once",
		Long: `Ask the verifier for a new admin token. The verifier writes it to
admin-token in its data directory, and the token used for this request stops
working at once, as do dashboard sessions. With --out the new token is
written to that file (mode 0600); otherwise it is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := flags.client()
			if err != nil {
				return err
			}
			var tok api.TokenResponse
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/v1/token/rotate", nil, &tok); err != nil {
				return apiExit(err)
			}
			if out == "" {
				fmt.Fprintln(cmd.OutOrStdout(), tok.Token)
				return nil
			}
			if err := os.WriteFile(out, []byte(tok.Token+"\n"), 0o600); err != nil {
				// The old token no longer works, so print the new one
				// rather than lose it.
				fmt.Fprintln(cmd.OutOrStdout(), tok.Token)
				return withExitCode(exitUnreadable, fmt.Errorf("write --out %s: %w: the new token is printed above, and the server's data directory has it in admin-token", out, err))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "new admin token written to %s\n", out)
			return nil
		},
	}
	rotate.Flags().StringVar(&out, "out", "", "file to write the new token to, mode 0600 (default: print it)")
	cmd.AddCommand(rotate)
	return cmd
}
