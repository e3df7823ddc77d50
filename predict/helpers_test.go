package predict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/eventlog"
)

// logEvent is the part of an event log record that the tests compare.
type logEvent struct {
	Index   int
	PCR     int
	Type    uint32
	Digests map[Bank][]byte
	Data    []byte
}

// readTestLog reads a TCG event log with the eventlog package and returns
// its events after the Spec ID event.
func readTestLog(t *testing.T, name string) []logEvent {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var events []logEvent
	for _, e := range log.Events {
		if e.Number == 0 && log.SpecID != nil {
			continue
		}
		le := logEvent{Index: e.Number, PCR: int(e.PCR), Type: uint32(e.Type), Digests: map[Bank][]byte{}, Data: e.Data}
		for _, d := range e.Digests {
			if b, err := ParseBank(d.Alg.String()); err == nil {
				le.Digests[b] = d.Value
			}
		}
		events = append(events, le)
	}
	return events
}

// TCG event types used by the tests.
const (
	evIPL                   = 0x0d
	evEventTag              = 0x06
	evSeparator             = 0x04
	evEFIVariableDriverConf = 0x80000001
	evEFIBootServicesApp    = 0x80000003
	evEFIVariableAuthority  = 0x800000e0
)

// matches reports whether every bank the event has equals the reference's
// digest, and at least one bank was compared.
func matches(e logEvent, r Reference) bool {
	compared := 0
	for b, d := range e.Digests {
		want, ok := r.Digests[b]
		if !ok {
			continue
		}
		if !bytes.Equal(want, d) {
			return false
		}
		compared++
	}
	return compared > 0
}

func describe(e logEvent) string {
	return fmt.Sprintf("event %d (PCR %d, type 0x%x, data %.60q, sha256 %x)", e.Index, e.PCR, e.Type, e.Data, e.Digests[SHA256])
}

// corpusDir returns the shared corpus folder: VOUCH_CORPUS, or
// ../shared/corpus beside the repository. It skips the test when absent.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VOUCH_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus not found at %s: set VOUCH_CORPUS to the corpus folder", dir)
	}
	return dir
}

// cacheDir returns the package cache: VOUCH_CACHE, or ~/.cache/vouch.
func cacheDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("VOUCH_CACHE"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatalf("no home directory for the package cache: set VOUCH_CACHE (%v)", err)
	}
	return filepath.Join(home, ".cache", "vouch")
}

// fetchDeb returns the path of a Debian package in the cache, downloading it
// with apt-get download when missing. Without apt-get or network it skips
// the test, unless CI is set.
func fetchDeb(t *testing.T, name, version string) string {
	t.Helper()
	dir := filepath.Join(cacheDir(t), "debs")
	// apt-get writes an epoch's colon as %3a in file names.
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
		unavailable("apt-get not found, cannot fetch %s=%s: install it or put the package in %s", name, version, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("apt-get", "download", name+"="+version)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		unavailable("apt-get download %s=%s failed (%v): %s\nrun apt-get update, or check that the version is still served with apt-cache madison %s", name, version, err, out, name)
	}
	found, _ := filepath.Glob(pattern)
	if len(found) == 0 {
		t.Fatalf("apt-get download %s=%s wrote no file matching %s", name, version, pattern)
	}
	return found[0]
}

// The packages of the ovmf-swtpm corpus boots.
var (
	debShim   = [2]string{"shim-signed", "1.51~1+deb12u1+16.1-2~deb12u1"}
	debGrub   = [2]string{"grub-efi-amd64-signed", "1+2.06+13+deb12u2"}
	debKernel = [2]string{"linux-image-6.1.0-57-amd64", "6.1.192-3"}
	debOVMF   = [2]string{"ovmf", "2022.11-6+deb12u2"}
)

// extractDebFile returns one file of a package's data archive.
func extractDebFile(t *testing.T, deb, want string) []byte {
	t.Helper()
	f, err := os.Open(deb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []byte
	var pkg Package
	err = readDeb(f, &pkg, func(name string, size int64, r io.Reader) error {
		if name != want {
			return nil
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		out = buf.Bytes()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out == nil {
		t.Fatalf("%s has no file %s", deb, want)
	}
	return out
}

// unpackedDeb returns a directory holding the boot artifacts of a package,
// and the package's identity. It unpacks the package with readDeb into the
// cache on first use, so that later runs skip decompressing it (the kernel
// package takes tens of seconds).
func unpackedDeb(t *testing.T, name, version string) (string, *Package) {
	t.Helper()
	deb := fetchDeb(t, name, version)
	dir := filepath.Join(cacheDir(t), "trees", filepath.Base(deb))
	meta := filepath.Join(dir, "package.json")
	if raw, err := os.ReadFile(meta); err == nil {
		var pkg Package
		if err := json.Unmarshal(raw, &pkg); err != nil {
			t.Fatalf("%s: %v (delete the folder to unpack again)", meta, err)
		}
		return dir, &pkg
	}

	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	f, err := os.Open(deb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pkg Package
	err = readDeb(f, &pkg, func(path string, size int64, r io.Reader) error {
		if classify(path) == "" {
			return nil
		}
		out := filepath.Join(tmp, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		w, err := os.Create(out)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, r); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	})
	if err != nil {
		t.Fatalf("unpack %s: %v", deb, err)
	}
	raw, err := json.Marshal(&pkg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir, &pkg
}

func readTestdata(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
}
