package allowlist

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/ima"
)

// writeTree creates a package tree with regular files, a name with spaces
// and UTF-8, and a symbolic link.
func writeTree(t *testing.T) (root string, files map[string][]byte) {
	root = t.TempDir()
	files = map[string][]byte{
		"usr/bin/hello":                 []byte("#!/bin/sh\necho hello\n"),
		"usr/lib/libdemo.so.1":          bytes.Repeat([]byte{0x7f, 'E', 'L', 'F'}, 1000),
		"usr/share/doc/demo/naïve file": []byte("documentation\n"),
		"etc/demo.conf":                 nil,
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("hello", filepath.Join(root, "usr/bin/hello-link")); err != nil {
		t.Fatal(err)
	}
	return root, files
}

func checkList(t *testing.T, a *ima.Allowlist, files map[string][]byte) {
	t.Helper()
	if a.Len() != len(files) {
		t.Errorf("allowlist has %d digests, want %d", a.Len(), len(files))
	}
	for name, data := range files {
		sum := sha256.Sum256(data)
		// IMA logs spaces in names as underscores.
		logged := "/" + strings.ReplaceAll(name, " ", "_")
		if !a.ContainsFor("sha256", sum[:], []byte(logged)) {
			t.Errorf("%s (%x) is not listed", logged, sum)
		}
	}
	if a.ContainsFor("sha256", make([]byte, 32), []byte("/usr/bin/hello-link")) {
		t.Error("symbolic link listed")
	}
}

func TestAddDir(t *testing.T) {
	root, files := writeTree(t)
	a := ima.NewAllowlist()
	n, err := AddDir(a, root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("added %d files, want %d", n, len(files))
	}
	checkList(t, a, files)
}

// TestAddDeb builds real packages with dpkg-deb in every compression it
// supports and reads them back.
func TestAddDeb(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed (apt-get install dpkg)")
	}
	root, files := writeTree(t)
	if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	control := "Package: vouch-demo\nVersion: 1.0\nArchitecture: all\nMaintainer: Vouch <vouch@example.org>\nDescription: allowlist test\n"
	if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, comp := range []string{"xz", "zstd", "gzip", "none"} {
		t.Run(comp, func(t *testing.T) {
			deb := filepath.Join(t.TempDir(), "demo.deb")
			out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+comp, "--build", root, deb).CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "unknown compression") {
					t.Skipf("dpkg-deb lacks %s: %s", comp, out)
				}
				t.Fatalf("dpkg-deb: %v: %s", err, out)
			}
			f, err := os.Open(deb)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			a := ima.NewAllowlist()
			n, err := AddDeb(a, f, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if n != len(files) {
				t.Errorf("added %d files, want %d", n, len(files))
			}
			checkList(t, a, files)
		})
	}
}

func TestAddDebRejectsOtherFiles(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("not a package"), []byte("!<arch>\n"), []byte("!<arch>\ndebian-binary   0           0     0     100644  4         XX")} {
		_, err := AddDeb(ima.NewAllowlist(), bytes.NewReader(data), Options{})
		if err == nil {
			t.Errorf("%q: no error", data)
		}
	}
	if _, err := AddDir(ima.NewAllowlist(), t.TempDir(), Options{Algorithm: "md5"}); err == nil || !strings.Contains(err.Error(), "md5") {
		t.Errorf("md5: err = %v", err)
	}
}

func FuzzAddDeb(f *testing.F) {
	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		root := f.TempDir()
		for _, p := range []string{"DEBIAN/control", "usr/bin/tool"} {
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
				f.Fatal(err)
			}
		}
		os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte("Package: seed\nVersion: 1\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: seed\n"), 0o644)
		os.WriteFile(filepath.Join(root, "usr/bin/tool"), []byte("tool\n"), 0o755)
		for _, comp := range []string{"none", "gzip", "xz", "zstd"} {
			deb := filepath.Join(f.TempDir(), comp+".deb")
			if err := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+comp, "--build", root, deb).Run(); err == nil {
				if data, err := os.ReadFile(deb); err == nil {
					f.Add(data)
				}
			}
		}
	}
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		AddDeb(ima.NewAllowlist(), bytes.NewReader(data), Options{})
	})
}
