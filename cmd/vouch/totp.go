package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/qr"
	"github.com/vouch-attest/vouch/seal"
	"github.com/vouch-attest/vouch/totp"
	"github.com/vouch-attest/vouch/tpm"
)

// Default locations of vouch totp's files.
const (
	defaultTOTPBlob      = "/var/lib/vouch/totp.seal"
	defaultTOTPApprovals = "/var/lib/vouch/approvals"
)

// totpEnv holds what vouch totp takes from the outside world, so tests can
// fix the clock and the randomness.
type totpEnv struct {
	now  func() time.Time
	rand io.Reader
}

func newTOTPCmd() *cobra.Command {
	return newTOTPCmdWith(totpEnv{now: time.Now, rand: rand.Reader})
}

func newTOTPCmdWith(env totpEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "totp",
		Short: "Check the boot with your phone: a TOTP secret sealed to PCR state",
		Long: `vouch totp enroll seals a random TOTP secret to the current PCR values
and shows it once as a QR code for an authenticator app. vouch totp show
unseals it at boot and prints the current code: the code matches the app
only when the TPM released the secret, that is, only on a boot with the
enrolled PCR values. See docs/totp.md for what this does and does not
prove.`,
	}
	cmd.AddCommand(newTOTPEnrollCmd(env), newTOTPShowCmd(env))
	return cmd
}

func newTOTPEnrollCmd(env totpEnv) *cobra.Command {
	var (
		f               sealFlags
		blobPath, png   string
		issuer, account string
		force, showNoQR bool
		lightTerminal   bool
	)
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Create a TOTP secret, seal it and show it as a QR code",
		Long: `Create a random 160-bit TOTP secret (SHA-1, 6 digits, 30 seconds, the
parameters every authenticator app accepts), seal it to the selected PCRs
and store the sealed blob (mode 0600). The otpauth URI is shown once, as
a QR code on the terminal and as text, and with --png written as an
image. Anyone who sees it can compute the codes: enroll on a trusted
console and clear the screen afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(blobPath); err == nil && !force {
				return withExitCode(exitUsage, fmt.Errorf("%s exists: enrolling again replaces the secret in your authenticator app; pass --force to do so", blobPath))
			}
			if account == "" {
				host, err := os.Hostname()
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("no --account given and the host name is unknown: %w", err))
				}
				account = host
			}
			secret, err := totp.GenerateSecret(env.rand, totp.DefaultSecretSize)
			if err != nil {
				return err
			}
			defer secret.Wipe()
			key := totp.NewKey(secret, issuer, account)
			uri, err := key.URI()
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			sealed, err := totp.MarshalSealed(key)
			if err != nil {
				return err
			}
			data, b, err := sealSecret(&f, sealed, cmd.ErrOrStderr())
			clear(sealed)
			if err != nil {
				return err
			}
			if err := writePrivateFile(blobPath, data); err != nil {
				return withExitCode(exitUnreadable, fmt.Errorf("writing the sealed blob: %w", err))
			}

			w := cmd.OutOrStdout()
			if !showNoQR {
				art, err := qr.Terminal(uri, lightTerminal)
				if err != nil {
					return err
				}
				fmt.Fprint(w, art)
			}
			fmt.Fprintf(w, "otpauth URI: %s\nsecret for manual entry: %s\n", uri, totp.EncodeSecret(secret))
			if png != "" {
				img, err := qr.PNG(uri, 512)
				if err != nil {
					return err
				}
				if err := writePrivateFile(png, img); err != nil {
					return withExitCode(exitUnreadable, fmt.Errorf("writing the QR code: %w", err))
				}
				fmt.Fprintf(w, "QR code written to %s (mode 0600): delete it once scanned\n", png)
			}
			now := env.now()
			code, err := key.Code(now)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "sealed to %s pcrs %s (%s policy) in %s\ncode now: %s (check that your app shows the same)\n",
				b.PCRs.Bank, b.PCRs.Selection(), b.Kind, blobPath, groupDigits(code))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&blobPath, "blob", defaultTOTPBlob, "file to store the sealed secret in (mode 0600)")
	cmd.Flags().StringVar(&png, "png", "", "also write the QR code as a PNG image to this file (mode 0600)")
	cmd.Flags().StringVar(&issuer, "issuer", "Vouch", "issuer name the authenticator app shows")
	cmd.Flags().StringVar(&account, "account", "", "account name the authenticator app shows (default: the host name)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing sealed secret")
	cmd.Flags().BoolVar(&showNoQR, "no-qr", false, "do not draw the QR code on the terminal")
	cmd.Flags().BoolVar(&lightTerminal, "light-terminal", false, "draw the QR code for dark text on a light background (the default suits the Linux console)")
	return cmd
}

func newTOTPShowCmd(env totpEnv) *cobra.Command {
	var (
		tpmSpec, blobPath string
		approvals         []string
		watch             bool
	)
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Unseal the TOTP secret and print the current code",
		Long: `Unseal the TOTP secret and print the current code in large digits, with
the time of this machine's clock it is based on. If the TPM refuses, the
boot differs from the enrolled one: the error names the PCRs that changed
and the command exits with status 1. A blob that this TPM cannot load
(sealed by another TPM, or before this TPM was cleared) exits with
status 3.

The machine's clock is not trusted: a code proves the secret was unsealed,
not when. See docs/totp.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := loadBlob(blobPath)
			if errors.Is(err, fs.ErrNotExist) {
				return withExitCode(exitUnreadable, fmt.Errorf("no sealed TOTP secret at %s: run vouch totp enroll first, or give --blob with the file that enroll wrote", blobPath))
			}
			if err != nil {
				return err
			}
			if len(approvals) == 0 && b.Kind == seal.PolicyAuthorized {
				if _, err := os.Stat(defaultTOTPApprovals); err == nil {
					approvals = []string{defaultTOTPApprovals}
				}
			}
			list, err := loadApprovals(approvals)
			if err != nil {
				return err
			}
			key, err := unsealTOTP(tpmSpec, b, list)
			if err != nil {
				return err
			}
			defer key.Secret.Wipe()

			w := cmd.OutOrStdout()
			if !watch {
				return printCode(w, key, env.now())
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return watchCodes(ctx, w, key, env.now)
		},
	}
	cmd.Flags().StringVar(&tpmSpec, "tpm", envOr("VOUCH_TPM", tpm.TransportDevice), tpmFlagHelp)
	cmd.Flags().StringVar(&blobPath, "blob", defaultTOTPBlob, "sealed secret from vouch totp enroll")
	cmd.Flags().StringArrayVar(&approvals, "approval", nil, "approval file or directory, for a secret enrolled with --policy-key (default "+defaultTOTPApprovals+" when it exists)")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh the code every second until interrupted")
	return cmd
}

