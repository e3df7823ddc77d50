package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/seal"
	"github.com/vouch-attest/vouch/tpm"
)

const tpmFlagHelp = "TPM to use: device, device:/dev/tpmrm0, swtpm:unix:PATH, swtpm:tcp:HOST:PORT or simulator (env VOUCH_TPM)"

// sealFlags are the flags shared by vouch seal and vouch totp enroll.
type sealFlags struct {
	tpm       string
	pcrs      string
	bank      string
	expect    string
	policyKey string
	counter   string
}

func (f *sealFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tpm, "tpm", envOr("VOUCH_TPM", tpm.TransportDevice), tpmFlagHelp)
	cmd.Flags().StringVar(&f.pcrs, "pcrs", "0,2,4,7", "PCRs to seal to, e.g. 0,2,4,7 or 0-7")
	cmd.Flags().StringVar(&f.bank, "bank", "sha256", "PCR bank: sha1, sha256, sha384 or sha512")
	cmd.Flags().StringVar(&f.expect, "expect", "", `seal to the PCR values in this JSON file ({"banks": {"sha256": {"0": "hex"}}}) instead of the current ones`)
	cmd.Flags().StringVar(&f.policyKey, "policy-key", "", "seal with PolicyAuthorize to this policy key (PEM file from vouch seal keygen): the secret then unseals under any PCR policy the key approves")
	cmd.Flags().StringVar(&f.counter, "counter", "", fmt.Sprintf("NV index of the revocation counter for approvals, or none (default 0x%08x with --policy-key)", uint32(seal.DefaultCounterIndex)))
}

// request builds the seal request: PCR values from --expect or from t.
func (f *sealFlags) request(t *tpm.TPM) (seal.Request, error) {
	pcrs, err := pcrValues(t, f.pcrs, f.bank, f.expect)
	if err != nil {
		return seal.Request{}, err
	}
	req := seal.Request{PCRs: pcrs}
	if f.policyKey == "" {
		if f.counter != "" {
			return seal.Request{}, withExitCode(exitUsage, errors.New("--counter needs --policy-key: only approvals can be revoked"))
		}
		return req, nil
	}
	data, err := readLimited(f.policyKey, nil, 64<<10)
	if err != nil {
		return seal.Request{}, withExitCode(exitUnreadable, fmt.Errorf("reading policy key: %w", err))
	}
	if req.PolicyKey, err = seal.ParsePolicyPublicKey(data); err != nil {
		return seal.Request{}, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", f.policyKey, err))
	}
	if req.Counter, err = parseCounter(f.counter); err != nil {
		return seal.Request{}, err
	}
	return req, nil
}

// pcrValues returns the selected PCRs from the expected-values file or,
// without one, from the TPM.
func pcrValues(t *tpm.TPM, list, bankName, expectPath string) (seal.PCRs, error) {
	sel, err := seal.ParseSelection(list)
	if err != nil {
		return seal.PCRs{}, withExitCode(exitUsage, fmt.Errorf("--pcrs: %w", err))
	}
	bank, err := seal.ParseBank(bankName)
	if err != nil {
		return seal.PCRs{}, withExitCode(exitUsage, fmt.Errorf("--bank: %w", err))
	}
	if expectPath == "" {
		if t == nil {
			return seal.PCRs{}, withExitCode(exitUsage, errors.New("no PCR values: give --expect FILE or a TPM to read them from"))
		}
		p, err := seal.ReadPCRs(t, bank, sel)
		return p, withExitCode(exitUnavailable, err)
	}
	data, err := readLimited(expectPath, nil, 1<<20)
	if err != nil {
		return seal.PCRs{}, withExitCode(exitUnreadable, fmt.Errorf("reading expected PCR values: %w", err))
	}
	all, err := seal.ParseExpected(data, bank)
	if err != nil {
		return seal.PCRs{}, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", expectPath, err))
	}
	p, err := all.Subset(sel)
	if err != nil {
		return seal.PCRs{}, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", expectPath, err))
	}
	return p, nil
}

