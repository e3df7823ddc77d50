package qemu

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Debian packages of the boot chain. The kernel's package name carries its
// ABI version and is resolved through the linux-image-amd64 metapackage.
const (
	kernelMeta = "linux-image-amd64"
	shimPkg    = "shim-signed"
	grubPkg    = "grub-efi-amd64-signed"
)

var (
	kernelPkgRE   = regexp.MustCompile(`^linux-image-6\.1\.[0-9]+-[0-9]+-amd64$`)
	versionPartRE = regexp.MustCompile(`[0-9]+|[^0-9]+`)
)

// Modules the guest loads from its initramfs: the Debian kernel builds
// efivarfs and every network driver as modules. e1000 is used because it
// needs no other module and OVMF has no driver for it, so adding the NIC
// leaves the firmware's measurements unchanged.
var guestModules = []string{
	"kernel/fs/efivarfs/efivarfs.ko",
	"kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
}

// BootChain holds the boot chain's files, extracted from Debian packages.
type BootChain struct {
	// Debs are the paths of the downloaded packages, by package name.
	Debs map[string]string
	// KernelRelease is the kernel's release string, e.g. 6.1.0-57-amd64.
	KernelRelease string
	// Kernel is the EFI-stub kernel image (vmlinuz).
	Kernel string
	// KernelConfig is the kernel's build configuration.
	KernelConfig string
	// Shim and Grub are the Microsoft-signed shim and the Debian-signed
	// GRUB EFI binaries.
	Shim string
	Grub string
	// Modules are kernel modules for the initramfs, by base name
	// (efivarfs.ko, e1000.ko), in the order the guest must load them.
	Modules []string
}

// CacheDir returns the directory named by VOUCH_CACHE, or
// $HOME/.cache/vouch when it is unset.
func CacheDir() (string, error) {
	if d := os.Getenv("VOUCH_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w (set VOUCH_CACHE)", err)
	}
	return filepath.Join(home, ".cache", "vouch"), nil
}

// Fetch makes sure the boot chain's packages are in cacheDir/debs,
// downloading with apt-get what is missing or stale, and extracts the files
// the harness needs into cacheDir/qemu. Packages are resolved to the
// candidate versions of the machine's apt lists. When apt has no candidate
// (no apt-get update yet, or no network), the newest cached .deb is used.
func Fetch(ctx context.Context, cacheDir string, log *slog.Logger) (*BootChain, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	debDir := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	kernelPkg, err := resolveKernel(ctx)
	if err != nil {
		log.Info("cannot resolve the kernel package through apt, using the cache", "err", err)
	}
	bc := &BootChain{Debs: map[string]string{}}
	for _, pkg := range []string{kernelPkg, shimPkg, grubPkg} {
		var deb string
		var err error
		if pkg == "" { // kernel not resolvable: take the newest cached one
			deb, err = newestCached(debDir, "linux-image-6.1.*-amd64_*.deb")
		} else {
			deb, err = ensureDeb(ctx, debDir, pkg, log)
		}
		if err != nil {
			return nil, err
		}
		bc.Debs[debPackage(deb)] = deb
	}
	for name, deb := range bc.Debs {
		dir, err := extractDeb(ctx, cacheDir, deb)
		if err != nil {
			return nil, err
		}
		switch {
		case name == shimPkg:
			bc.Shim = filepath.Join(dir, "usr/lib/shim/shimx64.efi.signed")
		case name == grubPkg:
			bc.Grub = filepath.Join(dir, "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
		default:
			bc.KernelRelease = strings.TrimPrefix(name, "linux-image-")
			bc.Kernel = filepath.Join(dir, "boot/vmlinuz-"+bc.KernelRelease)
			bc.KernelConfig = filepath.Join(dir, "boot/config-"+bc.KernelRelease)
			for _, m := range guestModules {
				bc.Modules = append(bc.Modules, filepath.Join(dir, "lib/modules", bc.KernelRelease, m))
			}
		}
	}
	for _, f := range append([]string{bc.Shim, bc.Grub, bc.Kernel, bc.KernelConfig}, bc.Modules...) {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("boot chain file missing after extraction: %w (delete %s to extract again)", err, filepath.Join(cacheDir, "qemu"))
		}
	}
	return bc, nil
}

