package qemu

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/e2e/qemu/guestproto"
)

// EnableEnv must be 1 for the tests that boot QEMU to run.
const EnableEnv = "VOUCH_E2E_QEMU"

func TestMain(m *testing.M) {
	// QEMU runs this test binary as the relay for each guest connection.
	if os.Getenv(RelayEnv) != "" {
		os.Exit(RelayMain())
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// bootTimeout bounds one boot from firmware to power-off, or to a verdict.
// A boot takes 13-20 s under software emulation on an idle machine, and
// was seen to take over 3 minutes with the CPU shared by many builds.
const bootTimeout = 6 * time.Minute

var (
	setupOnce sync.Once
	setupErr  error
	buildDir  string
	chain     *BootChain
	initBin   string
	repoRoot  string
)

// harness skips the test unless VOUCH_E2E_QEMU=1, and otherwise fails it
// when a tool is missing: a run that asked for the boots must get them.
func harness(t *testing.T) {
	t.Helper()
	if os.Getenv(EnableEnv) != "1" {
		t.Skipf("set %s=1 to boot QEMU (see docs/e2e-qemu.md)", EnableEnv)
	}
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

func setup() error {
	for _, tool := range []string{"qemu-system-x86_64", "swtpm", "swtpm_setup", "mkfs.fat", "mcopy", "dpkg-deb", "apt-get", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: apt-get install qemu-system-x86 ovmf swtpm swtpm-tools dosfstools mtools", tool)
		}
	}
	for _, f := range []Firmware{FirmwareSecureBootOff, FirmwareSecureBootMicrosoft} {
		for _, p := range []string{f.Code, f.VarsTemplate} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("%w: apt-get install ovmf", err)
			}
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	repoRoot = filepath.Join(wd, "..", "..")
	cache, err := CacheDir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if chain, err = Fetch(ctx, cache, log); err != nil {
		return err
	}
	if buildDir, err = os.MkdirTemp("", "vouch-e2e-build-"); err != nil {
		return err
	}
	initBin = filepath.Join(buildDir, "guestinit")
	return BuildStatic(ctx, repoRoot, "./e2e/qemu/guestinit", initBin)
}

// machine is one test VM: its TPM, variable store and disk.
type machine struct {
	t      *testing.T
	dir    string
	tpm    *TPM
	fw     Firmware
	disk   string
	server *harnessServer
	// verifier is the loopback address the guest's VerifierAddr forwards
	// to, when set.
	verifier string
}

func newMachine(t *testing.T, fw Firmware, caDir string) *machine {
	t.Helper()
	dir := t.TempDir()
	tpm, err := ManufactureTPM(context.Background(), filepath.Join(dir, "tpm"), caDir)
	if err != nil {
		t.Fatal(err)
	}
	return &machine{t: t, dir: dir, tpm: tpm, fw: fw, server: newHarnessServer(t)}
}

// install writes the machine's disk: the boot chain, grub.cfg and an
// initramfs with the probe guest.
func (m *machine) install(grub GrubConfig, extra ...InitramfsFile) {
	m.t.Helper()
	g := Guest{
		Init:    initBin,
		Modules: chain.Modules,
		Config: guestproto.Config{
			Mode:       guestproto.ModeProbe,
			Interface:  "eth0",
			Address:    "10.0.2.15/24",
			HarnessURL: "http://" + HarnessAddr,
		},
		Extra: extra,
	}
	initrd := filepath.Join(m.dir, "initrd.img")
	if err := g.WriteInitrd(initrd); err != nil {
		m.t.Fatal(err)
	}
	m.disk = filepath.Join(m.dir, "disk.img")
	if err := WriteDisk(context.Background(), m.disk, DefaultLayout, ESPFiles(chain, grub, initrd)); err != nil {
		m.t.Fatal(err)
	}
}

// boot runs the machine until the guest powers off and returns the probe
// report, or nil when the guest sent none.
func (m *machine) boot() *guestproto.Report {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	sw, err := m.tpm.Start(ctx, filepath.Join(m.dir, "swtpm.sock"), filepath.Join(m.dir, "swtpm.log"))
	if err != nil {
		m.t.Fatal(err)
	}
	defer sw.Stop()
	exe, err := os.Executable()
	if err != nil {
		m.t.Fatal(err)
	}
	start := time.Now()
	forwards := []Forward{{Guest: HarnessAddr, Host: m.server.addr}}
	if m.verifier != "" {
		forwards = append(forwards, Forward{Guest: VerifierAddr, Host: m.verifier})
	}
	vm, err := Start(ctx, VMConfig{
		Firmware:  m.fw,
		Vars:      filepath.Join(m.dir, "vars.fd"),
		Disk:      m.disk,
		TPMSocket: sw.Socket,
		Serial:    filepath.Join(m.dir, "serial.log"),
		Forwards:  forwards,
		Relay:     exe,
		Env:       []string{RelayEnv + "=1"},
	})
	if err != nil {
		m.t.Fatal(err)
	}
	defer vm.Stop()
	if err := vm.Wait(bootTimeout); err != nil {
		m.t.Fatalf("%v\nserial console:\n%s", err, tail(vm.SerialLog(), 40))
	}
	m.t.Logf("boot took %.1fs", time.Since(start).Seconds())
	rep := m.server.take()
	if rep == nil {
		m.t.Logf("serial console:\n%s", tail(vm.SerialLog(), 40))
	}
	return rep
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// harnessServer is the host end of the guest init's connections: it takes
// probe reports, and keeps the machine's settings and state directory.
type harnessServer struct {
	addr    string
	mu      sync.Mutex
	rep     *guestproto.Report
	machine guestproto.Machine
}

func newHarnessServer(t *testing.T) *harnessServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &harnessServer{addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /probe", func(w http.ResponseWriter, r *http.Request) {
		var rep guestproto.Report
		if !decode(w, r, &rep) {
			return
		}
		hs.mu.Lock()
		hs.rep = &rep
		hs.mu.Unlock()
	})
	mux.HandleFunc("GET /machine", func(w http.ResponseWriter, r *http.Request) {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		_ = json.NewEncoder(w).Encode(hs.machine)
	})
	mux.HandleFunc("PUT /state", func(w http.ResponseWriter, r *http.Request) {
		var files map[string][]byte
		if !decode(w, r, &files) {
			return
		}
		hs.mu.Lock()
		hs.machine.State = files
		hs.mu.Unlock()
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return hs
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		http.Error(w, "invalid JSON body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (hs *harnessServer) take() *guestproto.Report {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	r := hs.rep
	hs.rep = nil
	return r
}

func (hs *harnessServer) setMachine(hostname string, env ...string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.machine.Hostname, hs.machine.Env = hostname, env
}

// checkReplay replays the guest's event log and compares PCRs 0-9 of both
// banks with the values the guest read from the TPM.
func checkReplay(t *testing.T, rep *guestproto.Report) []tcgEvent {
	t.Helper()
	if rep.TPMError != "" {
		t.Fatalf("guest could not read the TPM: %s", rep.TPMError)
	}
	events, err := parseTCGLog(rep.EventLog)
	if err != nil {
		t.Fatalf("guest event log: %v", err)
	}
	for name, alg := range map[string]uint16{"sha1": algSHA1, "sha256": algSHA256} {
		replayed := replayTCGLog(events, alg)
		for pcr := uint32(0); pcr <= 9; pcr++ {
			want := rep.PCRs[name][int(pcr)]
			if got := hex.EncodeToString(replayed[pcr]); got != want {
				t.Errorf("%s PCR %d: log replays to %s, TPM has %s", name, pcr, got, want)
			}
		}
	}
	return events
}

// corpusMatches reports whether the fetched packages are the ones the
// corpus was captured with, so that logs can be compared byte for byte.
func corpusMatches() bool {
	want := map[string]string{
		"linux-image-6.1.0-57-amd64": "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb",
		shimPkg:                      "shim-signed_1.51~1+deb12u1+16.1-2~deb12u1_amd64.deb",
		grubPkg:                      "grub-efi-amd64-signed_1+2.06+13+deb12u2_amd64.deb",
	}
	for pkg, file := range want {
		if filepath.Base(chain.Debs[pkg]) != file {
			return false
		}
	}
	return true
}

const evEFIBootServicesApplication = 0x80000003

// eventData returns the event data without the parts that depend on where
// the firmware placed things in memory: an image's load address
// (ImageLocationInMemory) shifts with the variable store's contents and
// the machine's devices, and is not measured.
func eventData(ev tcgEvent) []byte {
	if ev.Type == evEFIBootServicesApplication && len(ev.Data) >= 8 {
		return ev.Data[8:]
	}
	return ev.Data
}

// differsFromCorpus reports whether a corpus event measured something the
// harness changes on purpose: the initrd, and grub.cfg with the kernel
// command line, which adds no_timer_check (see cmdline).
func differsFromCorpus(ev tcgEvent) bool {
	d := string(ev.Data)
	return d == "/initrd.img\x00" || d == "(hd0,gpt1)/EFI/debian/grub.cfg\x00" || strings.Contains(d, "console=ttyS0")
}

// compareWithCorpus checks that the boot measured what the corpus boot
// measured, event for event, except for the events differsFromCorpus
// names, and returns how many events are equal.
func compareWithCorpus(t *testing.T, events []tcgEvent, corpusLog string) int {
	t.Helper()
	raw, err := os.ReadFile(corpusLog)
	if err != nil {
		t.Fatal(err)
	}
	want, err := parseTCGLog(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(want) {
		t.Fatalf("boot logged %d events, corpus %d", len(events), len(want))
	}
	same := 0
	for i := range want {
		g, w := events[i], want[i]
		if g.PCR != w.PCR || g.Type != w.Type {
			t.Errorf("event %d: PCR %d type %#x, corpus PCR %d type %#x", i, g.PCR, g.Type, w.PCR, w.Type)
			continue
		}
		digestsEqual := bytes.Equal(g.Digests[algSHA256], w.Digests[algSHA256]) && bytes.Equal(g.Digests[algSHA1], w.Digests[algSHA1])
		if differsFromCorpus(w) {
			if digestsEqual {
				t.Errorf("event %d (PCR %d, %q): digest equals the corpus's, expected a difference", i, g.PCR, w.Data)
			}
			continue
		}
		if !bytes.Equal(eventData(g), eventData(w)) {
			t.Errorf("event %d (PCR %d, type %#x): data %q, corpus %q", i, g.PCR, g.Type, g.Data, w.Data)
			continue
		}
		if !digestsEqual {
			t.Errorf("event %d (PCR %d, type %#x): sha256 %x, corpus %x", i, g.PCR, g.Type, g.Digests[algSHA256], w.Digests[algSHA256])
			continue
		}
		same++
	}
	return same
}

// The harness on its own: the probe guest boots through shim and GRUB
// with Secure Boot off, reaches the host only through the forward, and
// reports an event log that replays to its PCRs and equals the corpus
// capture except for the initrd. Without the agent, a second boot of the
// same VM shows the TPM's reset count going up.
func TestProbeBootSecureBootOff(t *testing.T) {
	harness(t)
	m := newMachine(t, FirmwareSecureBootOff, filepath.Join(t.TempDir(), "ca"))
	m.install(GrubConfig{Title: corpusTitle, CmdLine: cmdline})
	rep := m.boot()
	if rep == nil {
		t.Fatal("the guest sent no probe report through the forward")
	}
	events := checkReplay(t, rep)
	if rep.SecureBoot != "off" {
		t.Errorf("guest reports Secure Boot %q, want off", rep.SecureBoot)
	}
	t.Logf("event log: %d bytes, %d events; reset count %d", len(rep.EventLog), len(events), rep.ResetCount)
	if corpusMatches() {
		n := compareWithCorpus(t, events, "testdata/shim-sboff.eventlog.bin")
		t.Logf("%d events equal to the corpus capture", n)
	} else {
		t.Logf("packages differ from the corpus capture's: skipping the event-for-event comparison")
	}

	if agentAvailable() {
		return // TestAgentScenarios reboots a VM and checks the reset count
	}
	again := m.boot()
	if again == nil {
		t.Fatal("the second boot sent no probe report")
	}
	if again.ResetCount != rep.ResetCount+1 {
		t.Errorf("reset count after reboot = %d, want %d", again.ResetCount, rep.ResetCount+1)
	}
	// The firmware loads images at other addresses once the variable store
	// contains the first boot's boot options, so the event data may differ.
	// The measurements must not.
	checkReplay(t, again)
	for _, bank := range []string{"sha1", "sha256"} {
		for pcr := 0; pcr <= 9; pcr++ {
			if again.PCRs[bank][pcr] != rep.PCRs[bank][pcr] {
				t.Errorf("%s PCR %d after reboot = %s, first boot %s", bank, pcr, again.PCRs[bank][pcr], rep.PCRs[bank][pcr])
			}
		}
	}
}

// With Secure Boot on and the Microsoft keys enrolled, the signed shim,
// GRUB and kernel boot, and the guest reports Secure Boot on. The log
// equals the corpus capture except for the initrd.
func TestProbeBootSecureBootMicrosoft(t *testing.T) {
	harness(t)
	if agentAvailable() {
		t.Skip("TestAgentScenarios boots this configuration and checks the same")
	}
	m := newMachine(t, FirmwareSecureBootMicrosoft, filepath.Join(t.TempDir(), "ca"))
	m.install(GrubConfig{Title: corpusTitle, CmdLine: cmdline})
	rep := m.boot()
	if rep == nil {
		t.Fatal("the guest sent no probe report through the forward")
	}
	events := checkReplay(t, rep)
	if rep.SecureBoot != "on" {
		t.Errorf("guest reports Secure Boot %q, want on", rep.SecureBoot)
	}
	if corpusMatches() {
		n := compareWithCorpus(t, events, "testdata/shim-sbms.eventlog.bin")
		t.Logf("%d of %d events equal to the corpus capture", n, len(events))
	}
}

// GRUB's plain `linux` command with Secure Boot off skips the kernel's EFI
// stub: Linux exposes no event log although the firmware, shim and GRUB
// extended the PCRs.
func TestProbeBootLegacyLinux(t *testing.T) {
	harness(t)
	if agentAvailable() {
		t.Skip("TestAgentScenarios boots this configuration and checks the same")
	}
	m := newMachine(t, FirmwareSecureBootOff, filepath.Join(t.TempDir(), "ca"))
	m.install(GrubConfig{Title: corpusTitle, CmdLine: cmdline, Legacy: true})
	rep := m.boot()
	if rep == nil {
		t.Fatal("the guest sent no probe report through the forward")
	}
	if len(rep.EventLog) != 0 || !strings.Contains(rep.EventLogError, "no such file") {
		t.Errorf("guest read an event log of %d bytes (error %q), want none", len(rep.EventLog), rep.EventLogError)
	}
	if rep.TPMError != "" {
		t.Fatalf("guest could not read the TPM: %s", rep.TPMError)
	}
	zero := strings.Repeat("0", 64)
	for pcr := 0; pcr <= 9; pcr++ {
		if pcr != 6 && rep.PCRs["sha256"][pcr] == zero {
			t.Errorf("sha256 PCR %d is zero: the boot chain measured nothing", pcr)
		}
	}
}
