package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Firmware is an OVMF build and the variable store a new VM starts from.
type Firmware struct {
	Code         string
	VarsTemplate string
	// SecureBoot selects the SMM-protected build that enforces Secure
	// Boot when the variable store enrolls keys.
	SecureBoot bool
}

// Debian's OVMF builds: without Secure Boot, and with Secure Boot and the
// Microsoft keys enrolled, which trust the Microsoft-signed shim.
var (
	FirmwareSecureBootOff = Firmware{
		Code:         "/usr/share/OVMF/OVMF_CODE_4M.fd",
		VarsTemplate: "/usr/share/OVMF/OVMF_VARS_4M.fd",
	}
	FirmwareSecureBootMicrosoft = Firmware{
		Code:         "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
		VarsTemplate: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
		SecureBoot:   true,
	}
)

// Addresses on QEMU's user network (10.0.2.0/24) that forward to the host.
const (
	// VerifierAddr is where the guest reaches the verifier.
	VerifierAddr = "10.0.2.100:80"
	// HarnessAddr is where the guest init reaches the test harness: probe
	// reports, and the agent's state directory kept across reboots.
	HarnessAddr = "10.0.2.101:80"
)

// Forward sends the guest's connections to Guest (one of the addresses
// above) to Host, a loopback host:port.
type Forward struct {
	Guest string
	Host  string
}

// VMConfig describes one boot.
type VMConfig struct {
	Firmware Firmware
	// Vars is the VM's own copy of the variable store. It is created from
	// Firmware.VarsTemplate when missing and kept between boots, like the
	// NVRAM of a real machine.
	Vars string
	// Disk is the raw boot disk; QEMU never writes to it (snapshot=on).
	Disk string
	// TPMSocket is the control socket of a running swtpm.
	TPMSocket string
	// Serial receives the serial console.
	Serial string
	// Forwards are the guest's only ways out. Without them it has no
	// network.
	Forwards []Forward
	// Relay is the program QEMU runs for each forwarded connection, with
	// the connection on its standard input and output and the Forward's
	// Host as its argument; see RelayMain.
	Relay string
	// Env is added to QEMU's environment, and so to the relay's.
	Env []string
	// MemoryMiB defaults to 512.
	MemoryMiB int
}

// Args returns QEMU's arguments. The machine matches the one booted for
// the ovmf-swtpm corpus, plus an e1000 NIC with no option ROM, which the
// firmware leaves alone.
func (c VMConfig) Args() []string {
	mem := c.MemoryMiB
	if mem == 0 {
		mem = 512
	}
	args := []string{
		"-name", "vouch-e2e",
		"-machine", "q35,smm=on", "-accel", "tcg", "-cpu", "max", "-smp", "1",
		"-m", fmt.Sprint(mem),
		"-nodefaults", "-nographic", "-no-reboot",
		"-serial", "file:" + qemuEscape(c.Serial), "-monitor", "none",
	}
	if c.Firmware.SecureBoot {
		args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	args = append(args,
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+qemuEscape(c.Firmware.Code),
		"-drive", "if=pflash,format=raw,unit=1,file="+qemuEscape(c.Vars),
		"-chardev", "socket,id=chrtpm,path="+qemuEscape(c.TPMSocket),
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-tis,tpmdev=tpm0",
		"-drive", "if=none,id=esp,format=raw,snapshot=on,file="+qemuEscape(c.Disk),
		"-device", "virtio-blk-pci,drive=esp,bootindex=1",
	)
	if len(c.Forwards) == 0 {
		return append(args, "-nic", "none")
	}
	netdev := "user,id=net0,restrict=on,ipv6=off"
	for _, f := range c.Forwards {
		host, port, _ := net.SplitHostPort(f.Guest)
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%s-cmd:%s %s", host, port, qemuEscape(c.Relay), qemuEscape(f.Host))
	}
	return append(args, "-netdev", netdev, "-device", "e1000,netdev=net0,romfile=")
}

// qemuEscape doubles commas, which QEMU's option syntax would read as
// separators.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// VM is a running QEMU.
type VM struct {
	Config VMConfig
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr *strings.Builder
}

// Start boots a VM. The caller must call Stop or Wait.
func Start(ctx context.Context, cfg VMConfig) (*VM, error) {
	for _, f := range cfg.Forwards {
		host, _, err := net.SplitHostPort(f.Host)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			return nil, fmt.Errorf("forward of %s to %q: the host end must be a loopback host:port", f.Guest, f.Host)
		}
	}
	if strings.ContainsAny(cfg.Relay, " \t'\"") {
		return nil, fmt.Errorf("relay path %q contains a space or quote, which QEMU's command parsing would split", cfg.Relay)
	}
	if _, err := os.Stat(cfg.Vars); errors.Is(err, os.ErrNotExist) {
		if err := copyFile(cfg.Firmware.VarsTemplate, cfg.Vars); err != nil {
			return nil, fmt.Errorf("create the VM's variable store: %w (install ovmf)", err)
		}
	}
	_ = os.Remove(cfg.Serial)
	cmd := exec.Command("qemu-system-x86_64", cfg.Args()...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	vm := &VM{Config: cfg, cmd: cmd, done: make(chan struct{}), stderr: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = vm.stderr, vm.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu-system-x86_64: %w (install qemu-system-x86)", err)
	}
	go func() { vm.err = cmd.Wait(); close(vm.done) }()
	go func() {
		select {
		case <-ctx.Done():
			vm.Stop()
		case <-vm.done:
		}
	}()
	return vm, nil
}

// Wait waits for QEMU to exit (the guest powered off) or for timeout to
// pass, in which case it stops QEMU and returns an error.
func (vm *VM) Wait(timeout time.Duration) error {
	select {
	case <-vm.done:
	case <-time.After(timeout):
		vm.Stop()
		return fmt.Errorf("the guest did not power off within %s; serial console in %s", timeout, vm.Config.Serial)
	}
	if vm.err != nil {
		return fmt.Errorf("qemu: %w: %s", vm.err, strings.TrimSpace(vm.stderr.String()))
	}
	return nil
}

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Stop kills QEMU, the machine's power cord, and waits for it to exit.
func (vm *VM) Stop() {
	select {
	case <-vm.done:
		return
	default:
	}
	_ = vm.cmd.Process.Kill()
	<-vm.done
}

// SerialLog returns the serial console so far.
func (vm *VM) SerialLog() string {
	b, _ := os.ReadFile(vm.Config.Serial)
	return string(b)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
