package eventlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadTestLog(t *testing.T, name string) *Log {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
	if err != nil {
		t.Fatal(err)
	}
	log, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return log
}

// TestDecodeRealEvents decodes one real event of each decoded type and
// checks its fields.
func TestDecodeRealEvents(t *testing.T) {
	tests := []struct {
		log   string
		event int
		typ   EventType
		check func(t *testing.T, d EventData)
	}{
		{"go-eventlog/rhel8-uefi.bin", 0, EV_NO_ACTION, func(t *testing.T, d EventData) {
			s := d.(*SpecIDEvent)
			if len(s.Algorithms) != 3 || s.Algorithms[2] != (AlgorithmSize{SHA384, 48}) || s.VersionMajor != 2 {
				t.Errorf("spec ID = %+v, want spec 2 with sha1, sha256, sha384", s)
			}
		}},
		{"go-eventlog/glinux-alex.bin", 1, EV_NO_ACTION, func(t *testing.T, d EventData) {
			if l := d.(*StartupLocality); l.Locality != 3 {
				t.Errorf("locality = %d, want 3", l.Locality)
			}
		}},
		{"go-tpm-tools/eventlogwithsp800155.bin", 1, EV_NO_ACTION, func(t *testing.T, d EventData) {
			if s := d.(*NoAction).Signature; s != "SP800-155 Event3" {
				t.Errorf("signature = %q, want SP800-155 Event3", s)
			}
		}},
		{"guard-oss/windows_event_log", 34, EV_NO_ACTION, func(t *testing.T, d EventData) {
			_ = d.(*NoAction)
		}},
		{"go-eventlog/rhel8-uefi.bin", 8, EV_SEPARATOR, func(t *testing.T, d EventData) {
			if s := d.(*Separator); s.Value != 0 || s.Error {
				t.Errorf("separator = %+v, want value 0", s)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 13, EV_EFI_ACTION, func(t *testing.T, d EventData) {
			if a := d.(*Action); a.Text != "Calling EFI Application from Boot Option" {
				t.Errorf("action = %q", a.Text)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 3, EV_EFI_VARIABLE_DRIVER_CONFIG, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "SecureBoot" || v.VendorGUID != EFIGlobalVariable || !v.IsSecureBootEnabled() {
				t.Errorf("variable = %s %s enabled %v, want SecureBoot enabled", v.VendorGUID, v.Name, v.Enabled)
			}
		}},
		{"go-eventlog/arch-linux-workstation.bin", 4, EV_EFI_VARIABLE_DRIVER_CONFIG, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "PK" || len(v.SignatureLists) != 1 || v.SignatureLists[0].Type != CertX509GUID || !v.SignatureLists[0].Signatures[0].X509 {
				t.Errorf("PK = %+v, want one X.509 signature list", v.SignatureLists)
			}
		}},
		{"go-eventlog/arch-linux-workstation.bin", 7, EV_EFI_VARIABLE_DRIVER_CONFIG, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "dbx" || len(v.SignatureLists) != 1 || v.SignatureLists[0].Type != CertSHA256GUID || len(v.SignatureLists[0].Signatures) != 77 {
				t.Errorf("dbx has %d lists, want one SHA-256 list of 77 entries", len(v.SignatureLists))
			}
			if got := len(v.SignatureLists[0].Signatures[0].Data); got != 32 {
				t.Errorf("dbx entry is %d bytes, want 32", got)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 9, EV_EFI_VARIABLE_BOOT, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "BootOrder" || len(v.BootOrder) != 3 || v.BootOrder[0] != 2 {
				t.Errorf("BootOrder = %v, want [2 0 1]", v.BootOrder)
			}
		}},
		{"go-eventlog/arch-linux-workstation.bin", 19, EV_EFI_VARIABLE_BOOT, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "Boot0000" || v.LoadOption == nil || v.LoadOption.Description != "Linux Boot Manager" {
				t.Fatalf("Boot0000 = %+v, want the Linux Boot Manager load option", v.LoadOption)
			}
			if p := v.LoadOption.DevicePath.String(); !strings.HasPrefix(p, "HD(1,GPT,1a504613-19b5-4b44-a83d-d926d40daa1c,0x800,0x80000)/") {
				t.Errorf("device path = %s", p)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 21, EV_EFI_VARIABLE_AUTHORITY, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "db" || v.Authority == nil || !v.Authority.X509 || len(v.Authority.Data) != 1556 {
				t.Errorf("authority = %+v, want a 1556-byte X.509 db entry", v.Authority)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 27, EV_EFI_VARIABLE_AUTHORITY, func(t *testing.T, d EventData) {
			// shim 15 logs its vendor certificate as bare DER, with no
			// EFI_SIGNATURE_DATA owner GUID before it.
			v := d.(*EFIVariable)
			if v.Name != "Shim" || v.Authority == nil || !v.Authority.NoOwner || !v.Authority.X509 || len(v.Authority.Data) != 920 || v.Authority.Data[0] != 0x30 {
				t.Errorf("authority = %+v, want the whole 920-byte certificate without an owner", v.Authority)
			}
		}},
		{"go-eventlog/cos-85-amd-sev.bin", 24, EV_EFI_VARIABLE_AUTHORITY, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "db" || v.Authority == nil || !v.Authority.NoOwner || len(v.Authority.Data) != len(v.Data) {
				t.Errorf("authority = %+v, want the whole variable data as a certificate without an owner", v.Authority)
			}
		}},
		{"go-attestation/coreos_36_shielded_vm_no_secure_boot_eventlog", 25, EV_EFI_VARIABLE_AUTHORITY, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "SbatLevel" || v.Authority != nil || !strings.HasPrefix(v.Text, "sbat,1,2021030218") {
				t.Errorf("SbatLevel = %+v, want text sbat,1,2021030218 and no authority", v)
			}
		}},
		{"go-attestation/coreos_36_shielded_vm_no_secure_boot_eventlog", 26, EV_EFI_VARIABLE_AUTHORITY, func(t *testing.T, d EventData) {
			v := d.(*EFIVariable)
			if v.Name != "MokListTrusted" || v.Authority != nil || v.Enabled == nil || !*v.Enabled {
				t.Errorf("MokListTrusted = %+v, want enabled and no authority", v)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 22, EV_EFI_GPT_EVENT, func(t *testing.T, d EventData) {
			g := d.(*GPT)
			if g.DiskGUID.String() != "2aeb90b6-e13c-4197-8ee2-59e9ed2959dc" || len(g.Partitions) != 2 {
				t.Errorf("GPT disk %s with %d partitions", g.DiskGUID, len(g.Partitions))
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 23, EV_EFI_BOOT_SERVICES_APPLICATION, func(t *testing.T, d EventData) {
			if f := d.(*ImageLoad).DevicePath.File(); f != `\EFI\redhat\shimx64.efi` {
				t.Errorf("image = %q", f)
			}
		}},
		{"go-eventlog/glinux-alex.bin", 13, EV_EFI_BOOT_SERVICES_DRIVER, func(t *testing.T, d EventData) {
			if p := d.(*ImageLoad).DevicePath.String(); p != "PciRoot(0x2)/Pci(0x0,0x0)/Pci(0x0,0x0)/Offset(0xf050,0x1f9ff)" {
				t.Errorf("device path = %s", p)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 28, EV_IPL, func(t *testing.T, d EventData) {
			if i := d.(*IPL); i.Text != "grub_cmd set pager=1" || !i.TrailingNUL || i.UTF16 {
				t.Errorf("IPL = %+v, want the GRUB command with a trailing NUL", i)
			}
		}},
		{"tpm2-tss/binary_measurements_hcrtm.bin", 25, EV_IPL, func(t *testing.T, d EventData) {
			if i := d.(*IPL); i.Text != "(hd0,gpt1)/boot/grub/x86_64-efi/normal.mod" {
				t.Errorf("IPL = %q", i.Text)
			}
		}},
		{"go-eventlog/arch-linux-workstation.bin", 24, EV_IPL, func(t *testing.T, d EventData) {
			if i := d.(*IPL); !i.UTF16 || !strings.HasPrefix(i.Text, `initrd=\intel-ucode.img`) {
				t.Errorf("IPL = %+v, want the UTF-16 systemd-boot command line", i)
			}
		}},
		{"tpmtool/binary_bios_measurements_tpm12_bios", 25, EV_IPL, func(t *testing.T, d EventData) {
			if i := d.(*IPL); i.Text != "" {
				t.Errorf("zero-length IPL = %q, want empty", i.Text)
			}
		}},
		{"go-eventlog/rhel8-uefi.bin", 1, EV_S_CRTM_VERSION, func(t *testing.T, d EventData) {
			if v := d.(*SCRTMVersion); v.Version != "GCE Virtual Firmware v1" || v.GUID != nil {
				t.Errorf("version = %+v", v)
			}
		}},
		{"go-eventlog/glinux-alex.bin", 5, EV_S_CRTM_VERSION, func(t *testing.T, d EventData) {
			if v := d.(*SCRTMVersion); v.GUID == nil || v.Version != "546bfb1e-1d0c-4055-a4ad-4ef4bf17b83a" {
				t.Errorf("version = %+v, want a GUID", v)
			}
		}},
		{"go-tpm-tools/gdc-host.bin", 2, EV_S_CRTM_CONTENTS, func(t *testing.T, d EventData) {
			if s := d.(*Text); s.Text != "Boot Guard Measured S-CRTM" {
				t.Errorf("contents = %q", s.Text)
			}
		}},
		{"go-tpm-tools/gdc-host.bin", 4, EV_EFI_PLATFORM_FIRMWARE_BLOB, func(t *testing.T, d EventData) {
			if b := d.(*FirmwareBlob); b.Base != 0xffdc0000 || b.Length != 0x230000 {
				t.Errorf("blob = %+v", b)
			}
		}},
		{"go-eventlog/glinux-alex.bin", 6, EV_POST_CODE, func(t *testing.T, d EventData) {
			if b := d.(*FirmwareBlob); b.Base != 0xff130000 || b.Length != 0xa80000 {
				t.Errorf("blob = %+v", b)
			}
		}},
		{"go-tpm-tools/gdc-host.bin", 16, EV_POST_CODE, func(t *testing.T, d EventData) {
			if s := d.(*Text); s.Text != "ACPI DATA" {
				t.Errorf("post code = %q", s.Text)
			}
		}},
		{"go-eventlog/ccel/cos-113-intel-tdx.bin", 2, EV_EFI_PLATFORM_FIRMWARE_BLOB2, func(t *testing.T, d EventData) {
			if b := d.(*FirmwareBlob); !strings.HasPrefix(b.Description, "Fv(") || b.Base != 0xffe00000 {
				t.Errorf("blob = %+v", b)
			}
		}},
		{"tpm2-tss/binary_measurements_hcrtm.bin", 11, EV_EFI_HANDOFF_TABLES, func(t *testing.T, d EventData) {
			h := d.(*HandoffTables)
			if len(h.Tables) != 1 || h.Tables[0].VendorGUID.String() != "f2fd1544-9794-4a2c-992e-e5bbcf20e394" {
				t.Errorf("tables = %+v, want the SMBIOS 3 table", h.Tables)
			}
		}},
		{"go-eventlog/ccel/cos-113-intel-tdx.bin", 1, EV_EFI_HANDOFF_TABLES2, func(t *testing.T, d EventData) {
			if h := d.(*HandoffTables); h.Description != "TdxTable" || len(h.Tables) != 1 {
				t.Errorf("tables = %+v", h)
			}
		}},
		{"tpm2-tss/binary_measurements_hcrtm.bin", 1, EV_EFI_HCRTM_EVENT, func(t *testing.T, d EventData) {
			if h := d.(*HCRTM); h.Text != "HCRTM" {
				t.Errorf("H-CRTM = %q", h.Text)
			}
		}},
		{"go-tpm-tools/gdc-host.bin", 155, EV_EVENT_TAG, func(t *testing.T, d EventData) {
			_ = d.(*Opaque)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.log+"/"+tt.typ.String(), func(t *testing.T) {
			log := loadTestLog(t, tt.log)
			e := log.Events[tt.event]
			if e.Type != tt.typ {
				t.Fatalf("event %d type = %s, want %s", tt.event, e.Type, tt.typ)
			}
			decoded := log.DecodeAll()[tt.event]
			if one := e.Decode(); one.Kind() != decoded.Kind() {
				t.Fatalf("event %d: Decode gives %T, DecodeAll %T", tt.event, one, decoded)
			}
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("event %d decoded as %T: %v", tt.event, decoded, r)
				}
			}()
			tt.check(t, decoded)
		})
	}
}

func TestWindowsEventNotExtended(t *testing.T) {
	log := loadTestLog(t, "guard-oss/windows_event_log")
	last := log.Events[len(log.Events)-1]
	if last.PCR != 0xFFFFFFFF || last.Type != EV_NO_ACTION {
		t.Fatalf("last event is %s for PCR %d, want EV_NO_ACTION for 0xFFFFFFFF", last.Type, last.PCR)
	}
	if _, err := Replay(log); err != nil {
		t.Errorf("Replay: %v", err)
	}
}

func TestSHA1LogFromTPM2(t *testing.T) {
	log := loadTestLog(t, "go-eventlog/debian-10.bin")
	if log.Format != FormatSHA1 || len(log.Banks) != 1 || log.Banks[0] != SHA1 {
		t.Fatalf("format %s banks %v, want a SHA-1 log", log.Format, log.Banks)
	}
	values, err := Replay(log)
	if err != nil {
		t.Fatal(err)
	}
	quoted := PCRValues{SHA1: {0: values[SHA1][0]}, SHA256: {0: make([]byte, 32)}}
	quoted[SHA256][0][0] = 1
	res, err := Verify(log, quoted, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := res.VerifiedBanks(); len(got) != 1 || got[0] != SHA1 {
		t.Errorf("verified banks = %v, want [sha1]", got)
	}
	if res.Banks[1].Bank != SHA256 || res.Banks[1].Status != BankNotInLog {
		t.Errorf("sha256 bank = %+v, want not-in-log", res.Banks[1])
	}
}

func TestLargeLog(t *testing.T) {
	log := loadTestLog(t, "go-attestation/option_rom_eventlog")
	if n := len(log.Events); n < 50 {
		t.Fatalf("%d events", n)
	}
	// Repeat the events of a real log past 64 KiB and thousands of events.
	raw, err := os.ReadFile(filepath.Join("testdata", "corpus", "HIRS", "TpmLogSHA1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	first := loadTestLog(t, "HIRS/TpmLogSHA1.bin")
	body := raw[first.Events[1].Offset:]
	big := append([]byte(nil), raw...)
	for len(big) < 4<<20 {
		big = append(big, body...)
	}
	log, err = Parse(big)
	if err != nil {
		t.Fatalf("Parse of %d bytes: %v", len(big), err)
	}
	if len(log.Events) < 5000 {
		t.Errorf("%d events, want thousands", len(log.Events))
	}
	if _, err := Replay(log); err != nil {
		t.Errorf("Replay: %v", err)
	}
}
