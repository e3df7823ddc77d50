package bundle

import (
	"os"
	"strings"
	"testing"
)

func TestImportPCRLock(t *testing.T) {
	data, err := os.ReadFile("testdata/350-action-efi-application.pcrlock")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ImportPCRLock(PCRLockName("testdata/350-action-efi-application.pcrlock"), data, KindAction)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "350-action-efi-application" || c.Kind != KindAction || len(c.Values) != 1 {
		t.Fatalf("component = %+v", c)
	}
	v := c.Values[0]
	// SHA-256 of "Calling EFI Application from Boot Option", the
	// EV_EFI_ACTION event UEFI firmware logs before starting a boot option.
	if v.PCR != 4 || v.Digests["sha256"].String() != "3d6772b4f84ed47595d72a2c4c5ffd15f5bb72c7507fe26f2aaee2c69d5633ba" {
		t.Errorf("value = %+v", v)
	}

	// Without an explicit kind, PCR 4 records become boot applications.
	c, err = ImportPCRLock("x", data, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != KindBootApplication {
		t.Errorf("kind = %s, want boot-application", c.Kind)
	}
}

func TestPCRLockName(t *testing.T) {
	tests := map[string]string{
		"/var/lib/pcrlock.d/250-firmware-code-early.pcrlock":                    "250-firmware-code-early",
		"/usr/lib/pcrlock.d/650-kernel.pcrlock.d/6.5.5-200.fc38.x86_64.pcrlock": "650-kernel/6.5.5-200.fc38.x86_64",
	}
	for path, want := range tests {
		if got := PCRLockName(path); got != want {
			t.Errorf("PCRLockName(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestImportPCRLockRejects(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"no records", `{"records":[]}`, "has no records"},
		{"missing pcr", `{"records":[{"digests":[{"hashAlg":"sha1","digest":"` + strings.Repeat("00", 20) + `"}]}]}`, "pcr is missing"},
		{"pcr 30", `{"records":[{"pcr":30,"digests":[{"hashAlg":"sha1","digest":"` + strings.Repeat("00", 20) + `"}]}]}`, "pcr 30 is outside"},
		{"no digests", `{"records":[{"pcr":4,"digests":[]}]}`, "value has no digests"},
		{"unknown bank", `{"records":[{"pcr":4,"digests":[{"hashAlg":"md5","digest":"00"}]}]}`, `bank "md5" is not supported`},
		{"short digest", `{"records":[{"pcr":4,"digests":[{"hashAlg":"sha256","digest":"00"}]}]}`, "sha256 digest is 1 bytes"},
		{"two sha1", `{"records":[{"pcr":4,"digests":[{"hashAlg":"sha1","digest":"` + strings.Repeat("00", 20) + `"},{"hashAlg":"sha1","digest":"` + strings.Repeat("11", 20) + `"}]}]}`, "two sha1 digests"},
		{"duplicate member", `{"records":[],"records":[]}`, `duplicate member "records"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ImportPCRLock("t", []byte(tt.json), "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzImportPCRLock(f *testing.F) {
	data, err := os.ReadFile("testdata/350-action-efi-application.pcrlock")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ImportPCRLock("f", data, "")
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("imported component is invalid: %v", err)
		}
	})
}
