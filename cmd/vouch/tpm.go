package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/tpm"
)

// tpmFlags are the flags every `vouch tpm` subcommand shares.
type tpmFlags struct {
	transport string
	output    string
}

func newTPMCmd() *cobra.Command {
	f := &tpmFlags{}
	cmd := &cobra.Command{
		Use:   "tpm",
		Short: "Read and use the local TPM (info, quote, PCRs)",
		Long: `Read and use the local TPM.

--tpm selects the TPM: "device" (/dev/tpmrm0, else /dev/tpm0), "device:/path",
"swtpm:tcp:HOST:PORT", "swtpm:unix:/path" or "simulator". The simulator runs
inside this process and forgets its state when the command ends.`,
	}
	cmd.PersistentFlags().StringVar(&f.transport, "tpm", envOr("VOUCH_TPM", tpm.TransportDevice), "TPM to use: device, device:/path, swtpm:tcp:HOST:PORT, swtpm:unix:/path or simulator (env VOUCH_TPM)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(newTPMInfoCmd(f), newTPMEKCmd(f), newTPMQuoteCmd(f), newTPMPCRsCmd(f))
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (f *tpmFlags) open() (*tpm.TPM, error) {
	if f.output != "text" && f.output != "json" {
		return nil, withExitCode(exitUsage, fmt.Errorf("invalid --output %q: use text or json", f.output))
	}
	t, err := tpm.Open(tpm.Config{Transport: f.transport})
	if err != nil {
		if strings.HasPrefix(err.Error(), "invalid TPM transport") {
			return nil, withExitCode(exitUsage, err)
		}
		return nil, withExitCode(exitUnavailable, err)
	}
	return t, nil
}

// ekCertInfo summarizes an EK certificate for `vouch tpm info`.
type ekCertInfo struct {
	Index   string `json:"nv_index"`
	Key     string `json:"key"`
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	Serial  string `json:"serial"`
	Error   string `json:"error,omitempty"`
}

func newTPMInfoCmd(f *tpmFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Print the TPM's manufacturer, firmware, PCR banks and EK certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := f.open()
			if err != nil {
				return err
			}
			defer t.Close()
			info, err := t.Info()
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			certs, err := t.EKCertificates()
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			var ekInfo []ekCertInfo
			for _, ix := range tpm.EKCertificateIndexes {
				der, ok := certs[ix.Index]
				if !ok {
					continue
				}
				ci := ekCertInfo{Index: fmt.Sprintf("0x%08x", ix.Index), Key: ix.Name}
				if c, err := attest.ParseEKCertificate(der); err != nil {
					ci.Error = err.Error()
				} else {
					ci.Subject, ci.Issuer, ci.Serial = c.Subject.String(), c.Issuer.String(), c.SerialNumber.Text(16)
				}
				ekInfo = append(ekInfo, ci)
			}
			banks := map[string][]int{}
			for _, b := range info.Banks {
				banks[b.Hash.String()] = b.PCRs
			}
			out := cmd.OutOrStdout()
			if f.output == "json" {
				return writeJSON(out, struct {
					Transport string `json:"transport"`
					*tpm.Info
					Banks          map[string][]int `json:"banks"`
					EKCertificates []ekCertInfo     `json:"ek_certificates"`
				}{t.String(), info, banks, ekInfo})
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "transport:\t%s\n", t.String())
			fmt.Fprintf(tw, "manufacturer:\t%s (0x%08x)\n", termText(info.Manufacturer), info.ManufacturerID)
			fmt.Fprintf(tw, "vendor string:\t%s\n", termText(info.VendorString))
			fmt.Fprintf(tw, "firmware version:\t%s\n", termText(info.FirmwareVersion))
			fmt.Fprintf(tw, "spec revision:\t%d.%02d (level %d)\n", info.SpecRevision/100, info.SpecRevision%100, info.SpecLevel)
			for _, b := range info.Banks {
				fmt.Fprintf(tw, "PCR bank %s:\tPCRs %s\n", b.Hash, attest.FormatPCRList(b.PCRs))
			}
			if len(ekInfo) == 0 {
				fmt.Fprintf(tw, "EK certificates:\tnone in NV\n")
			}
			for _, c := range ekInfo {
				fmt.Fprintf(tw, "EK certificate %s:\t%s\n", c.Index, c.Key)
				if c.Error != "" {
					fmt.Fprintf(tw, "  error:\t%s\n", termText(c.Error))
					continue
				}
				fmt.Fprintf(tw, "  subject:\t%s\n", termText(c.Subject))
				fmt.Fprintf(tw, "  issuer:\t%s\n", termText(c.Issuer))
				fmt.Fprintf(tw, "  serial:\t%s\n", termText(c.Serial))
			}
			return tw.Flush()
		},
	}
}

