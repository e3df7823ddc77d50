package qemu

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	predictOnce sync.Once
	predictBin  string
	predictErr  error
)

// predictBinary returns a host vouch binary built from this repository,
// which has `vouch predict`.
func predictBinary(t *testing.T) string {
	t.Helper()
	predictOnce.Do(func() {
		predictBin = filepath.Join(buildDir, "vouch-host")
		cmd := exec.Command("go", "build", "-o", predictBin, "./cmd/vouch")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			predictErr = &buildError{err: err, out: string(out)}
		}
	})
	if predictErr != nil {
		t.Fatal(predictErr)
	}
	return predictBin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build ./cmd/vouch: " + e.err.Error() + ": " + e.out }

// prediction is the part of `vouch predict` JSON output the check reads.
type prediction struct {
	References []struct {
		Kind      string            `json:"kind"`
		PCR       int               `json:"pcr"`
		Component string            `json:"component"`
		Event     string            `json:"event"`
		Digests   map[string]string `json:"digests"`
	} `json:"references"`
}

// predictBoot runs `vouch predict` on the files of the machine's disk, the
// way a publisher would on the Debian packages: shim, GRUB, the kernel,
// the initrd, GRUB's embedded configuration and grub.cfg, and the
// firmware's variable store template for the Secure Boot variables.
// It returns the decoded prediction and the file holding it.
func predictBoot(t *testing.T, m *machine, grub GrubConfig, initrd string) (*prediction, string) {
	t.Helper()
	bin := predictBinary(t)
	dir, err := os.MkdirTemp(m.dir, "predict")
	if err != nil {
		t.Fatal(err)
	}
	grubCfg := filepath.Join(dir, "grub.cfg")
	if err := os.WriteFile(grubCfg, []byte(grub.Text()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The configuration built into Debian's signed grubx64.efi: it sources
	// $prefix/grub.cfg, with $prefix set to (hd0,gpt1)/EFI/debian.
	embedded := filepath.Join(repoRoot, "predict", "testdata", "debian-grub-memdisk.cfg")
	kernel := filepath.Join(dir, "vmlinuz")
	if err := copyFile(chain.Kernel, kernel); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "prediction.json")
	cmd := exec.CommandContext(context.Background(), bin, "predict",
		chain.Shim, chain.Grub, kernel, initrd,
		"--grub-cfg", embedded,
		"--grub-var", "prefix=(hd0,gpt1)/EFI/debian", "--grub-var", "root=hd0,gpt1",
		"--grub-file", "/EFI/debian/grub.cfg="+grubCfg,
		"--grub-file", "/initrd.img="+initrd,
		"--ovmf-vars", m.fw.VarsTemplate,
		"--bank", "sha1,sha256", "--out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vouch predict: %v: %s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var p prediction
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("decode vouch predict output: %v", err)
	}
	return &p, out
}

// unpredicted returns the events of the boot applications (PCR 4), GRUB
// (PCRs 8 and 9) and shim (PCR 14), and of the Secure Boot variables (PCR
// 7), whose SHA-256 digest the prediction does not list for their PCR.
func unpredicted(p *prediction, events []tcgEvent) (missing []tcgEvent, checked int) {
	want := map[int]map[string]bool{}
	for _, r := range p.References {
		if want[r.PCR] == nil {
			want[r.PCR] = map[string]bool{}
		}
		want[r.PCR][r.Digests["sha256"]] = true
	}
	for _, ev := range events[1:] {
		switch {
		case ev.PCR == 4 && ev.Type == evEFIBootServicesApplication,
			(ev.PCR == 8 || ev.PCR == 9 || ev.PCR == 14) && ev.Type == evIPL,
			ev.PCR == 7 && (ev.Type == evEFIVariableDriverConfig || ev.Type == evEFIVariableAuthority):
		default:
			continue
		}
		checked++
		if !want[int(ev.PCR)][hex.EncodeToString(ev.Digests[algSHA256])] {
			missing = append(missing, ev)
		}
	}
	return missing, checked
}

// checkPredicted fails the test for every checked event the prediction
// does not list.
func checkPredicted(t *testing.T, p *prediction, events []tcgEvent) {
	t.Helper()
	missing, checked := unpredicted(p, events)
	for _, ev := range missing {
		t.Errorf("event %d (PCR %d, type %#x, %q) has sha256 %x, which vouch predict did not predict",
			ev.Index, ev.PCR, ev.Type, printable(ev.Data), ev.Digests[algSHA256])
	}
	t.Logf("vouch predict predicted %d of %d boot-chain events", checked-len(missing), checked)
}

func printable(b []byte) string {
	s := strings.TrimRight(string(b), "\x00")
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return "binary data"
		}
	}
	return s
}

const (
	evIPL                     = 0x0000000d
	evEFIVariableDriverConfig = 0x80000001
	evEFIVariableAuthority    = 0x800000e0
)
