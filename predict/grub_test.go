package predict

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGrubFormsMatchCorpusLogs checks every GRUB command and kernel command
// line event of two logs against the digest its text predicts: RHEL 8's
// Red Hat GRUB 2.02 (sha1, sha256) and Ubuntu 21.04's GRUB 2.04 (sha1,
// sha256, sha384).
func TestGrubFormsMatchCorpusLogs(t *testing.T) {
	cases := []struct {
		log        string
		form       GrubForm
		cmdPrefix  string
		linePrefix string
		wantBanks  int
	}{
		{"rhel8-uefi.bin", GrubRHBoot, "grub_cmd ", "grub_kernel_cmdline ", 3},
		{"ubuntu-2104-no-secure-boot.bin", GrubUpstream, "grub_cmd: ", "kernel_cmdline: ", 3},
	}
	for _, c := range cases {
		t.Run(c.log, func(t *testing.T) {
			commands, cmdlines := 0, 0
			for _, e := range readTestLog(t, filepath.Join("testdata", "eventlogs", c.log)) {
				if e.PCR != 8 || e.Type != evIPL {
					continue
				}
				text := string(bytes.TrimSuffix(e.Data, []byte{0}))
				var ref Reference
				var err error
				switch {
				case strings.HasPrefix(text, c.cmdPrefix):
					ref, err = GrubCommandReference(strings.TrimPrefix(text, c.cmdPrefix), c.form, AllBanks)
					commands++
				case strings.HasPrefix(text, c.linePrefix):
					ref, err = grubCmdlineReference(strings.TrimPrefix(text, c.linePrefix), c.form, AllBanks)
					cmdlines++
				default:
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if !matches(e, ref) {
					t.Errorf("%s: predicted %s", describe(e), ref.Digests[SHA256])
				}
				if ref.Event+"\x00" != string(e.Data) {
					t.Errorf("%s: predicted event text %q", describe(e), ref.Event)
				}
				if len(e.Digests) != c.wantBanks {
					t.Errorf("%s: log has %d banks, expected %d", describe(e), len(e.Digests), c.wantBanks)
				}
			}
			if commands < 10 || cmdlines != 1 {
				t.Errorf("checked %d commands and %d kernel command lines, expected at least 10 and 1", commands, cmdlines)
			}
		})
	}
}

func TestGrubLoaderCmdlineQuoting(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"/vmlinuz", "root=/dev/sda1", "ro"}, "/vmlinuz root=/dev/sda1 ro"},
		{[]string{"/vmlinuz", "a b"}, `/vmlinuz "a b"`},
		{[]string{"/vmlinuz", `x="y"`}, `/vmlinuz x=\"y\"`},
		{[]string{"/vmlinuz", `c:\x41`}, `/vmlinuz c:\x41`},
		{[]string{"/vmlinuz", `c:\q`}, `/vmlinuz c:\\q`},
	}
	for _, c := range cases {
		if got := GrubLoaderCmdline(c.args); got != c.want {
			t.Errorf("GrubLoaderCmdline(%q) = %q, expected %q", c.args, got, c.want)
		}
	}
}

// grubCommands runs a script and returns the command texts it measured.
func grubCommands(t *testing.T, script string, vars map[string]string, files *GrubFileMap) []string {
	t.Helper()
	if files == nil {
		files = &GrubFileMap{}
	}
	sim := &GrubSimulation{Files: files, Banks: []Bank{SHA256}, Vars: vars}
	if err := sim.Run(script); err != nil {
		t.Fatalf("run: %v", err)
	}
	var out []string
	for _, r := range sim.References() {
		out = append(out, r.Event)
	}
	return out
}

