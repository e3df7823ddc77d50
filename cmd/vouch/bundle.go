package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/bundle"
	"github.com/vouch-attest/vouch/internal/strictjson"
	"github.com/vouch-attest/vouch/policy"
)

func newBundleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Create, sign, verify and show reference-value bundles",
		Long: `A bundle holds one release's or package's expected boot measurements,
per component and event kind, signed by its publisher inside a DSSE envelope.
See docs/bundles.md.`,
	}
	cmd.AddCommand(
		newBundleKeygenCmd(),
		newBundleCreateCmd(),
		newBundleSignCmd(),
		newBundleVerifyCmd(),
		newBundleShowCmd(),
		newBundleSchemaCmd(),
	)
	return cmd
}

func newBundleKeygenCmd() *cobra.Command {
	var alg, out string
	cmd := &cobra.Command{
		Use:   "keygen --out NAME",
		Short: "Generate a publisher signing key",
		Long: `Writes NAME.key (PKCS #8 PEM, mode 0600) and NAME.pub (PKIX PEM) and prints
the key id. Neither file is overwritten. Give NAME.pub to verifiers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return withExitCode(exitUsage, errors.New("--out is required: the path prefix of the key files"))
			}
			key, err := bundle.GenerateKey(alg, rand.Reader)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			privPEM, err := bundle.MarshalPrivateKeyPEM(key)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			pubPEM, err := bundle.MarshalPublicKeyPEM(key.Public())
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			if err := writeNewFile(out+".key", privPEM, 0o600); err != nil {
				return withExitCode(exitUnreadable, err)
			}
			if err := writeNewFile(out+".pub", pubPEM, 0o644); err != nil {
				return withExitCode(exitUnreadable, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key id %s\nprivate key %s.key\npublic key %s.pub\n", key.KeyID(), out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&alg, "alg", bundle.AlgEd25519, "key algorithm: ed25519 or ecdsa-p256")
	cmd.Flags().StringVar(&out, "out", "", "path prefix of the key files (writes PREFIX.key and PREFIX.pub)")
	return cmd
}

// writeNewFile creates path with mode perm and fails when it exists.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeOutput writes data to path, or to stdout when path is "" or "-".
func writeOutput(cmd *cobra.Command, path string, data []byte) error {
	if path == "" || path == "-" {
		_, err := cmd.OutOrStdout().Write(data)
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return withExitCode(exitUnreadable, err)
	}
	return nil
}

func newBundleCreateCmd() *cobra.Command {
	var (
		publisher, product, version, description string
		notBefore, notAfter, validFor            string
		components, out, pcrlockKind             string
		pcrlocks                                 []string
		fromLog, logPCRs                         string
		fromPredict                              []string
		lf                                       logFlags
	)
	cmd := &cobra.Command{
		Use:   "create --publisher P --product X --version V --components FILE",
		Short: "Create an unsigned bundle",
		Long: `Writes an unsigned bundle (bare JSON, see docs/bundles.md) to review and then
sign with vouch bundle sign. --components reads a JSON array of components,
or any JSON object with a "components" member, such as another bundle or the
output of vouch policy learn. --from-predict reads vouch predict's output,
--from-log takes the events of a golden machine's log, --pcrlock imports
systemd-pcrlock files; all of them combine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if components == "" && len(pcrlocks) == 0 && fromLog == "" && len(fromPredict) == 0 {
				return withExitCode(exitUsage, errors.New("give the values with --from-predict, --from-log, --components or --pcrlock"))
			}
			start := time.Now().UTC().Truncate(time.Second)
			if notBefore != "" {
				t, err := time.Parse(time.RFC3339, notBefore)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--not-before: %w", err))
				}
				start = t
			}
			var end time.Time
			switch {
			case notAfter != "" && cmd.Flags().Changed("valid-for"):
				return withExitCode(exitUsage, errors.New("set --not-after or --valid-for, not both"))
			case notAfter != "":
				t, err := time.Parse(time.RFC3339, notAfter)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--not-after: %w", err))
				}
				end = t
			default:
				d, err := parseDays(validFor)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--valid-for: %w", err))
				}
				end = start.Add(d)
			}

			var comps []bundle.Component
			if components != "" {
				data, err := bundle.ReadFile(components)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				comps, err = decodeComponents(data)
				if err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", components, err))
				}
			}
			for _, path := range fromPredict {
				data, err := bundle.ReadFile(path)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				predicted, err := bundle.FromPrediction(data)
				if err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", path, err))
				}
				comps = append(comps, predicted...)
			}
			if fromLog != "" {
				pcrs, err := attest.ParsePCRList(logPCRs)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--log-pcrs: %w", err))
				}
				ev, err := lf.evidence(cmd, fromLog)
				if err != nil {
					return err
				}
				learned := policy.Learn(ev, pcrs)
				for i := range learned {
					learned[i].Source = fromLog + " " + learned[i].Source
				}
				comps = append(comps, learned...)
			}
			for _, path := range pcrlocks {
				data, err := bundle.ReadFile(path)
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				c, err := bundle.ImportPCRLock(bundle.PCRLockName(path), data, bundle.Kind(pcrlockKind))
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				comps = append(comps, *c)
			}
			b := &bundle.Bundle{
				Schema:      bundle.SchemaV1,
				Publisher:   publisher,
				Product:     product,
				Version:     version,
				NotBefore:   start,
				NotAfter:    end,
				Description: description,
				Components:  comps,
			}
			encoded, err := b.Marshal()
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			return writeOutput(cmd, out, encoded)
		},
	}
	f := cmd.Flags()
	f.StringVar(&publisher, "publisher", "", "publisher name; verifiers map it to the publisher's keys")
	f.StringVar(&product, "product", "", "release or package name, such as debian")
	f.StringVar(&version, "version", "", "release or package version, such as 12.8")
	f.StringVar(&description, "description", "", "free text for people")
	f.StringVar(&notBefore, "not-before", "", "start of the validity period, RFC 3339 (default: now)")
	f.StringVar(&notAfter, "not-after", "", "end of the validity period, RFC 3339")
	f.StringVar(&validFor, "valid-for", "365d", "length of the validity period, in days (90d) or as a Go duration (2160h)")
	f.StringVar(&components, "components", "", "JSON file with the components")
	f.StringArrayVar(&fromPredict, "from-predict", nil, "JSON prediction written by vouch predict (repeatable)")
	f.StringVar(&fromLog, "from-log", "", "golden machine's event log whose events become components (needs --pcrs)")
	f.StringVar(&logPCRs, "log-pcrs", "4,7-9,11-14", "PCRs of --from-log whose events, less those the firmware logged, become components")
	lf.register(cmd)
	f.StringArrayVar(&pcrlocks, "pcrlock", nil, "systemd .pcrlock file to import as a component (repeatable)")
	f.StringVar(&pcrlockKind, "pcrlock-kind", "", "event kind of the --pcrlock components (default: from the PCR of the first record)")
	f.StringVar(&out, "out", "", "file to write the bundle to (default: standard output)")
	return cmd
}

