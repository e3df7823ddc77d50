package predict

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

// replay extends a zeroed PCR with each reference's digest in one bank.
func replay(t *testing.T, refs []Reference, bank Bank) []byte {
	t.Helper()
	h, err := bank.Hash()
	if err != nil {
		t.Fatal(err)
	}
	pcr := make([]byte, h.Size())
	for _, r := range refs {
		x := h.New()
		x.Write(pcr)
		x.Write(r.Digests[bank])
		pcr = x.Sum(nil)
	}
	return pcr
}

// TestUKIMatchesSystemdMeasure builds a UKI and compares the PCR 11 value
// its predicted events replay to with systemd-measure's calculation from
// the same section files.
func TestUKIMatchesSystemdMeasure(t *testing.T) {
	measure := "/usr/lib/systemd/systemd-measure"
	if _, err := os.Stat(measure); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: .ci/run installs systemd", measure)
		}
		t.Skipf("%s not found: apt-get install systemd", measure)
	}
	head, err := os.ReadFile(filepath.Join("testdata", "pe", "vmlinuz.head"))
	if err != nil {
		t.Fatal(err)
	}
	sections := []testSection{
		// Out of systemd's order on purpose: the stub measures in its own.
		{".cmdline", 0, []byte("console=ttyS0 root=/dev/vda1")},
		{".linux", 0, head},
		{".osrel", 0, []byte("ID=debian\nVERSION_ID=12\n")},
		{".initrd", 0, bytes.Repeat([]byte("initrd"), 100)},
		{".text", 0, []byte("stub code, not measured")},
	}
	dir := t.TempDir()
	args := []string{"calculate", "--phase=", "--bank=sha1", "--bank=sha256", "--bank=sha384"}
	for i := range sections {
		s := &sections[i]
		s.virtualSize = uint32(len(s.data))
		if s.name == ".text" {
			continue
		}
		file := filepath.Join(dir, strings.TrimPrefix(s.name, "."))
		if err := os.WriteFile(file, s.data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--"+strings.TrimPrefix(s.name, ".")+"="+file)
	}
	img := buildPE(t, peSpec{sections: sections})
	pe, err := ParsePE(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if !IsUKI(pe) {
		t.Fatal("image with .linux is not recognized as a UKI")
	}
	refs, err := UKIReferences(pe, "test.efi", AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 8 {
		t.Fatalf("predicted %d events, expected a name and a contents event for 4 sections", len(refs))
	}
	if refs[0].Event != ".linux" || refs[2].Event != ".osrel" || refs[4].Event != ".cmdline" || refs[6].Event != ".initrd" {
		t.Errorf("measurement order %s %s %s %s, expected systemd's", refs[0].Event, refs[2].Event, refs[4].Event, refs[6].Event)
	}

	out, err := exec.Command(measure, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-measure: %v: %s", err, out)
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		bankName, value, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "11:"), "=")
		if !ok || !strings.HasPrefix(sc.Text(), "11:") {
			continue
		}
		want, err := hex.DecodeString(value)
		if err != nil {
			t.Fatal(err)
		}
		got := replay(t, refs, Bank(bankName))
		if !bytes.Equal(got, want) {
			t.Errorf("PCR 11 %s: predicted events replay to %x, systemd-measure computes %x", bankName, got, want)
		}
		seen++
	}
	if seen != 3 {
		t.Fatalf("systemd-measure printed %d banks, expected 3:\n%s", seen, out)
	}
}

// TestUKISectionNamesMatchLog checks the section name events of a real
// systemd-stub boot (a Gentoo laptop) against the predicted name digests.
func TestUKISectionNamesMatchLog(t *testing.T) {
	img := buildPE(t, peSpec{sections: []testSection{
		{".linux", 1, []byte{0}}, {".osrel", 1, []byte{0}}, {".cmdline", 1, []byte{0}}, {".initrd", 1, []byte{0}},
	}})
	pe, err := ParsePE(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	refs, err := UKIReferences(pe, "uki", AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Reference{}
	for _, r := range refs {
		if r.Note == "section name" {
			names[r.Event] = r
		}
	}
	checked := 0
	for _, e := range readTestLog(t, filepath.Join("testdata", "eventlogs", "hahuri-uki.bin")) {
		if e.PCR != 11 || len(e.Data)%2 != 0 {
			continue
		}
		units := make([]uint16, 0, len(e.Data)/2)
		for i := 0; i+1 < len(e.Data); i += 2 {
			if u := uint16(e.Data[i]) | uint16(e.Data[i+1])<<8; u != 0 {
				units = append(units, u)
			}
		}
		name := string(utf16.Decode(units))
		r, ok := names[name]
		if !ok {
			t.Fatalf("%s: unexpected section %q", describe(e), name)
		}
		// Each section logs its name, then its contents under the same
		// description; only the first of each pair is the name.
		if matches(e, r) {
			checked++
		}
	}
	if checked != 4 {
		t.Errorf("%d section name events matched, expected 4", checked)
	}
}

func TestStubCmdlineIsUTF16WithNUL(t *testing.T) {
	ref, err := StubCmdlineReference("quiet", []Bank{SHA256})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hashBytes([]Bank{SHA256}, []byte("q\x00u\x00i\x00e\x00t\x00\x00\x00"))
	if !bytes.Equal(ref.Digests[SHA256], want[SHA256]) || ref.PCR != 12 {
		t.Errorf("PCR %d digest %x, expected PCR 12 and %x", ref.PCR, ref.Digests[SHA256], want[SHA256])
	}
}
