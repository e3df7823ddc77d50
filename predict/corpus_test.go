package predict

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vouch-attest/vouch/eventlog"
)

var debianChain struct {
	sync.Mutex
	p *Predictor
}

// predictDebianChain predicts the Debian shim, GRUB and kernel packages that
// the ovmf-swtpm boots used. The result is shared by the tests, because
// decompressing the kernel package takes tens of seconds.
func predictDebianChain(t *testing.T) *Predictor {
	t.Helper()
	debianChain.Lock()
	defer debianChain.Unlock()
	if debianChain.p != nil {
		return debianChain.p
	}
	p := NewPredictor()
	for _, d := range [][2]string{debShim, debGrub} {
		if err := p.AddPath(fetchDeb(t, d[0], d[1])); err != nil {
			t.Fatal(err)
		}
	}
	dir, pkg := unpackedDeb(t, debKernel[0], debKernel[1])
	if err := p.AddTreeOf(os.DirFS(dir), pkg); err != nil {
		t.Fatal(err)
	}
	debianChain.p = p
	return p
}

// findEvents returns the log events of one type in one PCR.
func findEvents(events []logEvent, pcr int, typ uint32) []logEvent {
	var out []logEvent
	for _, e := range events {
		if e.PCR == pcr && e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// refsOf returns the predicted references of one kind.
func refsOf(refs []Reference, kind Kind) []Reference {
	var out []Reference
	for _, r := range refs {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// requireMatch fails unless the event matches one of the references, and
// returns the one it matched.
func requireMatch(t *testing.T, e logEvent, refs []Reference) Reference {
	t.Helper()
	for _, r := range refs {
		if matches(e, r) {
			return r
		}
	}
	t.Fatalf("%s matches none of %d predicted references", describe(e), len(refs))
	return Reference{}
}

func TestBootApplicationsMatchCorpus(t *testing.T) {
	p := predictDebianChain(t)
	apps := refsOf(p.Prediction().References, KindBootApplication)

	cases := []struct {
		boot string
		want []string // component of each PCR 4 application event, in order
	}{
		// With Secure Boot off, shim does not verify (or measure) the
		// kernel that GRUB loads.
		{"shim-sboff", []string{"shimx64.efi", "grubx64.efi"}},
		{"shim-sbms", []string{"shimx64.efi", "grubx64.efi", "vmlinuz-6.1.0-57-amd64", "vmlinuz-6.1.0-57-amd64"}},
	}
	for _, c := range cases {
		t.Run(c.boot, func(t *testing.T) {
			events := findEvents(readTestLog(t, filepath.Join("testdata", "ovmf-swtpm", c.boot, "eventlog.bin")), 4, evEFIBootServicesApp)
			if len(events) != len(c.want) {
				t.Fatalf("log has %d boot application events, expected %d", len(events), len(c.want))
			}
			for i, e := range events {
				got := requireMatch(t, e, apps)
				if got.Component != c.want[i] {
					t.Errorf("%s matched %s, expected %s", describe(e), got.Component, c.want[i])
				}
				if len(e.Digests) != 2 {
					t.Errorf("%s: compared %d banks, expected sha1 and sha256", describe(e), len(e.Digests))
				}
			}
		})
	}

	// The shell boot loads the kernel's EFI stub straight from the UEFI
	// Shell: its second application event is the kernel.
	events := findEvents(readTestLog(t, filepath.Join("testdata", "ovmf-swtpm", "shell-sboff", "eventlog.bin")), 4, evEFIBootServicesApp)
	if got := requireMatch(t, events[len(events)-1], apps); got.Component != "vmlinuz-6.1.0-57-amd64" {
		t.Errorf("shell boot: last application matched %s, expected the kernel", got.Component)
	}
}

func TestShimMeasurementsMatchCorpus(t *testing.T) {
	p := predictDebianChain(t)
	refs := p.Prediction().References
	for _, boot := range []string{"shim-sboff", "shim-sbms"} {
		t.Run(boot, func(t *testing.T) {
			events := readTestLog(t, filepath.Join("testdata", "ovmf-swtpm", boot, "eventlog.bin"))
			moks := findEvents(events, 14, evIPL)
			if len(moks) != 3 {
				t.Fatalf("log has %d PCR 14 events, expected MokList, MokListX and MokListTrusted", len(moks))
			}
			for _, e := range moks {
				got := requireMatch(t, e, refsOf(refs, KindShimVariable))
				if got.Event+"\x00" != string(e.Data) {
					t.Errorf("%s matched %s", describe(e), got.Event)
				}
			}

			authorities := findEvents(events, 7, evEFIVariableAuthority)
			var sbat, vendor int
			for _, e := range authorities {
				for _, r := range refs {
					if !matches(e, r) {
						continue
					}
					switch r.Kind {
					case KindShimVariable:
						if r.Event == "SbatLevel" {
							sbat++
						}
					case KindVariableAuthority:
						vendor++
					}
				}
			}
			if sbat != 1 {
				t.Errorf("%d SbatLevel events matched a prediction, expected 1", sbat)
			}
			// Only with Secure Boot on does shim verify GRUB and log the
			// vendor certificate as the authority.
			wantVendor := 0
			if boot == "shim-sbms" {
				wantVendor = 1
			}
			if vendor != wantVendor {
				t.Errorf("%d vendor certificate authority events matched, expected %d", vendor, wantVendor)
			}
		})
	}
}

func TestSecureBootVariablesMatchCorpus(t *testing.T) {
	deb := fetchDeb(t, debOVMF[0], debOVMF[1])
	cases := []struct {
		boot, store string
		authorities int
	}{
		{"shim-sboff", "usr/share/OVMF/OVMF_VARS_4M.fd", 0},
		{"shim-sbms", "usr/share/OVMF/OVMF_VARS_4M.ms.fd", 1},
	}
	for _, c := range cases {
		t.Run(c.boot, func(t *testing.T) {
			vars, err := ParseOVMFVariables(extractDebFile(t, deb, c.store))
			if err != nil {
				t.Fatal(err)
			}
			refs, err := SecureBootReferences(vars, AllBanks)
			if err != nil {
				t.Fatal(err)
			}
			events := readTestLog(t, filepath.Join("testdata", "ovmf-swtpm", c.boot, "eventlog.bin"))
			config := findEvents(events, 7, evEFIVariableDriverConf)
			if len(config) != 5 {
				t.Fatalf("log has %d PCR 7 configuration events, expected 5", len(config))
			}
			for i, e := range config {
				if !matches(e, refs[i]) {
					t.Errorf("%s does not match predicted %s %s", describe(e), refs[i].Component, refs[i].Digests[SHA256])
				}
			}
			// The firmware logs the db certificate that verified shim.
			matched := 0
			for _, e := range findEvents(events, 7, evEFIVariableAuthority) {
				for _, r := range refsOf(refs, KindVariableAuthority) {
					if matches(e, r) {
						matched++
						if r.Component != "Microsoft Corporation UEFI CA 2011" {
							t.Errorf("%s matched %s, expected the Microsoft UEFI CA", describe(e), r.Component)
						}
					}
				}
			}
			if matched != c.authorities {
				t.Errorf("%d db authority events matched, expected %d", matched, c.authorities)
			}
		})
	}
}

func TestGrubMeasurementsMatchCorpus(t *testing.T) {
	p := predictDebianChain(t)
	initrd := filepath.Join(corpusDir(t), "ovmf-swtpm", "initrd.img")
	if _, err := os.Stat(initrd); err != nil {
		t.Skipf("corpus initrd missing: %v", err)
	}
	var kernel Digests
	for _, a := range p.Artifacts() {
		if a.Role == RoleKernel {
			kernel = a.FileDigests
		}
	}
	if kernel == nil {
		t.Fatal("kernel package yielded no kernel artifact")
	}
	embedded, err := os.ReadFile(filepath.Join("testdata", "debian-grub-memdisk.cfg"))
	if err != nil {
		t.Fatal(err)
	}

	for _, boot := range []string{"shim-sboff", "shim-sbms"} {
		t.Run(boot, func(t *testing.T) {
			sim := &GrubSimulation{
				Files: &GrubFileMap{
					Files: map[string]string{
						"/EFI/debian/grub.cfg": filepath.Join("testdata", "ovmf-swtpm", "grub.cfg"),
						"/initrd.img":          initrd,
					},
					Known: map[string]Digests{"/vmlinuz": kernel},
				},
				Banks: AllBanks,
				Vars:  map[string]string{"prefix": "(hd0,gpt1)/EFI/debian", "root": "hd0,gpt1"},
			}
			if err := sim.Run(string(embedded)); err != nil {
				t.Fatal(err)
			}
			if err := sim.Boot(); err != nil {
				t.Fatal(err)
			}
			predicted := sim.References()

			var logged []logEvent
			for _, e := range readTestLog(t, filepath.Join("testdata", "ovmf-swtpm", boot, "eventlog.bin")) {
				if (e.PCR == 8 || e.PCR == 9) && e.Type == evIPL {
					logged = append(logged, e)
				}
			}
			if len(logged) != len(predicted) {
				for _, r := range predicted {
					t.Logf("predicted PCR %d %s", r.PCR, r.Event)
				}
				t.Fatalf("log has %d GRUB events, predicted %d", len(logged), len(predicted))
			}
			for i, e := range logged {
				r := predicted[i]
				if e.PCR != r.PCR || !matches(e, r) {
					t.Errorf("%s: predicted PCR %d %q %s", describe(e), r.PCR, r.Event, r.Digests[SHA256])
				}
				if r.Kind != KindGrubFile && string(e.Data) != r.Event+"\x00" {
					t.Errorf("%s: predicted event text %q", describe(e), r.Event)
				}
			}
		})
	}
}

// TestWholeBootMatchesCorpus predicts a whole boot the way a publisher
// would, from packages, the firmware's variable store and the GRUB
// configuration. Every event that these inputs decide (PCRs 4, 7, 8, 9 and
// 14, the separators and the fixed EFI actions) must match a reference of
// the same PCR and event type.
func TestWholeBootMatchesCorpus(t *testing.T) {
	chain := predictDebianChain(t)
	initrd := filepath.Join(corpusDir(t), "ovmf-swtpm", "initrd.img")
	ovmf := fetchDeb(t, debOVMF[0], debOVMF[1])
	embedded, err := os.ReadFile(filepath.Join("testdata", "debian-grub-memdisk.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	var kernel Digests
	for _, a := range chain.Artifacts() {
		if a.Role == RoleKernel {
			kernel = a.FileDigests
		}
	}
	firmware, err := FirmwareConstants(AllBanks)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct{ boot, store string }{
		{"shim-sboff", "usr/share/OVMF/OVMF_VARS_4M.fd"},
		{"shim-sbms", "usr/share/OVMF/OVMF_VARS_4M.ms.fd"},
	}
	for _, c := range cases {
		t.Run(c.boot, func(t *testing.T) {
			refs := append([]Reference(nil), chain.Prediction().References...)
			refs = append(refs, firmware...)
			vars, err := ParseOVMFVariables(extractDebFile(t, ovmf, c.store))
			if err != nil {
				t.Fatal(err)
			}
			sb, err := SecureBootReferences(vars, AllBanks)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, sb...)
			sim := &GrubSimulation{
				Files: &GrubFileMap{
					Files: map[string]string{
						"/EFI/debian/grub.cfg": filepath.Join("testdata", "ovmf-swtpm", "grub.cfg"),
						"/initrd.img":          initrd,
					},
					Known: map[string]Digests{"/vmlinuz": kernel},
				},
				Banks: AllBanks,
				Vars:  map[string]string{"prefix": "(hd0,gpt1)/EFI/debian"},
			}
			if err := sim.Run(string(embedded)); err != nil {
				t.Fatal(err)
			}
			if err := sim.Boot(); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, sim.References()...)

			checked := 0
			for _, e := range readTestLog(t, filepath.Join("testdata", "ovmf-swtpm", c.boot, "eventlog.bin")) {
				typ := eventlog.EventType(e.Type)
				decided := e.PCR == 4 || e.PCR == 7 || e.PCR == 8 || e.PCR == 9 || e.PCR == 14 ||
					typ == eventlog.EV_SEPARATOR || typ == eventlog.EV_EFI_ACTION
				if !decided {
					continue
				}
				checked++
				found := false
				for _, r := range refs {
					if r.PCR == e.PCR && r.EventType == typ.String() && matches(e, r) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("%s (%s) matches no prediction", describe(e), typ)
				}
			}
			if checked < 30 {
				t.Errorf("checked %d events, expected the 36 or 40 that the artifacts decide", checked)
			}
			t.Logf("%s: %d events checked", c.boot, checked)
		})
	}
}