// parseCounter reads --counter: an NV index such as 0x01305643, "none",
// or empty for the default.
func parseCounter(text string) (tpm2.TPMHandle, error) {
	switch strings.ToLower(text) {
	case "":
		return seal.DefaultCounterIndex, nil
	case "none", "0":
		return 0, nil
	}
	v, err := strconv.ParseUint(text, 0, 32)
	if err != nil {
		return 0, withExitCode(exitUsage, fmt.Errorf("--counter %q is not an NV index such as 0x%08x, nor none", text, uint32(seal.DefaultCounterIndex)))
	}
	idx := tpm2.TPMHandle(v)
	if _, err := tpm.CounterPublic(idx); err != nil {
		return 0, withExitCode(exitUsage, fmt.Errorf("--counter: %w", err))
	}
	return idx, nil
}

func openTPM(spec string) (*tpm.TPM, error) {
	t, err := tpm.Open(tpm.Config{Transport: spec})
	if err != nil {
		return nil, withExitCode(exitUnavailable, err)
	}
	return t, nil
}

// sealSecret seals secret as the flags in f request and returns the
// blob's bytes. It creates the revocation counter when f names one.
func sealSecret(f *sealFlags, secret []byte, stderr io.Writer) ([]byte, *seal.Blob, error) {
	t, err := openTPM(f.tpm)
	if err != nil {
		return nil, nil, err
	}
	defer t.Close()
	req, err := f.request(t)
	if err != nil {
		return nil, nil, err
	}
	if req.Counter != 0 {
		value, err := t.EnsureCounter(req.Counter)
		if err != nil {
			return nil, nil, withExitCode(exitUnavailable, err)
		}
		fmt.Fprintf(stderr, "revocation counter 0x%08x is at %d: sign approvals with --generation %d\n", uint32(req.Counter), value, value)
	}
	b, err := seal.Seal(t, secret, req)
	if err != nil {
		return nil, nil, withExitCode(exitUnavailable, err)
	}
	data, err := b.Marshal()
	if err != nil {
		return nil, nil, err
	}
	if f.tpm == tpm.TransportSimulator {
		fmt.Fprintln(stderr, "warning: sealed with --tpm simulator, whose state ends with this process: no later process can unseal the blob; use a swtpm socket to seal and unseal in separate runs (docs/tpm.md)")
	}
	return data, b, nil
}

func newSealCmd() *cobra.Command {
	var (
		f       sealFlags
		in, out string
	)
	cmd := &cobra.Command{
		Use:   "seal --in FILE --out BLOB",
		Short: "Seal a secret to PCR values with the TPM",
		Long: `Seal a secret of at most 128 bytes so that the TPM releases it only while
the selected PCRs hold the current values, or the values in --expect.

With --policy-key the secret unseals under any PCR policy approved with
that key (vouch seal authorize), so updates do not strand it, and
approvals can be revoked with vouch seal revoke.

The secret is read from --in (a file, or - for standard input), never
from the command line. The blob format is described in docs/sealing.md.`,
		Args: sealArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return withExitCode(exitUsage, errors.New("--in FILE (the secret, or - for standard input) and --out BLOB are both required"))
			}
			secret, err := readLimited(in, cmd.InOrStdin(), seal.MaxSecretSize)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("reading the secret: %w (a TPM seals at most %d bytes: seal a key and encrypt larger data with it)", err, seal.MaxSecretSize))
			}
			if len(secret) == 0 {
				return withExitCode(exitUnreadable, fmt.Errorf("the secret in %s is empty", displayPath(in)))
			}
			data, b, err := sealSecret(&f, secret, cmd.ErrOrStderr())
			clear(secret)
			if err != nil {
				return err
			}
			if err := writePrivateFile(out, data); err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("writing the sealed blob: %w", err))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "sealed to %s pcrs %s (%s policy) in %s\n", b.PCRs.Bank, b.PCRs.Selection(), b.Kind, out)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&in, "in", "", "file holding the secret, or - for standard input")
	cmd.Flags().StringVar(&out, "out", "", "file to write the sealed blob to (mode 0600)")
	cmd.AddCommand(newSealKeygenCmd(), newSealAuthorizeCmd(), newSealRevokeCmd(), newSealCounterCmd(), newSealInspectCmd())
	return cmd
}