// parseSelectionFlags builds a selection of pcrList in the named banks, or
// in every active bank when banks is empty.
func parseSelectionFlags(t *tpm.TPM, pcrList, banks string) (attest.Selection, error) {
	pcrs, err := attest.ParsePCRList(pcrList)
	if err != nil {
		return nil, withExitCode(exitUsage, fmt.Errorf("--pcrs: %w", err))
	}
	if banks == "" {
		sel, err := t.SelectAllBanks(pcrs)
		if err != nil {
			return nil, withExitCode(exitUnavailable, err)
		}
		return sel, nil
	}
	var sel attest.Selection
	for _, name := range strings.Split(banks, ",") {
		alg, err := attest.ParseAlgorithm(strings.TrimSpace(name))
		if err != nil {
			return nil, withExitCode(exitUsage, fmt.Errorf("--banks: %w", err))
		}
		sel = append(sel, attest.BankSelection{Hash: alg, PCRs: pcrs})
	}
	sel, err = sel.Normalize()
	if err != nil {
		return nil, withExitCode(exitUsage, fmt.Errorf("--banks: %w", err))
	}
	return sel, nil
}

func newTPMQuoteCmd(f *tpmFlags) *cobra.Command {
	var (
		pcrList, banks, nonceHex, akPath, akType, ekType string
	)
	cmd := &cobra.Command{
		Use:   "quote",
		Short: "Quote PCRs with an attestation key and print the evidence",
		Long: `Quote PCRs with an attestation key (AK) and print the evidence: the quote,
its signature, the PCR values, the nonce and the AK public area. With --ak, the
AK is loaded from that file, or created and saved there (mode 0600) when the
file does not exist; without it, a new AK is created for this quote.

The JSON output is what 'vouch attest verify-quote' reads.`,
		Example: `  vouch tpm quote --pcrs 0-7 --nonce 0011223344556677 -o json > quote.json
  vouch tpm quote --tpm simulator --pcrs 0-7,14 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var nonce []byte
			if nonceHex == "" {
				nonce = make([]byte, 32)
				if _, err := rand.Read(nonce); err != nil {
					return err
				}
			} else {
				var err error
				if nonce, err = hex.DecodeString(nonceHex); err != nil || len(nonce) > 64 {
					return withExitCode(exitUsage, fmt.Errorf("--nonce %q: use up to 64 bytes in hex", nonceHex))
				}
			}
			kt, err := tpm.ParseKeyType(akType)
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("--ak-type: %w", err))
			}
			et, err := tpm.ParseKeyType(ekType)
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("--ek-type: %w", err))
			}
			t, err := f.open()
			if err != nil {
				return err
			}
			defer t.Close()
			sel, err := parseSelectionFlags(t, pcrList, banks)
			if err != nil {
				return err
			}
			ak, err := loadOrCreateAK(t, akPath, tpm.AKOptions{Type: kt, Parent: et})
			if err != nil {
				return err
			}
			q, pcrs, err := t.QuoteWithPCRs(ak, nonce, sel)
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			ev := attest.QuoteEvidence{
				AKPublic:  ak.Public,
				Nonce:     nonce,
				Selection: attest.SelectionJSON(sel),
				Attest:    q.Attest,
				Signature: q.Signature,
				PCRs:      attest.PCRValuesJSON(pcrs),
			}
			out := cmd.OutOrStdout()
			if f.output == "json" {
				return writeJSON(out, ev)
			}
			fmt.Fprintf(out, "nonce: %x\n", nonce)
			fmt.Fprintf(out, "selection: %s\n", sel)
			fmt.Fprintf(out, "attest: %x\n", q.Attest)
			fmt.Fprintf(out, "signature: %x\n", q.Signature)
			printPCRs(out, sel, pcrs)
			return nil
		},
	}
	cmd.Flags().StringVar(&pcrList, "pcrs", "0-7", "PCRs to quote, such as 0-7,14")
	cmd.Flags().StringVar(&banks, "banks", "", "comma-separated PCR banks to quote (default: every active bank)")
	cmd.Flags().StringVar(&nonceHex, "nonce", "", "the verifier's nonce in hex, at most 64 bytes (default: 32 random bytes)")
	cmd.Flags().StringVar(&akPath, "ak", "", "AK file to load, or to create when missing")
	cmd.Flags().StringVar(&akType, "ak-type", "ecc", "type of a new AK: ecc (P-256) or rsa (2048)")
	cmd.Flags().StringVar(&ekType, "ek-type", "rsa", "type of the EK a new AK is created under: rsa or ecc")
	return cmd
}

func loadOrCreateAK(t *tpm.TPM, path string, opts tpm.AKOptions) (*tpm.AK, error) {
	if path != "" {
		ak, err := tpm.LoadAKFile(path)
		if err == nil {
			return ak, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, withExitCode(exitUnreadable, err)
		}
	}
	ak, err := t.CreateAK(opts)
	if err != nil {
		return nil, withExitCode(exitUnavailable, err)
	}
	if path != "" {
		if err := ak.Save(path); err != nil {
			return nil, withExitCode(exitUnreadable, err)
		}
	}
	return ak, nil
}

func printPCRs(w io.Writer, sel attest.Selection, pcrs attest.PCRValues) {
	for _, b := range sel {
		for _, i := range b.PCRs {
			if d, ok := attest.GetPCR(pcrs, b.Hash, i); ok {
				fmt.Fprintf(w, "%s PCR %2d: %x\n", b.Hash, i, d)
			}
		}
	}
}

func newTPMPCRsCmd(f *tpmFlags) *cobra.Command {
	var pcrList, banks string
	cmd := &cobra.Command{
		Use:   "pcrs",
		Short: "Read PCR values (unverified: no quote covers them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := f.open()
			if err != nil {
				return err
			}
			defer t.Close()
			sel, err := parseSelectionFlags(t, pcrList, banks)
			if err != nil {
				return err
			}
			pcrs, err := t.ReadPCRs(sel)
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), attest.PCRValuesJSON(pcrs))
			}
			printPCRs(cmd.OutOrStdout(), sel, pcrs)
			return nil
		},
	}
	cmd.Flags().StringVar(&pcrList, "pcrs", "0-23", "PCRs to read, such as 0-7,14")
	cmd.Flags().StringVar(&banks, "banks", "", "comma-separated PCR banks to read (default: every active bank)")
	return cmd
}

func newTPMEKCmd(f *tpmFlags) *cobra.Command {
	var keyType string
	cmd := &cobra.Command{
		Use:   "ek",
		Short: "Print the endorsement key and its certificate as PEM",
		Long: `Print the endorsement key (EK) public key and, when the TPM stores one, its
certificate, both as PEM. Check the certificate with 'vouch attest verify-ek-cert'.`,
		Example: `  vouch tpm ek --type rsa > ek.pem
  vouch attest verify-ek-cert --roots vendor-root.pem --intermediates vendor-ca.pem ek.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kt, err := tpm.ParseKeyType(keyType)
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("--type: %w", err))
			}
			t, err := f.open()
			if err != nil {
				return err
			}
			defer t.Close()
			ek, err := t.EK(kt)
			if err != nil {
				return withExitCode(exitUnavailable, err)
			}
			spki, err := x509.MarshalPKIXPublicKey(ek.Key)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.output == "json" {
				return writeJSON(out, struct {
					Type             tpm.KeyType `json:"type"`
					Public           []byte      `json:"public"`
					PublicKey        []byte      `json:"public_key_der"`
					Certificate      []byte      `json:"certificate,omitempty"`
					CertificateIndex string      `json:"certificate_nv_index,omitempty"`
				}{ek.Type, ek.Public, spki, ek.Certificate, nvIndexString(ek.CertificateIndex)})
			}
			if ek.Certificate != nil {
				if err := pem.Encode(out, &pem.Block{Type: "CERTIFICATE", Bytes: ek.Certificate}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: the TPM stores no %s EK certificate\n", kt)
			}
			return pem.Encode(out, &pem.Block{Type: "PUBLIC KEY", Bytes: spki})
		},
	}
	cmd.Flags().StringVar(&keyType, "type", "rsa", "EK type: rsa (RSA 2048) or ecc (NIST P-256)")
	return cmd
}

func nvIndexString(ix uint32) string {
	if ix == 0 {
		return ""
	}
	return fmt.Sprintf("0x%08x", ix)
}
