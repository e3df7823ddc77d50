package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testCorpus returns the shared corpus folder: VOUCH_CORPUS, or
// ../shared/corpus beside the repository. It skips the test when absent.
func testCorpus(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VOUCH_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus not found at %s: set VOUCH_CORPUS to the corpus folder", dir)
	}
	return dir
}

// cachedDeb returns a Debian package from the package cache ($VOUCH_CACHE,
// default ~/.cache/vouch), downloading it with apt-get when missing. Without
// apt-get or network it skips the test, unless CI is set.
func cachedDeb(t *testing.T, name, version string) string {
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("apt-get", "download", name+"="+version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		msg := "apt-get download " + name + "=" + version + " failed (" + err.Error() + "): " + string(out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	found, _ := filepath.Glob(pattern)
	if len(found) == 0 {
		t.Fatalf("apt-get download %s=%s wrote no file matching %s", name, version, pattern)
	}
	return found[0]
}

// TestPredictedBundleJudgesCorpusBoot runs the publisher's and the
// verifier's steps on a real boot: predict the Debian packages, make and sign
// a bundle, learn the firmware baseline, and check the log. The bundle built
// from a kernel with one changed byte must be rejected, naming the kernel's
// events.
func TestPredictedBundleJudgesCorpusBoot(t *testing.T) {
	corpus := testCorpus(t)
	boot := filepath.Join(corpus, "ovmf-swtpm", "shim-sbms")
	shim := cachedDeb(t, "shim-signed", "1.51~1+deb12u1+16.1-2~deb12u1")
	grub := cachedDeb(t, "grub-efi-amd64-signed", "1+2.06+13+deb12u2")
	kernelDeb := cachedDeb(t, "linux-image-6.1.0-57-amd64", "6.1.192-3")
	ovmf := cachedDeb(t, "ovmf", "2022.11-6+deb12u2")
	dir := t.TempDir()

	// The variable store and the kernel come out of their packages.
	unpack := exec.Command("dpkg-deb", "-x", ovmf, filepath.Join(dir, "ovmf"))
	if out, err := unpack.CombinedOutput(); err != nil {
		t.Skipf("dpkg-deb -x: %v: %s", err, out)
	}
	kernelTree := filepath.Join(dir, "kernel")
	if err := os.MkdirAll(filepath.Join(kernelTree, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	extract := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" ./boot/vmlinuz-6.1.0-57-amd64`, "sh", kernelDeb, kernelTree)
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("extract kernel: %v: %s", err, out)
	}
	kernel := filepath.Join(kernelTree, "boot", "vmlinuz-6.1.0-57-amd64")

	testdata := filepath.Join("..", "..", "predict", "testdata")
	key := filepath.Join(dir, "publisher")
	if out, code := runVouch(t, nil, "bundle", "keygen", "--out", key); code != exitOK {
		t.Fatalf("keygen: %s", out)
	}
	baseline := filepath.Join(dir, "baseline.json")
	if out, code := runVouch(t, nil, "policy", "learn", filepath.Join(boot, "eventlog.bin"), "--pcrs", filepath.Join(boot, "pcrs.json"), "--approve-by", "admin", "-o", baseline); code != exitOK {
		t.Fatalf("policy learn: %s", out)
	}

	check := func(name, kernelPath string) (string, int) {
		t.Helper()
		components := filepath.Join(dir, name+".components.json")
		out, code := runVouch(t, nil, "predict", "--format", "components", "-o", components,
			shim, grub, kernelPath, filepath.Join(corpus, "ovmf-swtpm", "initrd.img"),
			"--ovmf-vars", filepath.Join(dir, "ovmf", "usr", "share", "OVMF", "OVMF_VARS_4M.ms.fd"),
			"--grub-cfg", filepath.Join(testdata, "debian-grub-memdisk.cfg"),
			"--grub-var", "prefix=(hd0,gpt1)/EFI/debian",
			"--grub-file", "/EFI/debian/grub.cfg="+filepath.Join(testdata, "ovmf-swtpm", "grub.cfg"),
			"--firmware-constants")
		if code != exitOK {
			t.Fatalf("predict: %s", out)
		}
		unsigned := filepath.Join(dir, name+".json")
		if out, code := runVouch(t, nil, "bundle", "create", "--publisher", "debian", "--product", "debian", "--version", name, "--components", components, "-o", unsigned); code != exitOK {
			t.Fatalf("bundle create: %s", out)
		}
		signed := filepath.Join(dir, name+".signed.json")
		if out, code := runVouch(t, nil, "bundle", "sign", "--key", key+".key", unsigned, "-o", signed); code != exitOK {
			t.Fatalf("bundle sign: %s", out)
		}
		return runVouch(t, nil, "policy", "check", filepath.Join(boot, "eventlog.bin"), "--pcrs", filepath.Join(boot, "pcrs.json"),
			"--bundle", signed, "--trust", "debian="+key+".pub", "--baseline", baseline)
	}

	out, code := check("12-good", kernel)
	if code != exitOK || !strings.Contains(out, "0 matched nothing") {
		t.Fatalf("bundle from the packages: exit %d, expected the boot trusted:\n%s", code, out)
	}

	// One changed byte inside the kernel image, outside its signature.
	data, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	data[200000] ^= 0xff
	badTree := filepath.Join(dir, "bad")
	if err := os.MkdirAll(filepath.Join(badTree, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(badTree, "boot", "vmlinuz-6.1.0-57-amd64"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = check("12-bad", badTree)
	if code != exitMismatch {
		t.Fatalf("bundle from a changed kernel: exit %d, expected %d:\n%s", code, exitMismatch, out)
	}
	for _, want := range []string{"PCR 9, event 41, vmlinuz", "PCR 4, event 42, vmlinuz", "PCR 4, event 43, vmlinuz", "3 matched nothing"} {
		if !strings.Contains(out, want) {
			t.Errorf("verdict lacks %q:\n%s", want, out)
		}
	}
}