// sealArgs rejects arguments of vouch seal. Cobra would report a file
// name as an unknown subcommand, because seal has subcommands.
func sealArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	var names []string
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	return withExitCode(exitUsage, fmt.Errorf("seal takes no argument, but got %q: it reads the secret from --in FILE (or --in - for standard input), "+
		"so that the secret stays off the command line, where other users and the shell history can see it; its subcommands are %s",
		args[0], strings.Join(names, ", ")))
}

func newUnsealCmd() *cobra.Command {
	var (
		tpmSpec   string
		approvals []string
		out       string
	)
	cmd := &cobra.Command{
		Use:   "unseal BLOB",
		Short: "Unseal a secret that vouch seal sealed",
		Long: `Unseal a secret. The TPM releases it only while its policy holds; when it
does not, the error names the PCRs that changed since sealing and the
command exits with status 1. A blob that this TPM cannot load (sealed by
another TPM, before this TPM was cleared, or altered) exits with status 3.

An authorized blob (sealed with --policy-key) needs at least one approval
(--approval, a file or a directory of *.approval files).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := loadBlob(args[0])
			if err != nil {
				return err
			}
			list, err := loadApprovals(approvals)
			if err != nil {
				return err
			}
			t, err := openTPM(tpmSpec)
			if err != nil {
				return err
			}
			defer t.Close()
			secret, err := seal.Unseal(t, b, list)
			if err != nil {
				return unsealError(err)
			}
			defer clear(secret)
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(secret)
				return err
			}
			return writePrivateFile(out, secret)
		},
	}
	cmd.Flags().StringVar(&tpmSpec, "tpm", envOr("VOUCH_TPM", tpm.TransportDevice), tpmFlagHelp)
	cmd.Flags().StringArrayVar(&approvals, "approval", nil, "approval file, or directory of *.approval files (repeatable)")
	cmd.Flags().StringVar(&out, "out", "-", "file to write the secret to (mode 0600), or - for standard output")
	return cmd
}

// unsealError maps a policy refusal to exitMismatch, a blob the TPM
// cannot load to exitUnreadable, and anything else to exitUnavailable.
func unsealError(err error) error {
	var ve *seal.VerificationError
	switch {
	case errors.As(err, &ve):
		return withExitCode(exitMismatch, err)
	case errors.Is(err, seal.ErrBlobRejected):
		return withExitCode(exitUnreadable, err)
	}
	return withExitCode(exitUnavailable, err)
}

func loadBlob(path string) (*seal.Blob, error) {
	data, err := readLimited(path, nil, seal.MaxFileSize)
	if err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("reading sealed blob: %w", err))
	}
	b, err := seal.ParseBlob(data)
	if err != nil {
		return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", path, err))
	}
	return b, nil
}

// loadApprovals reads approval files; a directory contributes its
// *.approval files in name order.
func loadApprovals(paths []string) ([]*seal.Approval, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("reading approvals: %w", err))
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(p, "*.approval"))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	var out []*seal.Approval
	for _, p := range files {
		data, err := readLimited(p, nil, seal.MaxFileSize)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("reading approval: %w", err))
		}
		a, err := seal.ParseApproval(data)
		if err != nil {
			return nil, withExitCode(exitUnreadable, fmt.Errorf("%s: %w", p, err))
		}
		out = append(out, a)
	}
	return out, nil
}

func newSealKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out KEY",
		Short: "Create a policy key for signed PCR policies",
		Long: `Create an ECDSA P-256 policy key: KEY (private, mode 0600) signs
approvals with vouch seal authorize; KEY.pub is given to vouch seal
--policy-key and vouch totp enroll --policy-key. Keep KEY off the
machines whose secrets it approves.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return withExitCode(exitUsage, errors.New("--out is required"))
			}
			if _, err := os.Stat(out); err == nil {
				return withExitCode(exitUsage, fmt.Errorf("%s exists: remove it or choose another --out", out))
			}
			priv, pub, err := seal.GeneratePolicyKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := writePrivateFile(out, priv); err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("writing policy key: %w", err))
			}
			if err := os.WriteFile(out+".pub", pub, 0o644); err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("writing policy public key: %w", err))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote policy key %s and public key %s.pub\n", out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file for the private key; the public key goes to FILE.pub")
	return cmd
}

