package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Debian packages the ovmf-swtpm corpus boots used.
var corpusDebs = []struct{ name, version string }{
	{"shim-signed", "1.51~1+deb12u1+16.1-2~deb12u1"},
	{"grub-efi-amd64-signed", "1+2.06+13+deb12u2"},
	{"linux-image-6.1.0-57-amd64", "6.1.192-3"},
}

const corpusKernel = "vmlinuz-6.1.0-57-amd64"

// sharedCorpus returns the corpus folder: VOUCH_CORPUS, or shared/corpus
// beside the repository. It skips the test when the folder is absent.
func sharedCorpus(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VOUCH_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "ovmf-swtpm", "initrd.img")); err != nil {
		t.Skipf("corpus with ovmf-swtpm/initrd.img not found at %s: set VOUCH_CORPUS to the corpus folder", dir)
	}
	return dir
}

// debianPackage returns a cached Debian package, downloading it with
// apt-get download into VOUCH_CACHE (default ~/.cache/vouch) when it is
// missing. Without apt-get or network the test skips, unless CI is set.
func debianPackage(t *testing.T, name, version string) string {
	t.Helper()
	cache := os.Getenv("VOUCH_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatalf("no home directory for the package cache: set VOUCH_CACHE (%v)", err)
		}
		cache = filepath.Join(home, ".cache", "vouch")
	}
	dir := filepath.Join(cache, "debs")
	pattern := filepath.Join(dir, name+"_"+strings.ReplaceAll(version, ":", "%3a")+"_*.deb")
	if found, _ := filepath.Glob(pattern); len(found) > 0 {
		return found[0]
	}
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		unavailable("apt-get not found, cannot fetch %s=%s: put the package in %s", name, version, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("apt-get", "download", name+"="+version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		unavailable("apt-get download %s=%s failed (%v): %s", name, version, err, out)
	}
	found, _ := filepath.Glob(pattern)
	if len(found) == 0 {
		t.Fatalf("apt-get download %s=%s wrote no file matching %s", name, version, pattern)
	}
	return found[0]
}

// extractKernel copies ./boot/NAME out of a kernel package with dpkg-deb.
func extractKernel(t *testing.T, deb, name, dst string) {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not found: it extracts the kernel from its package")
	}
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	tr := tar.NewReader(pipe)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no ./boot/%s", deb, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name != "./boot/"+name {
			continue
		}
		f, err := os.Create(dst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, pipe)
		return
	}
}

// TestPredictedBundleAcceptsCorpusBoot predicts the measurements of the
// Debian packages the corpus boot used, signs them as a bundle, and checks
// the real boot against it with the machine's firmware values. Then it
// changes one byte of the kernel, predicts again, and expects the verdict
// to name the kernel's events.
func TestPredictedBundleAcceptsCorpusBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("decompressing the kernel package takes tens of seconds")
	}
	corpus := sharedCorpus(t)
	var debs []string
	for _, d := range corpusDebs {
		debs = append(debs, debianPackage(t, d.name, d.version))
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, corpusKernel)
	extractKernel(t, debs[2], corpusKernel, kernel)

	sbms := corpusDir + "shim-sbms/"
	key := filepath.Join(dir, "debian")
	learned := filepath.Join(dir, "learned.json")
	for _, args := range [][]string{
		{"bundle", "keygen", "--out", key},
		{"policy", "learn", sbms + "eventlog.bin", "--pcrs", sbms + "pcrs.json", "--machine", "vm1", "--approve-by", "alice", "-o", learned},
	} {
		if out, code := runVouch(t, nil, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}

	// predictAndCheck predicts the artifacts, with kernelFile as GRUB's
	// /vmlinuz, signs the bundle and checks the corpus boot against it.
	predictAndCheck := func(name string, artifacts []string, kernelFile string) (string, int) {
		t.Helper()
		prediction := filepath.Join(dir, name+".prediction.json")
		bare := filepath.Join(dir, name+".json")
		signed := filepath.Join(dir, name+".dsse.json")
		predictArgs := append([]string{"predict"}, artifacts...)
		predictArgs = append(predictArgs,
			"--grub-cfg", "../../predict/testdata/debian-grub-memdisk.cfg",
			"--grub-var", "prefix=(hd0,gpt1)/EFI/debian", "--grub-var", "root=hd0,gpt1",
			"--grub-file", "/EFI/debian/grub.cfg="+sbms+"grub.cfg",
			"--grub-file", "/initrd.img="+filepath.Join(corpus, "ovmf-swtpm", "initrd.img"),
			"--grub-file", "/vmlinuz="+kernelFile,
			"-o", prediction)
		for _, args := range [][]string{
			predictArgs,
			{"bundle", "create", "--publisher", "debian", "--product", "debian", "--version", name,
				"--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z",
				"--from-predict", prediction, "-o", bare},
			{"bundle", "sign", "--key", key + ".key", bare, "-o", signed},
		} {
			if out, code := runVouch(t, nil, args...); code != exitOK {
				t.Fatalf("%v: exit %d: %s", args[:2], code, out)
			}
		}
		return runVouch(t, nil, "policy", "check", sbms+"eventlog.bin", "--pcrs", sbms+"pcrs.json",
			"--bundle", signed, "--trust", "debian="+key+".pub", "--at", "2026-06-01T00:00:00Z", "--baseline", learned)
	}

	out, code := predictAndCheck("12.8", debs, kernel)
	if code != exitOK || !strings.Contains(out, "48 matched, 0 matched nothing") {
		t.Fatalf("check against the predicted bundle: exit %d:\n%s", code, out)
	}

	// One byte of the kernel's code changes: its Authenticode and file
	// digests change with it.
	data, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	changed := filepath.Join(dir, "changed", corpusKernel)
	if err := os.MkdirAll(filepath.Dir(changed), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = predictAndCheck("12.8-changed", []string{debs[0], debs[1], changed}, changed)
	if code != exitMismatch {
		t.Fatalf("check with a changed kernel: exit %d, want %d:\n%s", code, exitMismatch, out)
	}
	for _, want := range []string{
		"PCR 9, event 41, vmlinuz file sha256 85667e6c7224…: bundle debian-12.8-changed allows " + corpusKernel,
		"PCR 4, event 42, vmlinuz Authenticode sha256 61e79ca0acd7…: bundle debian-12.8-changed allows " + corpusKernel,
		"PCR 4, event 43, vmlinuz Authenticode sha256 61e79ca0acd7…: bundle debian-12.8-changed allows " + corpusKernel,
		"45 matched, 3 matched nothing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verdict lacks %q:\n%s", want, out)
		}
	}
}
