package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vouch-attest/vouch/e2e/qemu/guestproto"
)

// BuildStatic builds the Go command pkg (an import path or a ./ path
// relative to dir) as a static linux/amd64 binary at out, with the flags
// that make the output depend only on the source and the Go version.
func BuildStatic(ctx context.Context, dir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Guest is the content of the test guest's initramfs.
type Guest struct {
	// Init is the path of the static guestinit binary, installed as /init.
	Init string
	// Vouch is the path of a static vouch binary, installed as /bin/vouch
	// when set.
	Vouch string
	// Modules are kernel modules to install and load in order.
	Modules []string
	// Config is written to /etc/vouch-guest.json; its Modules are filled
	// in from Modules.
	Config guestproto.Config
	// Extra files, for instance to make one initrd differ from another.
	Extra []InitramfsFile
}

// Files returns the initramfs entries of the guest.
func (g Guest) Files() ([]InitramfsFile, error) {
	var files []InitramfsFile
	add := func(dst, src string, mode fs.FileMode) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		files = append(files, InitramfsFile{Path: dst, Mode: mode, Data: b})
		return nil
	}
	if err := add("init", g.Init, 0o755); err != nil {
		return nil, err
	}
	if g.Vouch != "" {
		if err := add("bin/vouch", g.Vouch, 0o755); err != nil {
			return nil, err
		}
	}
	cfg := g.Config
	cfg.Modules = nil
	for _, m := range g.Modules {
		dst := "lib/modules/" + filepath.Base(m)
		if err := add(dst, m, 0o644); err != nil {
			return nil, err
		}
		cfg.Modules = append(cfg.Modules, "/"+dst)
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	files = append(files,
		InitramfsFile{Path: "etc/vouch-guest.json", Mode: 0o644, Data: append(raw, '\n')},
		InitramfsFile{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
	)
	for _, d := range []string{"proc", "sys", "run", "tmp", "var", "root"} {
		files = append(files, InitramfsFile{Path: d, Mode: fs.ModeDir | 0o755})
	}
	return append(files, g.Extra...), nil
}

// WriteInitrd writes the guest's initramfs to path.
func (g Guest) WriteInitrd(path string) error {
	files, err := g.Files()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, files); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// GrubConfig is the boot menu on the ESP, at /EFI/debian/grub.cfg where
// Debian's signed GRUB looks for it.
type GrubConfig struct {
	// Title of the single menu entry.
	Title string
	// CmdLine is the kernel command line after the image path.
	CmdLine string
	// Legacy boots with plain `linux`/`initrd`, which with Secure Boot off
	// takes the x86 boot protocol past the kernel's EFI stub: Linux then
	// has no event log. Otherwise `linuxefi`/`initrdefi` are used.
	Legacy bool
}

// Text returns grub.cfg.
func (c GrubConfig) Text() string {
	linux, initrd := "linuxefi", "initrdefi"
	if c.Legacy {
		linux, initrd = "linux", "initrd"
	}
	return fmt.Sprintf("set timeout=0\nset default=0\nmenuentry %q {\n  %s /vmlinuz %s\n  %s /initrd.img\n}\n",
		c.Title, linux, c.CmdLine, initrd)
}

// ESPFiles returns the files of the boot partition: shim as the removable
// media loader, GRUB beside it, grub.cfg, the kernel and initrd.
func ESPFiles(chain *BootChain, grub GrubConfig, initrd string) []ESPFile {
	return []ESPFile{
		{Path: "EFI/BOOT/BOOTX64.EFI", Source: chain.Shim},
		{Path: "EFI/BOOT/grubx64.efi", Source: chain.Grub},
		{Path: "EFI/debian/grub.cfg", Data: []byte(grub.Text())},
		{Path: "vmlinuz", Source: chain.Kernel},
		{Path: "initrd.img", Source: initrd},
	}
}