func unsealTOTP(tpmSpec string, b *seal.Blob, approvals []*seal.Approval) (totp.Key, error) {
	t, err := openTPM(tpmSpec)
	if err != nil {
		return totp.Key{}, err
	}
	defer t.Close()
	data, err := seal.Unseal(t, b, approvals)
	if err != nil {
		var ve *seal.VerificationError
		switch {
		case errors.As(err, &ve):
			return totp.Key{}, withExitCode(exitMismatch, fmt.Errorf("%w\nno code: this boot differs from the enrolled one, so any code shown here would not match your app", err))
		case errors.Is(err, seal.ErrBlobRejected):
			return totp.Key{}, withExitCode(exitUnreadable, fmt.Errorf("%w\nno code: check --tpm and --blob, or enroll this machine again with vouch totp enroll --force", err))
		}
		return totp.Key{}, withExitCode(exitUnavailable, err)
	}
	defer clear(data)
	key, err := totp.ParseSealed(data)
	if err != nil {
		return totp.Key{}, withExitCode(exitUnreadable, fmt.Errorf("the unsealed secret is not a vouch totp key (was the blob made by vouch seal rather than vouch totp enroll?): %w", err))
	}
	return key, nil
}

// printCode prints the code for now in large digits and the time step it
// belongs to.
func printCode(w io.Writer, key totp.Key, now time.Time) error {
	code, err := key.Code(now)
	if err != nil {
		return err
	}
	start := key.StepStart(now).UTC()
	end := start.Add(key.Period)
	fmt.Fprintf(w, "\n%s\n  %s  from %s to %s by this machine's clock, %d s left\n",
		indent(bigDigits(groupDigits(code)), "  "), groupDigits(code),
		start.Format("2006-01-02 15:04:05"), end.Format("15:04:05 MST"), int(end.Sub(now).Seconds()+0.999))
	return nil
}

func indent(text, prefix string) string {
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// watchCodes redraws the code every second until ctx ends.
func watchCodes(ctx context.Context, w io.Writer, key totp.Key, now func() time.Time) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		fmt.Fprint(w, "\x1b[H\x1b[2J") // cursor home, clear screen
		if err := printCode(w, key, now()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
