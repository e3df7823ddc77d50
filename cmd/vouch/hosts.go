package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/api"
)

func newHostsCmd() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "List and manage the machines the verifier attests",
		Long: `Administer machines through the verifier's API.

The verifier URL, admin token and TLS pin come from flags, else from the
environment (VOUCH_SERVER, VOUCH_TOKEN, VOUCH_SERVER_FINGERPRINT), else from
the client config file.`,
	}
	flags.register(cmd)

	list := &cobra.Command{
		Use:   "list",
		Short: "List machines: name, state, since, last verdict, boot count",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := flags.client()
			if err != nil {
				return err
			}
			var machines []api.Machine
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/v1/machines", nil, &machines); err != nil {
				return apiExit(err)
			}
			if flags.output == "json" {
				return printJSON(cmd.OutOrStdout(), machines)
			}
			printMachines(cmd.OutOrStdout(), machines, time.Now())
			return nil
		},
	}

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a machine's last verdict with its event-level explanation, and its history",
		Args:  exactArgs("machine NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client()
			if err != nil {
				return err
			}
			var d api.MachineDetail
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/v1/machines/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return apiExit(err)
			}
			if flags.output == "json" {
				return printJSON(cmd.OutOrStdout(), d)
			}
			printMachineDetail(cmd.OutOrStdout(), d)
			return nil
		},
	}

	action := func(use, short, method, suffix string) *cobra.Command {
		var reason string
		c := &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  exactArgs("machine NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := flags.client()
				if err != nil {
					return err
				}
				var body any
				if use == "revoke" {
					body = api.RevokeRequest{Reason: reason}
				}
				var m api.Machine
				path := "/v1/machines/" + url.PathEscape(args[0]) + suffix
				if _, err := c.Do(cmd.Context(), method, path, body, &m); err != nil {
					return apiExit(err)
				}
				if flags.output == "json" && m.Name != "" {
					return printJSON(cmd.OutOrStdout(), m)
				}
				past := map[string]string{"approve": "approved", "revoke": "revoked", "forget": "forgotten", "attest": "asked to attest now"}[use]
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", args[0], past)
				return nil
			},
		}
		if use == "revoke" {
			c.Flags().StringVar(&reason, "reason", "", "why the machine is revoked (kept in the history)")
		}
		return c
	}
	interval := &cobra.Command{
		Use:   "interval NAME DURATION",
		Short: "Set a machine's attestation interval, such as 30s or 5m (0 restores the server's default)",
		Args:  exactArgs("machine NAME", "DURATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := time.ParseDuration(args[1])
			if args[1] == "0" {
				d, err = 0, nil
			}
			if err != nil || d < 0 || (d > 0 && d < time.Second) {
				return withExitCode(exitUsage, fmt.Errorf("invalid interval %q: give a duration of at least 1s, such as 30s or 5m, or 0", args[1]))
			}
			c, err := flags.client()
			if err != nil {
				return err
			}
			var m api.Machine
			if _, err := c.Do(cmd.Context(), http.MethodPut, "/v1/machines/"+url.PathEscape(args[0])+"/interval", api.IntervalRequest{Seconds: int64(d / time.Second)}, &m); err != nil {
				return apiExit(err)
			}
			if flags.output == "json" {
				return printJSON(cmd.OutOrStdout(), m)
			}
			if m.IntervalSeconds == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is attested at the server's default interval\n", m.Name)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is attested every %s\n", m.Name, intervalText(m.IntervalSeconds))
			}
			return nil
		},
	}
	cmd.AddCommand(list, show, interval, newHostsResultCmd(&flags),
		action("approve", "Approve a pending machine and its learned reference values (with --bundles: its firmware values, or their new revision after a firmware change)", http.MethodPost, "/approve"),
		action("revoke", "Revoke a machine: its TPM can never enroll again, under any name", http.MethodPost, "/revoke"),
		action("forget", "Delete a machine and its verdicts (history is kept; a revoked EK stays revoked)", http.MethodDelete, ""),
		action("attest", "Ask a machine for evidence now", http.MethodPost, "/attest"),
		newHistoryCmd(&flags),
	)
	return cmd
}

func newHistoryCmd(flags *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history [NAME]",
		Short: "Show the append-only history of state changes, newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if len(args) == 1 {
				q.Set("machine", args[0])
			}
			var hist []api.HistoryEvent
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/v1/history?"+q.Encode(), nil, &hist); err != nil {
				return apiExit(err)
			}
			if flags.output == "json" {
				return printJSON(cmd.OutOrStdout(), hist)
			}
			printHistory(cmd.OutOrStdout(), hist)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "number of entries to show")
	return cmd
}