func newSealAuthorizeCmd() *cobra.Command {
	var (
		keyPath, out, tpmSpec string
		pcrs, bank, expect    string
		counter               string
		generation            int64
	)
	cmd := &cobra.Command{
		Use:   "authorize --key KEY --out APPROVAL",
		Short: "Sign a PCR policy that authorized blobs unseal under",
		Long: `Sign an approval: PCR values under which every blob sealed with
--policy-key KEY.pub unseals. Take the values from --expect (for example
predicted for the next boot) or, without it, from the TPM.

With a revocation counter (the default), the approval holds while the
counter is at most --generation; vouch seal revoke raises the counter and
so revokes approvals of older generations. Without --generation the value
is read from the TPM's counter.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyPath == "" || out == "" {
				return withExitCode(exitUsage, errors.New("--key and --out are required"))
			}
			data, err := readLimited(keyPath, nil, 64<<10)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("reading policy key: %w", err))
			}
			key, err := seal.ParsePolicyPrivateKey(data)
			if err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", keyPath, err))
			}
			idx, err := parseCounter(counter)
			if err != nil {
				return err
			}

			var t *tpm.TPM
			needTPM := expect == "" || (idx != 0 && generation < 0)
			if needTPM {
				if t, err = openTPM(tpmSpec); err != nil {
					return err
				}
				defer t.Close()
			}
			values, err := pcrValues(t, pcrs, bank, expect)
			if err != nil {
				return err
			}
			gen := uint64(0)
			switch {
			case idx == 0 && generation > 0:
				return withExitCode(exitUsage, errors.New("--generation needs a revocation counter"))
			case idx != 0 && generation >= 0:
				gen = uint64(generation)
			case idx != 0:
				if gen, err = t.ReadCounter(idx); err != nil {
					return withExitCode(exitUnavailable, err)
				}
			}

			a, err := seal.Approve(rand.Reader, key, values, idx, gen)
			if err != nil {
				return err
			}
			encoded, err := a.Marshal()
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, encoded, 0o644); err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("writing approval: %w", err))
			}
			msg := fmt.Sprintf("approved %s pcrs %s", values.Bank, values.Selection())
			if idx != 0 {
				msg += fmt.Sprintf(" at generation %d of counter 0x%08x", gen, uint32(idx))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s in %s\n", msg, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "policy private key (PEM, from vouch seal keygen)")
	cmd.Flags().StringVar(&out, "out", "", "file to write the approval to")
	cmd.Flags().StringVar(&tpmSpec, "tpm", envOr("VOUCH_TPM", tpm.TransportDevice), "TPM to read PCR values and the counter from when --expect or --generation is missing")
	cmd.Flags().StringVar(&pcrs, "pcrs", "0,2,4,7", "PCRs the approval covers")
	cmd.Flags().StringVar(&bank, "bank", "sha256", "PCR bank: sha1, sha256, sha384 or sha512")
	cmd.Flags().StringVar(&expect, "expect", "", `approve the PCR values in this JSON file ({"banks": {"sha256": {"0": "hex"}}})`)
	cmd.Flags().StringVar(&counter, "counter", "", fmt.Sprintf("NV index of the revocation counter, or none (default 0x%08x)", uint32(seal.DefaultCounterIndex)))
	cmd.Flags().Int64Var(&generation, "generation", -1, "counter value up to which the approval holds (default: the counter's current value)")
	return cmd
}

func newSealRevokeCmd() *cobra.Command {
	var tpmSpec, counter string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke approvals by raising the revocation counter",
		Long: `Raise the revocation counter by one. Every approval whose generation is
below the new value stops unsealing, on this TPM, for good: a TPM counter
never goes down. Sign the approvals you keep again with the new
generation, before or after revoking. Needs an empty owner authorization.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, idx, err := openCounter(tpmSpec, counter, "has nothing to revoke")
			if err != nil {
				return err
			}
			defer t.Close()
			value, err := t.IncrementCounter(idx)
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revocation counter 0x%08x is now %d: approvals of generation below %d no longer unseal; sign new ones with --generation %d\n", uint32(idx), value, value, value)
			return nil
		},
	}
	cmd.Flags().StringVar(&tpmSpec, "tpm", envOr("VOUCH_TPM", tpm.TransportDevice), tpmFlagHelp)
	cmd.Flags().StringVar(&counter, "counter", "", fmt.Sprintf("NV index of the revocation counter (default 0x%08x)", uint32(seal.DefaultCounterIndex)))
	return cmd
}