// resolveKernel returns the kernel package linux-image-amd64 depends on.
func resolveKernel(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", kernelMeta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", kernelMeta, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && kernelPkgRE.MatchString(f[1]) {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s names no linux-image-6.1.*-amd64 package", kernelMeta)
}

// ensureDeb returns the cached .deb of pkg's candidate version, downloading
// it when it is absent or does not match apt's size and SHA-256.
func ensureDeb(ctx context.Context, debDir, pkg string, log *slog.Logger) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-get", "download", "--print-uris", pkg).Output()
	if err != nil {
		if cached, cerr := newestCached(debDir, pkg+"_*.deb"); cerr == nil {
			log.Info("apt cannot locate the package, using the cache", "package", pkg, "deb", cached)
			return cached, nil
		}
		return "", fmt.Errorf("apt-get download --print-uris %s: %w (run apt-get update, or put the .deb in %s)", pkg, err, debDir)
	}
	// 'URI' filename size SHA256:hex
	f := strings.Fields(strings.TrimSpace(string(out)))
	if len(f) < 4 || !strings.HasPrefix(f[3], "SHA256:") {
		return "", fmt.Errorf("apt-get download --print-uris %s: unexpected output %q", pkg, out)
	}
	name := filepath.Base(f[1])
	size, _ := strconv.ParseInt(f[2], 10, 64)
	want := strings.TrimPrefix(f[3], "SHA256:")
	deb := filepath.Join(debDir, name)
	if ok, _ := fileMatches(deb, size, want); ok {
		return deb, nil
	}
	log.Info("downloading", "package", pkg, "file", name)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	cmd.Dir = debDir
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w: %s", pkg, err, lastLine(msg))
	}
	ok, err := fileMatches(deb, size, want)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("downloaded %s does not match apt's size and SHA-256: delete it and retry", deb)
	}
	return deb, nil
}

func fileMatches(path string, size int64, sha string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return n == size && hex.EncodeToString(h.Sum(nil)) == strings.ToLower(sha), nil
}

func newestCached(debDir, pattern string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(debDir, pattern))
	if len(m) == 0 {
		return "", fmt.Errorf("no %s in %s and apt cannot download it: run apt-get update", pattern, debDir)
	}
	sort.Slice(m, func(i, j int) bool { return versionLess(filepath.Base(m[i]), filepath.Base(m[j])) })
	return m[len(m)-1], nil
}

// versionLess orders file names by their runs of digits numerically, which
// is enough to order the kernel ABI numbers of one Debian release.
func versionLess(a, b string) bool {
	pa, pb := versionPartRE.FindAllString(a, -1), versionPartRE.FindAllString(b, -1)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		if ea == nil && eb == nil {
			return na < nb
		}
		return pa[i] < pb[i]
	}
	return len(pa) < len(pb)
}

// debPackage returns the package name of a .deb file name.
func debPackage(deb string) string {
	name, _, _ := strings.Cut(filepath.Base(deb), "_")
	return name
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// extractDeb unpacks the files the harness needs from deb into
// cacheDir/qemu/<deb name>, once.
func extractDeb(ctx context.Context, cacheDir, deb string) (string, error) {
	dir := filepath.Join(cacheDir, "qemu", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("run dpkg-deb: %w (install dpkg)", err)
	}
	werr := unpackWanted(tar.NewReader(stdout), tmp)
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, stderr.String())
	}
	if werr != nil {
		return "", fmt.Errorf("unpack %s: %w", deb, werr)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// wanted reports whether the harness needs a file of a package.
func wanted(name string) bool {
	switch {
	case strings.HasPrefix(name, "boot/vmlinuz-"), strings.HasPrefix(name, "boot/config-"):
		return true
	case name == "usr/lib/shim/shimx64.efi.signed",
		name == "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed":
		return true
	}
	for _, m := range guestModules {
		if strings.HasPrefix(name, "lib/modules/") && strings.HasSuffix(name, "/"+m) {
			return true
		}
	}
	return false
}

func unpackWanted(tr *tar.Reader, dst string) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if hdr.Typeflag != tar.TypeReg || !wanted(name) || strings.HasPrefix(name, "..") {
			continue
		}
		out := filepath.Join(dst, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
}