func newEKCmd() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "ek",
		Short: "Pin, list and revoke endorsement keys at the verifier",
	}
	flags.register(cmd)
	var note, hash string
	pin := &cobra.Command{
		Use:   "pin [FILE]",
		Short: "Register an EK (certificate or public key, DER or PEM) before its machine first connects",
		Long: `Register an EK so that its machine may enroll whatever the verifier's EK
mode is. FILE is the EK certificate or its public key, in DER or PEM (for
example from 'tpm2_getekcertificate' or 'tpm2_readpublic -f der'); --sha256
pins the hex SHA-256 of the PKIX public key instead.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req api.PinEKRequest
			switch {
			case len(args) == 1 && hash != "":
				return withExitCode(exitUsage, fmt.Errorf("give FILE or --sha256, not both"))
			case len(args) == 1:
				data, err := readLimited(args[0], cmd.InOrStdin(), maxSmallFileSize)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				if req, err = ekPinRequest(args[0], data, cmd.ErrOrStderr()); err != nil {
					return err
				}
			case hash != "":
				req.SHA256 = hash
			default:
				return withExitCode(exitUsage, fmt.Errorf("give the EK certificate or public key FILE, or --sha256"))
			}
			req.Note = note
			c, err := flags.client()
			if err != nil {
				return err
			}
			var ek api.EK
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/v1/eks", req, &ek); err != nil {
				return apiExit(err)
			}
			if flags.output == "json" {
				return printJSON(cmd.OutOrStdout(), ek)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "EK %s %s\n", ek.SHA256, ek.Status)
			return nil
		},
	}
	pin.Flags().StringVar(&note, "note", "", "free text kept with the EK, such as an asset tag")
	pin.Flags().StringVar(&hash, "sha256", "", "hex SHA-256 of the EK's PKIX public key, instead of FILE")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the EKs the verifier knows: pinned, enrolled and revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := flags.client()
			if err != nil {
				return err
			}
			var eks []api.EK
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/v1/eks", nil, &eks); err != nil {
				return apiExit(err)
			}
			if flags.output == "json" {
				return printJSON(cmd.OutOrStdout(), eks)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SHA256\tSTATUS\tMACHINE\tNOTE")
			for _, ek := range eks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", termText(ek.SHA256), termText(ek.Status), dash(termText(ek.Machine)), dash(termText(ek.Note)))
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke SHA256",
		Short: "Revoke an EK, enrolled or not: its TPM can never enroll again",
		Args:  exactArgs("EK SHA256"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client()
			if err != nil {
				return err
			}
			var out json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/v1/eks/"+url.PathEscape(args[0])+"/revoke", api.RevokeRequest{}, &out); err != nil {
				return apiExit(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "EK %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(pin, list, revoke)
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return t.Local().Format("2006-01-02")
	}
}

func printMachines(w io.Writer, machines []api.Machine, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSINCE\tLAST VERDICT\tBOOTS\tREASONS")
	for _, m := range machines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", termText(m.Name), termText(m.State), ago(m.Since, now), ago(m.LastVerdictAt, now), m.BootCount, dash(termText(strings.Join(m.ReasonCodes, ","))))
	}
	tw.Flush()
	if len(machines) == 0 {
		fmt.Fprintln(w, "(no machines enrolled)")
	}
}

// printMachineDetail prints what "vouch hosts show" shows. Every string
// from the server passes through termText: the facts, and the reason
// messages that quote the agent, come from the machine being attested,
// and databases written before the server checked facts may hold any
// bytes.
func printMachineDetail(w io.Writer, d api.MachineDetail) {
	now := time.Now()
	fmt.Fprintf(w, "Machine:   %s\n", termText(d.Name))
	fmt.Fprintf(w, "State:     %s (since %s)\n", termText(d.State), ago(d.Since, now))
	fmt.Fprintf(w, "Approval:  %s\n", approvalText(d.Name, d.Approved, d.ReferenceApproved))
	fmt.Fprintf(w, "Boots:     %d\n", d.BootCount)
	if d.IntervalSeconds > 0 {
		fmt.Fprintf(w, "Interval:  %s\n", intervalText(d.IntervalSeconds))
	}
	if d.IMAEntries > 0 {
		fmt.Fprintf(w, "IMA:       %d entries verified in this boot\n", d.IMAEntries)
	}
	fmt.Fprintf(w, "EK:        sha256:%s\n", d.EKSHA256)
	if d.Facts.Hostname != "" || d.Facts.OS != "" {
		fmt.Fprintf(w, "Host:      %s %s\n", termText(d.Facts.Hostname), termText(d.Facts.OS))
	}
	if d.Verdict == nil {
		fmt.Fprintln(w, "Verdict:   none yet")
	} else {
		fmt.Fprintf(w, "Verdict:   %s at %s (boot %d)\n", termText(d.Verdict.State), d.Verdict.At.Local().Format(time.DateTime), d.Verdict.BootCount)
		for _, r := range d.Verdict.Reasons {
			code := r.Code
			if r.Action != "" {
				code += ", " + r.Action // a warning: the machine stays trusted
			}
			fmt.Fprintf(w, "  - [%s] %s\n", termText(code), termText(r.Message))
		}
		printIMAReport(w, d.Verdict.IMA)
	}
	if len(d.History) > 0 {
		fmt.Fprintln(w, "History (newest first):")
		printHistory(w, d.History)
	}
}

// approvalText states the two approvals of a machine apart: its
// enrollment (approved at once unless the server runs with
// --require-approval) and the reference values learned from it.
func approvalText(name string, enrollment, reference bool) string {
	next := fmt.Sprintf(" (run 'vouch hosts approve %s')", termText(name))
	switch {
	case enrollment && reference:
		return "enrollment and reference values approved"
	case enrollment:
		return "enrollment approved, reference values not approved yet" + next
	case reference:
		return "enrollment pending" + next + ", reference values approved"
	default:
		return "enrollment and reference values pending" + next
	}
}

func printHistory(w io.Writer, hist []api.HistoryEvent) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tMACHINE\tEVENT\tCHANGE\tDETAIL")
	for _, h := range hist {
		change := "-"
		switch {
		case h.From != "" && h.From == h.To:
			change = h.To + " (unchanged)"
		case h.From != "" || h.To != "":
			change = dash(h.From) + " -> " + dash(h.To)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", h.At.Local().Format(time.DateTime), dash(termText(h.Machine)), termText(h.Kind), termText(change), dash(termText(h.Detail)))
	}
	tw.Flush()
}

func intervalText(seconds int64) string {
	return (time.Duration(seconds) * time.Second).String()
}
