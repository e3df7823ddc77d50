//go:build linux

// Command guestinit is the /init of the end-to-end test guest. It mounts
// the kernel file systems, loads the few modules the Debian kernel does not
// build in, gives eth0 a static address on QEMU's user network, and then
// either runs the configured program (normally `vouch agent`) or, in probe
// mode, reports the event log, PCR values and TPM clock to the host and
// prints them on the serial console. It powers the machine off when done.
//
// Its configuration is /etc/vouch-guest.json inside the initramfs, so that
// everything the guest does is covered by the initrd's measurement.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vouch-attest/vouch/e2e/qemu/guestproto"
)

const configPath = "/etc/vouch-guest.json"

func main() {
	start := time.Now()
	logf("started")
	if err := run(start); err != nil {
		logf("error: %v", err)
	}
	logf("powering off")
	unix.Sync()
	// Give the serial console a moment to drain before the machine stops.
	time.Sleep(200 * time.Millisecond)
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		logf("power off: %v", err)
	}
	select {}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, guestproto.ConsolePrefix+format+"\n", args...)
}

func run(start time.Time) error {
	if err := mountAll(); err != nil {
		return err
	}
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", configPath, err)
	}
	var cfg guestproto.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("parse %s: %w", configPath, err)
	}
	for _, m := range cfg.Modules {
		if err := loadModule(m); err != nil {
			return err
		}
	}
	// efivarfs is a module in Debian's kernel; mount it once it is loaded.
	if err := unix.Mount("efivarfs", "/sys/firmware/efi/efivars", "efivarfs", 0, ""); err != nil {
		logf("mount efivarfs: %v", err)
	}
	if cfg.Interface != "" {
		if err := configureNetwork(cfg.Interface, cfg.Address); err != nil {
			return err
		}
	}
	switch cfg.Mode {
	case guestproto.ModeProbe:
		return probe(cfg, start)
	case guestproto.ModeExec:
		// Report what the machine measured before the program runs, so
		// that the harness can check the boot itself too.
		if err := probe(cfg, start); err != nil {
			logf("probe: %v", err)
		}
		return execute(cfg)
	default:
		return fmt.Errorf("%s: unknown mode %q (want %q or %q)", configPath, cfg.Mode, guestproto.ModeProbe, guestproto.ModeExec)
	}
}

func mountAll() error {
	mounts := []struct{ src, dst, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("create mount point %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	logf("loaded module %s", path)
	return nil
}

// configureNetwork brings up lo and gives ifname the static address cidr.
// QEMU's user network replies to ARP for its forward addresses, so no
// route beyond the subnet is needed.
func configureNetwork(ifname, cidr string) error {
	ip, ipnet, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return fmt.Errorf("%s: address %q is not an IPv4 CIDR", configPath, cidr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/sys/class/net/" + ifname); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("interface %s did not appear within 10s (is its driver in the initramfs?)", ifname)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open socket for interface setup: %w", err)
	}
	defer unix.Close(fd)
	if err := ifUp(fd, "lo"); err != nil {
		return err
	}
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(ip.To4()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("set address of %s: %w", ifname, err)
	}
	ifr, _ = unix.NewIfreq(ifname)
	if err := ifr.SetInet4Addr(net.IP(ipnet.Mask).To4()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("set netmask of %s: %w", ifname, err)
	}
	if err := ifUp(fd, ifname); err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/sys/class/net/" + ifname + "/carrier")
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			logf("interface %s up with address %s", ifname, cidr)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("interface %s has no carrier after 10s", ifname)
}

func ifUp(fd int, ifname string) error {
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("read flags of %s: %w", ifname, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up %s: %w", ifname, err)
	}
	return nil
}

func execute(cfg guestproto.Config) error {
	if len(cfg.Exec) == 0 {
		return fmt.Errorf("%s: mode %q needs a non-empty exec list", configPath, guestproto.ModeExec)
	}
	var machine guestproto.Machine
	if cfg.HarnessURL != "" {
		m, err := fetchMachine(cfg.HarnessURL + "/machine")
		if err != nil {
			return err
		}
		machine = m
	}
	if machine.Hostname != "" {
		if err := unix.Sethostname([]byte(machine.Hostname)); err != nil {
			return fmt.Errorf("set host name %q: %w", machine.Hostname, err)
		}
	}
	if cfg.StateDir != "" {
		if err := restoreState(cfg.StateDir, machine.State); err != nil {
			return err
		}
		logf("restored %d state files into %s", len(machine.State), cfg.StateDir)
	}

	logf("running %s", strings.Join(cfg.Exec, " "))
	cmd := exec.Command(cfg.Exec[0], cfg.Exec[1:]...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stdout
	cmd.Env = append(os.Environ(), machine.Env...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cfg.Exec[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// Keep the harness's copy of the state directory current, as a disk
	// would be, until the program exits.
	last := snapshotKey(machine.State)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			syncState(cfg, &last)
			logf("%s exited: %v", cfg.Exec[0], err)
			return nil
		case <-tick.C:
			syncState(cfg, &last)
		}
	}
}

func fetchMachine(url string) (guestproto.Machine, error) {
	var m guestproto.Machine
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("read machine settings from %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("read machine settings from %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return m, fmt.Errorf("read machine settings from %s: %w", url, err)
	}
	return m, nil
}

func restoreState(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.Clean("/"+name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return fmt.Errorf("restore state file %s: %w", p, err)
		}
	}
	return nil
}

func readState(dir string) map[string][]byte {
	files := map[string][]byte{}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil {
			files[filepath.ToSlash(rel)] = b
		}
		return nil
	})
	return files
}

// snapshotKey returns a digest of the state files, to tell when they
// changed.
func snapshotKey(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%q %d\n", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func syncState(cfg guestproto.Config, last *string) {
	if cfg.StateDir == "" || cfg.HarnessURL == "" {
		return
	}
	files := readState(cfg.StateDir)
	key := snapshotKey(files)
	if key == *last {
		return
	}
	body, err := json.Marshal(files)
	if err != nil {
		logf("encode state: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := send(ctx, http.MethodPut, cfg.HarnessURL+"/state", body); err != nil {
		logf("save state: %v", err)
		return
	}
	*last = key
	logf("saved %d state files", len(files))
}

func probe(cfg guestproto.Config, start time.Time) error {
	rep := collect()
	rep.InitSeconds = time.Since(start).Seconds()
	if rep.EventLogError != "" {
		logf("event log: %s", rep.EventLogError)
	} else {
		sum := sha256.Sum256(rep.EventLog)
		logf("event log: %d bytes sha256 %s", len(rep.EventLog), hex.EncodeToString(sum[:]))
	}
	for _, bank := range []string{"sha1", "sha256"} {
		for i := 0; i < 24; i++ {
			if v, ok := rep.PCRs[bank][i]; ok {
				logf("pcr %s %2d %s", bank, i, v)
			}
		}
	}
	if rep.TPMError != "" {
		logf("tpm: %s", rep.TPMError)
	}
	logf("reset count %d restart count %d secure boot %s", rep.ResetCount, rep.RestartCount, rep.SecureBoot)
	if cfg.HarnessURL == "" {
		return nil
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := send(ctx, http.MethodPost, cfg.HarnessURL+"/probe", body); err != nil {
		return err
	}
	logf("probe report sent")
	return nil
}

// send sends body to url and returns an error unless the status is 2xx.
func send(ctx context.Context, method, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}
