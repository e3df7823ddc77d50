package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/predict"
)

type predictFlags struct {
	banks       []string
	out         string
	format      string
	ovmfVars    string
	efivars     string
	grubConfigs []string
	grubVars    []string
	grubFiles   []string
	bootDir     string
	grubForm    string
	grubCmds    []string
	stubCmdline []string
	firmware    bool
}

func newPredictCmd() *cobra.Command {
	var f predictFlags
	cmd := &cobra.Command{
		Use:   "predict [flags] ARTIFACT...",
		Short: "Predict the digests a measured boot records, from packages and files",
		Long: `Predict the event digests that UEFI firmware, shim, GRUB and systemd-stub
extend into PCRs when they boot the given artifacts, in every bank.

An ARTIFACT is a Debian package (.deb), a directory tree (an unpacked
package, an ESP, /boot) or a single file: EFI applications (*.efi,
*.efi.signed), kernels (vmlinuz*) and initrds (initrd.img*, initramfs*).

With --grub-cfg, the GRUB configuration scripts are evaluated in order and
the default entry is booted, predicting the PCR 8 command events and PCR 9
file events. Kernels and initrds found among the artifacts are known to
GRUB as /NAME and /boot/NAME, and a sole kernel and initrd also as
/vmlinuz and /initrd.img; map other paths with --grub-file or --boot-dir.

The output is a JSON prediction (see docs/predict.md) that
"vouch bundle create --from-predict" reads, or a table with -o text.`,
		Example: `  vouch predict --out prediction.json shim-signed_*.deb grub-efi-amd64-signed_*.deb
  vouch predict -o text --bank sha256 shimx64.efi`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPredict(cmd, &f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.banks, "bank", []string{"sha1", "sha256", "sha384"}, "PCR banks to compute (sha1, sha256, sha384)")
	fl.StringVarP(&f.format, "output", "o", "json", "output format: json (the prediction, for vouch bundle create --from-predict) or text (a table)")
	fl.StringVar(&f.out, "out", "", "file to write the output to (default: standard output)")
	fl.StringVar(&f.ovmfVars, "ovmf-vars", "", "predict PCR 7 Secure Boot variables from an EDK2/OVMF variable store file (OVMF_VARS.fd)")
	fl.StringVar(&f.efivars, "efivars", "", "predict PCR 7 Secure Boot variables from an efivars directory (/sys/firmware/efi/efivars)")
	fl.StringArrayVar(&f.grubConfigs, "grub-cfg", nil, "GRUB script to evaluate, in order (repeatable; e.g. the embedded config, then grub.cfg)")
	fl.StringArrayVar(&f.grubVars, "grub-var", nil, "GRUB variable NAME=VALUE set before the scripts run, e.g. prefix=(hd0,gpt1)/EFI/debian (repeatable)")
	fl.StringArrayVar(&f.grubFiles, "grub-file", nil, "map a GRUB path to a local file, GRUBPATH=LOCALPATH (repeatable)")
	fl.StringVar(&f.bootDir, "boot-dir", "", "directory that GRUB paths are resolved under when not mapped with --grub-file")
	fl.StringVar(&f.grubForm, "grub-form", "upstream", "GRUB measurement form: upstream (GRUB 2.04+, Debian, Ubuntu) or rhboot (RHEL/Fedora 2.02)")
	fl.StringArrayVar(&f.grubCmds, "grub-command", nil, "predict one GRUB command string as GRUB measures it (repeatable)")
	fl.StringArrayVar(&f.stubCmdline, "stub-cmdline", nil, "predict systemd-stub's PCR 12 measurement of this kernel command line (repeatable)")
	fl.BoolVar(&f.firmware, "firmware-constants", false, "also predict the separators of PCRs 0-7 and the fixed EV_EFI_ACTION events")
	return cmd
}

func runPredict(cmd *cobra.Command, f *predictFlags, args []string) error {
	var banks []predict.Bank
	for _, s := range f.banks {
		b, err := predict.ParseBank(s)
		if err != nil {
			return withExitCode(exitUsage, fmt.Errorf("--bank: %w", err))
		}
		banks = append(banks, b)
	}
	form, err := predict.ParseGrubForm(f.grubForm)
	if err != nil {
		return withExitCode(exitUsage, fmt.Errorf("--grub-form: %w", err))
	}
	if err := checkOutputFormat(f.format, "json", "text"); err != nil {
		return err
	}
	if len(args) == 0 && f.ovmfVars == "" && f.efivars == "" && len(f.grubConfigs) == 0 && len(f.grubCmds) == 0 && len(f.stubCmdline) == 0 && !f.firmware {
		return withExitCode(exitUsage, errors.New("nothing to predict: give a package, tree or file, or one of --ovmf-vars, --efivars, --grub-cfg, --grub-command, --stub-cmdline"))
	}

	p := predict.NewPredictor(banks...)
	var vars predict.Variables
	switch {
	case f.ovmfVars != "" && f.efivars != "":
		return withExitCode(exitUsage, errors.New("--ovmf-vars and --efivars both give the Secure Boot variables: use one"))
	case f.ovmfVars != "":
		data, err := readLimited(f.ovmfVars, nil, maxFirmwareImageSize)
		if err != nil {
			return withExitCode(exitUnreadable, fmt.Errorf("read variable store: %w", err))
		}
		if vars, err = predict.ParseOVMFVariables(data); err != nil {
			return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", f.ovmfVars, err))
		}
		// The store holds the boot-services MOK variables that shim reads.
		p.MokVariables = vars
	case f.efivars != "":
		if vars, err = predict.ReadEfivarsDir(f.efivars); err != nil {
			return withExitCode(exitUnreadable, err)
		}
	}

	for _, a := range args {
		before := len(p.Prediction().References)
		if err := p.AddPath(a); err != nil {
			return withExitCode(exitUnreadable, err)
		}
		warnKernelWithoutStub(cmd.ErrOrStderr(), a, p.Prediction().References[before:])
	}
	if vars != nil {
		refs, err := predict.SecureBootReferences(vars, banks)
		if err != nil {
			return withExitCode(exitUnreadable, fmt.Errorf("secure boot variables: %w", err))
		}
		p.Add(refs...)
	}
	for _, c := range f.grubCmds {
		ref, err := predict.GrubCommandReference(c, form, banks)
		if err != nil {
			return err
		}
		p.Add(ref)
	}
	for _, c := range f.stubCmdline {
		ref, err := predict.StubCmdlineReference(c, banks)
		if err != nil {
			return err
		}
		p.Add(ref)
	}
	if f.firmware {
		refs, err := predict.FirmwareConstants(banks)
		if err != nil {
			return err
		}
		p.Add(refs...)
	}
	if len(f.grubConfigs) > 0 {
		if err := simulateGrub(p, f, form); err != nil {
			return err
		}
	}

	out := cmd.OutOrStdout()
	if f.out != "" {
		file, err := os.Create(f.out)
		if err != nil {
			return withExitCode(exitUnavailable, fmt.Errorf("write prediction: %w", err))
		}
		defer file.Close()
		out = file
	}
	if f.format == "text" {
		return writePredictionTable(out, p.Prediction(), banks)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(p.Prediction())
}

func simulateGrub(p *predict.Predictor, f *predictFlags, form predict.GrubForm) error {
	files := &predict.GrubFileMap{Dir: f.bootDir, Files: map[string]string{}, Known: map[string]predict.Digests{}}
	// Debian links /vmlinuz and /initrd.img to the newest kernel and
	// initrd, so with one of each those names resolve to it too.
	links := map[predict.Role]string{predict.RoleKernel: "vmlinuz", predict.RoleInitrd: "initrd.img"}
	count := map[predict.Role]int{}
	for _, a := range p.Artifacts() {
		if _, ok := links[a.Role]; ok {
			count[a.Role]++
		}
	}
	for _, a := range p.Artifacts() {
		link, ok := links[a.Role]
		if !ok {
			continue
		}
		base := path.Base(a.Path)
		files.Known["/"+base] = a.FileDigests
		files.Known["/boot/"+base] = a.FileDigests
		if count[a.Role] == 1 {
			files.Known["/"+link] = a.FileDigests
			files.Known["/boot/"+link] = a.FileDigests
		}
	}
	for _, m := range f.grubFiles {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" || v == "" {
			return withExitCode(exitUsage, fmt.Errorf("--grub-file %q: expected GRUBPATH=LOCALPATH", m))
		}
		files.Files[k] = v
	}
	sim := &predict.GrubSimulation{Files: files, Form: form, Banks: p.Banks(), Vars: map[string]string{}}
	for _, v := range f.grubVars {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return withExitCode(exitUsage, fmt.Errorf("--grub-var %q: expected NAME=VALUE", v))
		}
		sim.Vars[k] = val
	}
	for _, c := range f.grubConfigs {
		script, err := readLimited(c, nil, maxSmallFileSize)
		if err != nil {
			return withExitCode(exitUnreadable, fmt.Errorf("read GRUB script: %w", err))
		}
		if err := sim.Run(string(script)); err != nil {
			return withExitCode(exitUnreadable, fmt.Errorf("%s: %w", c, err))
		}
	}
	if err := sim.Boot(); err != nil {
		return withExitCode(exitUnreadable, err)
	}
	p.Add(sim.References()...)
	return nil
}