// openCounter parses the --counter flag, which must name a counter, and
// opens the TPM. noneMessage explains why "--counter none" does not fit.
func openCounter(tpmSpec, counter, noneMessage string) (*tpm.TPM, tpm2.TPMHandle, error) {
	idx, err := parseCounter(counter)
	if err != nil {
		return nil, 0, err
	}
	if idx == 0 {
		return nil, 0, withExitCode(exitUsage, errors.New("--counter none "+noneMessage))
	}
	t, err := openTPM(tpmSpec)
	if err != nil {
		return nil, 0, err
	}
	return t, idx, nil
}

func newSealCounterCmd() *cobra.Command {
	var tpmSpec, counter string
	cmd := &cobra.Command{
		Use:   "counter",
		Short: "Print the revocation counter, the lowest generation that still unseals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, idx, err := openCounter(tpmSpec, counter, "has no value")
			if err != nil {
				return err
			}
			defer t.Close()
			value, err := t.ReadCounter(idx)
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), value)
			return nil
		},
	}
	cmd.Flags().StringVar(&tpmSpec, "tpm", envOr("VOUCH_TPM", tpm.TransportDevice), tpmFlagHelp)
	cmd.Flags().StringVar(&counter, "counter", "", fmt.Sprintf("NV index of the revocation counter (default 0x%08x)", uint32(seal.DefaultCounterIndex)))
	return cmd
}

func newSealInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Describe a sealed blob or an approval without a TPM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readLimited(args[0], nil, seal.MaxFileSize)
			if err != nil {
				return withExitCode(exitUnreadable, err)
			}
			w := cmd.OutOrStdout()
			if b, err := seal.ParseBlob(data); err == nil {
				fmt.Fprintf(w, "sealed blob, format version %d\npolicy: %s\n", seal.FormatVersion, b.Kind)
				if b.Kind == seal.PolicyAuthorized {
					name, _ := tpm2.ObjectName(b.PolicyKey)
					fmt.Fprintf(w, "policy key name: %x\n", name.Buffer)
					if b.Counter != 0 {
						fmt.Fprintf(w, "revocation counter: 0x%08x\n", uint32(b.Counter))
					} else {
						fmt.Fprintln(w, "revocation counter: none")
					}
					fmt.Fprintln(w, "pcr values at seal time:")
				} else {
					fmt.Fprintln(w, "sealed to pcr values:")
				}
				printSealPCRs(w, b.PCRs)
				return nil
			}
			a, err := seal.ParseApproval(data)
			if err != nil {
				blobErr := err
				if _, berr := seal.ParseBlob(data); berr != nil {
					blobErr = berr
				}
				return withExitCode(exitUnreadable, fmt.Errorf("%s is neither a sealed blob nor an approval: %w", args[0], blobErr))
			}
			fmt.Fprintf(w, "approval, format version %d\npolicy key name: %x\n", seal.FormatVersion, a.KeyName.Buffer)
			if a.Counter != 0 {
				fmt.Fprintf(w, "revocation counter: 0x%08x, valid while at most %d\n", uint32(a.Counter), a.Generation)
			} else {
				fmt.Fprintln(w, "revocation counter: none")
			}
			fmt.Fprintln(w, "approved pcr values:")
			printSealPCRs(w, a.PCRs)
			return nil
		},
	}
}

func printSealPCRs(w io.Writer, p seal.PCRs) {
	for _, i := range p.Selection().Indices() {
		fmt.Fprintf(w, "  %s pcr %2d: %x\n", p.Bank, i, p.Values[i])
	}
}