func TestGrubScriptExpansion(t *testing.T) {
	script := `set a=one   # comment
set b="two words" c='$a'
echo $a "$b" $c ${a}x $empty "$empty"
if [ "$a" = one ]; then echo yes; elif true; then echo no; else echo never; fi
if [ -n "$empty" ] ; then
	echo not-run
else
	echo else-run
fi
if ! [ -e /missing ]; then echo negated; fi
`
	got := grubCommands(t, script, nil, nil)
	want := []string{
		"grub_cmd: set a=one",
		"grub_cmd: set b=two words c=$a",
		"grub_cmd: echo one two words $a onex ",
		"grub_cmd: [ one = one ]",
		"grub_cmd: echo yes",
		"grub_cmd: [ -n  ]",
		"grub_cmd: echo else-run",
		"grub_cmd: [ -e /missing ]",
		"grub_cmd: echo negated",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("measured commands:\n%s\nexpected:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestGrubBootSelectsDefaultEntry(t *testing.T) {
	script := `set default="Second"
menuentry 'First' --class debian {
	linux /first
}
menuentry "Second" --id second {
	linux /vmlinuz root=UUID=1234 ro quiet
	initrd /initrd.img
}
`
	files := &GrubFileMap{Known: map[string]Digests{
		"/vmlinuz":    {SHA256: make([]byte, 32)},
		"/initrd.img": {SHA256: make([]byte, 32)},
	}}
	sim := &GrubSimulation{Files: files, Banks: []Bank{SHA256}}
	if err := sim.Run(script); err != nil {
		t.Fatal(err)
	}
	if err := sim.Boot(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range sim.References() {
		got = append(got, r.Event)
	}
	want := []string{
		"grub_cmd: set default=Second",
		"grub_cmd: menuentry First --class debian {\n\tlinux /first\n}",
		"grub_cmd: menuentry Second --id second {\n\tlinux /vmlinuz root=UUID=1234 ro quiet\n\tinitrd /initrd.img\n}",
		"grub_cmd: setparams Second",
		"grub_cmd: linux /vmlinuz root=UUID=1234 ro quiet",
		"/vmlinuz",
		"kernel_cmdline: /vmlinuz root=UUID=1234 ro quiet",
		"grub_cmd: initrd /initrd.img",
		"/initrd.img",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("measured:\n%q\nexpected:\n%q", got, want)
	}
}

func TestGrubScriptErrors(t *testing.T) {
	cases := []struct{ script, want string }{
		{`echo "open`, "unterminated double quote"},
		{`echo 'open`, "unterminated single quote"},
		{"menuentry x {\n linux /k\n", "never closed"},
		{"if true; then echo", "or fi at the end"},
		{"for x in a b; do echo $x; done", `"for" is not supported`},
		{"[ -e /x", "lacks its closing ]"},
		{"source /nowhere", "no local file"},
	}
	for _, c := range cases {
		sim := &GrubSimulation{Files: &GrubFileMap{}, Banks: []Bank{SHA256}}
		err := sim.Run(c.script)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run(%q): error %v, expected one containing %q", c.script, err, c.want)
		}
	}
	sim := &GrubSimulation{Files: &GrubFileMap{}, Banks: []Bank{SHA256}}
	if err := sim.Boot(); err == nil || !strings.Contains(err.Error(), "no menu entry") {
		t.Errorf("Boot without entries: error %v", err)
	}
}

func FuzzGrubScript(f *testing.F) {
	for _, name := range []string{"debian-grub-memdisk.cfg", "ovmf-swtpm/grub.cfg"} {
		if b, err := readTestdata(name); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("set a=\"$b\"; if [ -e $a ]; then source $a; fi")
	f.Fuzz(func(t *testing.T, script string) {
		sim := &GrubSimulation{Files: &GrubFileMap{}, Banks: []Bank{SHA1}}
		if err := sim.Run(script); err != nil {
			return
		}
		_ = sim.Boot()
	})
}

// TestGrubScriptBoundsWork runs scripts that double a variable and files
// that source the next one twice: both would take gigabytes or hours
// without the simulation's limits.
func TestGrubScriptBoundsWork(t *testing.T) {
	doubling := "set a=xxxxxxxxxxxxxxxx\n" + strings.Repeat("set a=\"$a$a\"\n", 40) + "menuentry a {\n linux /vmlinuz $a\n}\n"
	sim := &GrubSimulation{Files: &GrubFileMap{}, Banks: []Bank{SHA256}}
	err := sim.Run(doubling)
	if err == nil || !strings.Contains(err.Error(), "grub script line 13: word 2 expands to more than 65536 bytes") {
		t.Errorf("doubling: error %v", err)
	}

	// f0 sources f1 twice, f1 sources f2 twice, ... f15 is empty: 2^16
	// runs of 64 KiB scripts.
	dir := t.TempDir()
	pad := "#" + strings.Repeat("x", 64<<10) + "\n"
	for i := 0; i < 16; i++ {
		body := pad
		if i < 15 {
			body += fmt.Sprintf("source /f%d\nsource /f%d\n", i+1, i+1)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sim = &GrubSimulation{Files: &GrubFileMap{Dir: dir}, Banks: []Bank{SHA256}}
	err = sim.Run("source /f0")
	if !errors.Is(err, errGrubWork) {
		t.Errorf("fan-out: error %v, want the work limit", err)
	}
}