// parseDays parses "90d" as 90 days, and anything else as a Go duration.
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 36500 {
			return 0, fmt.Errorf("invalid number of days %q: expected 1d to 36500d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %s is not positive", s)
	}
	return d, nil
}

// decodeComponents reads a JSON array of components or an object with a
// "components" member, such as the output of vouch policy learn. The
// components are about to be signed, so repeated members and member names
// in another case are rejected: the publisher must sign what a reviewer
// read.
func decodeComponents(data []byte) ([]bundle.Component, error) {
	var list []bundle.Component
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "[") {
		if err := strictjson.Decode(data, &list, strictjson.Options{}); err != nil {
			return nil, fmt.Errorf("decode components: %w", err)
		}
		return list, nil
	}
	var obj struct {
		Components []bundle.Component `json:"components"`
	}
	// Other members, such as the baseline of vouch policy learn, are not
	// components and are left alone.
	if err := strictjson.Decode(data, &obj, strictjson.Options{AllowUnknown: true}); err != nil {
		return nil, fmt.Errorf("decode components: %w", err)
	}
	if obj.Components == nil {
		return nil, errors.New(`no "components" member: expected a JSON array of components or an object with "components"`)
	}
	return obj.Components, nil
}

func newBundleSignCmd() *cobra.Command {
	var keyFile, out string
	cmd := &cobra.Command{
		Use:   "sign --key KEY FILE",
		Short: "Sign a bundle, producing a DSSE envelope",
		Long: `Signs FILE, a bare bundle or an envelope, with the publisher key KEY. A bare
bundle is validated and wrapped in a new envelope; an envelope gets one more
signature over its unchanged payload.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return withExitCode(exitUsage, errors.New("--key is required: a private key written by vouch bundle keygen"))
			}
			keyPEM, err := readLimited(keyFile, nil, maxSmallFileSize)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			key, err := bundle.ParsePrivateKeyPEM(keyPEM)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", keyFile, err))
			}
			data, err := bundle.ReadFile(args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			var env *bundle.Envelope
			if bundle.IsEnvelope(data) {
				env, err = bundle.ParseEnvelope(data)
				if err == nil {
					_, err = env.Unverified()
				}
			} else {
				var b *bundle.Bundle
				b, err = bundle.Parse(data)
				if err == nil {
					env, err = bundle.NewEnvelope(b)
				}
			}
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", args[0], err))
			}
			if err := env.Sign(key, rand.Reader); err != nil {
				return withExitCode(exitUnreadable, err)
			}
			encoded, err := env.Marshal()
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			if err := writeOutput(cmd, out, encoded); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "signed with key %s\n", key.KeyID())
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "private key file (PKCS #8 PEM)")
	cmd.Flags().StringVar(&out, "out", "", "file to write the signed envelope to (default: standard output)")
	return cmd
}

// trustFlags are the flags that configure publisher keys.
type trustFlags struct {
	keys []string
	at   string
}

func (t *trustFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&t.keys, "trust", nil, "trusted publisher key as PUBLISHER=PUBLIC_KEY_FILE (repeatable)")
	cmd.Flags().StringVar(&t.at, "at", "", "time of verification, RFC 3339 (default: now)")
}

func (t *trustFlags) loader() (*bundle.Loader, error) {
	if len(t.keys) == 0 {
		return nil, withExitCode(exitUsage, errors.New("no trusted publisher keys: pass --trust PUBLISHER=KEY.pub"))
	}
	store := bundle.NewTrustStore()
	for _, spec := range t.keys {
		name, file, ok := strings.Cut(spec, "=")
		if !ok || name == "" || file == "" {
			return nil, withExitCode(exitUsage, fmt.Errorf("--trust %q: expected PUBLISHER=PUBLIC_KEY_FILE", spec))
		}
		data, err := readLimited(file, nil, maxSmallFileSize)
		if err != nil {
			return nil, withExitCode(exitUnreadable, err)
		}
		pub, err := bundle.ParsePublicKeyPEM(data)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", file, err))
		}
		if err := store.Add(name, pub); err != nil {
			return nil, withExitCode(exitUsage, err)
		}
	}
	now := time.Now()
	if t.at != "" {
		at, err := time.Parse(time.RFC3339, t.at)
		if err != nil {
			return nil, withExitCode(exitUsage, fmt.Errorf("--at: %w", err))
		}
		now = at
	}
	return &bundle.Loader{Trust: store, Now: func() time.Time { return now }}, nil
}

// loadBundles loads every source and splits the failures into rejections
// (exit code 1) and operational errors (exit code 3). A source that holds
// no bundle is an operational error.
func loadBundles(ctx context.Context, l *bundle.Loader, sources []string, w io.Writer) ([]*bundle.Verified, error) {
	var all []*bundle.Verified
	rejected, broken := 0, 0
	for _, src := range sources {
		got, errs := l.Load(ctx, src)
		all = append(all, got...)
		if len(got) == 0 && len(errs) == 0 {
			// An empty directory must not read as "all verified".
			broken++
			fmt.Fprintf(w, "rejected %s: no bundle found: a directory source needs *.json envelopes\n", termText(src))
		}
		for _, err := range errs {
			if bundle.RejectionReason(err) != 0 {
				rejected++
			} else {
				broken++
			}
			fmt.Fprintf(w, "rejected %s\n", termText(err.Error()))
		}
	}
	switch {
	case broken > 0:
		return all, withExitCode(exitUnreadable, fmt.Errorf("%d bundle source(s) could not be read", broken))
	case rejected > 0:
		return all, withExitCode(exitMismatch, fmt.Errorf("%d bundle(s) rejected", rejected))
	}
	return all, nil
}

func newBundleVerifyCmd() *cobra.Command {
	var trust trustFlags
	cmd := &cobra.Command{
		Use:   "verify --trust PUBLISHER=KEY.pub SOURCE...",
		Short: "Verify bundles against trusted publisher keys",
		Long: `Verifies each SOURCE (an envelope file, a directory of *.json envelopes, or an
http(s) URL) and prints each accepted bundle and each rejection with its
reason. Exits 1 when a bundle is rejected and 3 when a source cannot be read
or holds no bundle.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := trust.loader()
			if err != nil {
				return err
			}
			got, err := loadBundles(cmd.Context(), l, args, cmd.OutOrStdout())
			for _, v := range got {
				b := v.Bundle()
				fmt.Fprintf(cmd.OutOrStdout(), "ok %s: bundle %s by %s (key %s), valid %s to %s\n",
					termText(v.Source()), termText(b.ID()), termText(v.Publisher()), shortID(v.KeyID()),
					b.NotBefore.UTC().Format(time.RFC3339), b.NotAfter.UTC().Format(time.RFC3339))
			}
			return err
		},
	}
	trust.register(cmd)
	return cmd
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

func newBundleShowCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print a bundle's contents without verifying it",
		Long: `Prints the bundle in FILE (an envelope or a bare bundle) as a table, or as
its JSON payload with -o json. Nothing shown is verified: use vouch bundle
verify for that.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(format, "table", "json"); err != nil {
				return err
			}
			data, err := bundle.ReadFile(args[0])
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			var b *bundle.Bundle
			var env *bundle.Envelope
			if bundle.IsEnvelope(data) {
				env, err = bundle.ParseEnvelope(data)
				if err == nil {
					b, err = env.Unverified()
				}
			} else {
				b, err = bundle.Parse(data)
			}
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", args[0], err))
			}
			if format == "json" {
				encoded, err := b.Marshal()
				if err != nil {
					return withExitCode(exitUnreadable, err)
				}
				_, err = cmd.OutOrStdout().Write(encoded)
				return err
			}
			printBundle(cmd.OutOrStdout(), b, env)
			return nil
		},
	}
	addOutputFormatFlag(cmd.Flags(), &format, "table", "json")
	return cmd
}

func printBundle(w io.Writer, b *bundle.Bundle, env *bundle.Envelope) {
	fmt.Fprintf(w, "bundle     %s (unverified)\n", termText(b.ID()))
	fmt.Fprintf(w, "publisher  %s\n", termText(b.Publisher))
	fmt.Fprintf(w, "valid      %s to %s\n", b.NotBefore.UTC().Format(time.RFC3339), b.NotAfter.UTC().Format(time.RFC3339))
	if b.Description != "" {
		fmt.Fprintf(w, "about      %s\n", termText(b.Description))
	}
	switch {
	case env == nil:
		fmt.Fprintln(w, "signatures none (bare bundle)")
	case len(env.Signatures) == 0:
		fmt.Fprintln(w, "signatures none")
	default:
		ids := make([]string, 0, len(env.Signatures))
		for _, s := range env.Signatures {
			id := s.KeyID
			if id == "" {
				id = "(no key id)"
			}
			ids = append(ids, termText(id))
		}
		fmt.Fprintf(w, "signatures %s\n", strings.Join(ids, ", "))
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tKIND\tPCR\tBANK\tDIGEST\tNOTE")
	for _, c := range b.Components {
		for _, v := range c.Values {
			banks := make([]string, 0, len(v.Digests))
			for bank := range v.Digests {
				banks = append(banks, string(bank))
			}
			sort.Strings(banks)
			note := v.Description
			if v.Data != "" {
				note = strconv.Quote(v.Data)
			}
			for _, bank := range banks {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", termText(c.Name), termText(string(c.Kind)), v.PCR, termText(bank), v.Digests[bundle.Bank(bank)], termText(note))
			}
		}
	}
	tw.Flush()
}

func newBundleSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the bundle format",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(bundle.SchemaJSON)
			return err
		},
	}
}
