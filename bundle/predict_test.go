package bundle

import (
	"os"
	"strings"
	"testing"
)

func TestFromPrediction(t *testing.T) {
	data, err := os.ReadFile("testdata/predict-debian-12-shim-sbms.json")
	if err != nil {
		t.Fatal(err)
	}
	comps, err := FromPrediction(data)
	if err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]*Component)
	for i := range comps {
		byName[comps[i].Name+"/"+string(comps[i].Kind)] = &comps[i]
	}
	grub := byName["grubx64.efi/boot-application"]
	if grub == nil || grub.Source != "grub-efi-amd64-signed 1+2.06+13+deb12u2" || len(grub.Values) != 1 {
		t.Fatalf("grubx64.efi = %+v", grub)
	}
	if got := grub.Values[0].Digests["sha256"].String(); got != "a68f6d71ebddaa19751ff8d729f67d11b0df8e4c49400c3e7e90de16119e1265" {
		t.Errorf("grubx64.efi sha256 = %s", got)
	}
	sbat := byName["shimx64.efi SbatLevel/shim-variable"]
	if sbat == nil || len(sbat.Values) != 3 || sbat.Values[0].PCR != 7 {
		t.Errorf("SbatLevel = %+v, want three PCR 7 values", sbat)
	}
	cmds := byName["grub command/grub-command"]
	if cmds == nil || len(cmds.Values) != 10 {
		t.Fatalf("grub commands = %+v", cmds)
	}
	if got := cmds.Values[4].Data; got != "grub_cmd: set timeout=0" {
		t.Errorf("grub command 4 data = %q", got)
	}

	// The components make a valid bundle.
	b := &Bundle{Schema: SchemaV1, Publisher: "p", Product: "debian", Version: "12", NotBefore: inPeriod, NotAfter: inPeriod.AddDate(1, 0, 0), Components: comps}
	if _, err := b.Marshal(); err != nil {
		t.Error(err)
	}
}

func TestFromPredictionRejects(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"version 2", `{"version":2,"references":[]}`, "prediction version 2 is not supported"},
		{"no references", `{"version":1,"references":[]}`, "no references"},
		{"unknown kind", `{"version":1,"references":[{"kind":"tpm-nv","pcr":4,"component":"x","digests":{"sha1":"` + strings.Repeat("00", 20) + `"}}]}`, `kind "tpm-nv" has no bundle kind`},
		{"bad digest", `{"version":1,"references":[{"kind":"grub-file","pcr":9,"component":"x","digests":{"sha256":"00"}}]}`, "sha256 digest is 1 bytes"},
		{"pcr 40", `{"version":1,"references":[{"kind":"grub-file","pcr":40,"component":"x","digests":{"sha1":"` + strings.Repeat("00", 20) + `"}}]}`, "pcr 40 is outside"},
		{"not json", `version: 1`, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromPrediction([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzFromPrediction(f *testing.F) {
	data, err := os.ReadFile("testdata/predict-debian-12-shim-sbms.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	// A small seed lets mutations reach the per-reference checks sooner
	// than edits of the 18 KB prediction above.
	f.Add([]byte(`{"version":1,"references":[{"kind":"grub-command","pcr":8,"component":"grub command","event":"grub_cmd: set timeout=0","digests":{"sha1":"` + strings.Repeat("ab", 20) + `"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		comps, err := FromPrediction(data)
		if err != nil {
			return
		}
		for i := range comps {
			if err := comps[i].Validate(); err != nil {
				t.Fatalf("component %d is invalid: %v", i, err)
			}
		}
	})
}