// warnKernelWithoutStub warns when a kernel named on the command line got
// only GRUB's file digest (PCR 9). Such a kernel is not a PE/COFF image, so
// the prediction has no Authenticode digest (PCR 4) for it. That is right
// for a BIOS boot and a mistake otherwise, such as a wrong or cut file.
func warnKernelWithoutStub(w io.Writer, path string, added []predict.Reference) {
	kernelFile, image := false, false
	for _, r := range added {
		switch {
		case r.PCR == 4:
			image = true
		case r.PCR == 9 && r.Kind == predict.KindGrubFile:
			kernelFile = true
		}
	}
	if kernelFile && !image {
		fmt.Fprintf(w, "warning: %s is not a PE/COFF image (no EFI stub): only its file digest for GRUB (PCR 9) is predicted, no Authenticode digest (PCR 4); a UEFI boot needs a kernel with an EFI stub\n", termText(path))
	}
}

func writePredictionTable(w io.Writer, pred *predict.Prediction, banks []predict.Bank) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "PCR\tKIND\tCOMPONENT\tEVENT"
	sort.SliceStable(banks, func(i, j int) bool { return banks[i] < banks[j] })
	for _, b := range banks {
		header += "\t" + strings.ToUpper(string(b))
	}
	fmt.Fprintln(tw, header)
	for _, r := range pred.References {
		line := fmt.Sprintf("%d\t%s\t%s\t%s", r.PCR, termText(string(r.Kind)), termText(r.Component), cutText(r.Event, 48))
		for _, b := range banks {
			line += "\t" + r.Digests[b].String()
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}
