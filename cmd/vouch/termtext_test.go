package main

import (
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/vouch-attest/vouch/bundle"
)

func TestTermText(t *testing.T) {
	for in, want := range map[string]string{
		`\EFI\debian\grubx64.efi`: `\EFI\debian\grubx64.efi`,
		"plain text, ünïcödé":     "plain text, ünïcödé",
		"a\x1b[2Jb":               `a\x1b[2Jb`,
		"line\rover":              `line\rover`,
		"row\nrow\tcell":          `row\nrow\tcell`,
		"bidi \u202egpj.exe":      `bidi \u202egpj.exe`,
		"bad \xff utf8":           `bad \xff utf8`,
		"c1 \u009b2J":             `c1 \u009b2J`,
	} {
		if got := termText(in); got != want {
			t.Errorf("termText(%q) = %s, want %s", in, got, want)
		}
	}
	if got := cutText(strings.Repeat("é", 200), 10); got != "ééééééé..." {
		t.Errorf("cutText = %q", got)
	}
}

// sha1LogEvent encodes a TCG 1.2 (SHA-1) event log entry.
func sha1LogEvent(pcr, typ uint32, data []byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, pcr)
	out = binary.LittleEndian.AppendUint32(out, typ)
	d := sha1.Sum(data)
	out = append(out, d[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(data)))
	return append(out, data...)
}

// TestShowEscapesControlCharacters: a hostile event log, bundle or IMA
// list must not reach the terminal with ESC or CR in it.
func TestShowEscapesControlCharacters(t *testing.T) {
	dir := t.TempDir()
	// EV_EFI_VARIABLE_DRIVER_CONFIG with a name that clears the screen,
	// and an EV_IPL whose text returns to the line start.
	name := utf16.Encode([]rune("Secure\x1b[2J\rBoot"))
	variable := make([]byte, 16)
	variable = binary.LittleEndian.AppendUint64(variable, uint64(len(name)))
	variable = binary.LittleEndian.AppendUint64(variable, 1)
	for _, u := range name {
		variable = binary.LittleEndian.AppendUint16(variable, u)
	}
	variable = append(variable, 1)
	log := append(sha1LogEvent(7, 0x80000001, variable), sha1LogEvent(8, 0x0d, []byte("grub_cmd: linux /evil\rgrub_cmd: linux /good\x00"))...)
	logPath := filepath.Join(dir, "hostile.bin")
	if err := os.WriteFile(logPath, log, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runVouch(t, nil, "eventlog", "show", logPath)
	if code != exitOK || strings.ContainsAny(out, "\x1b\r") || !strings.Contains(out, `Secure\x1b[2J\rBoot`) || !strings.Contains(out, `/evil\rgrub_cmd`) {
		t.Errorf("eventlog show: exit %d:\n%q", code, out)
	}

	// A bundle whose description and component name hold escapes.
	bundlePath := filepath.Join(dir, "b.json")
	doc := `{"schema":"` + bundle.SchemaV1 + `","publisher":"acme","product":"p","version":"1",
		"not_before":"2026-01-01T00:00:00Z","not_after":"2027-01-01T00:00:00Z","description":"ok\u001b[2J\rall good",
		"components":[{"name":"shim","kind":"boot-application","values":[{"pcr":4,"digests":{"sha256":"` + strings.Repeat("ab", 32) + `"},"description":"x\u001b]0;pwned\u0007"}]}]}`
	if err := os.WriteFile(bundlePath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runVouch(t, nil, "bundle", "show", bundlePath)
	if code != exitOK || strings.ContainsAny(out, "\x1b\r\x07") || !strings.Contains(out, `ok\x1b[2J\rall good`) {
		t.Errorf("bundle show: exit %d:\n%q", code, out)
	}
}

// TestPredictTableEscapes: a GRUB command or stub command line with ESC,
// CR or a tab must not reach the terminal or shift the table's columns.
func TestPredictTableEscapes(t *testing.T) {
	out, code := runVouch(t, nil, "predict", "-o", "text", "--bank", "sha256",
		"--grub-command", "linux /vmlinuz\x1b[2J\rquiet", "--stub-cmdline", "quiet\tsplash")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	if strings.ContainsAny(out, "\x1b\r") || strings.Count(out, "\t") != 0 {
		t.Errorf("control characters in the table:\n%q", out)
	}
	if !strings.Contains(out, `linux /vmlinuz\x1b[2J\rquiet`) || !strings.Contains(out, `quiet\tsplash`) {
		t.Errorf("escaped text missing:\n%s", out)
	}
}

// TestPrintErrorEscapes: error messages quote input, so they are escaped
// too, keeping the newlines of joined errors.
func TestPrintErrorEscapes(t *testing.T) {
	var b strings.Builder
	printError(&b, errors.Join(errors.New("name \x1b[2J\rok"), errors.New("second")))
	if got, want := b.String(), "vouch: name \\x1b[2J\\rok\nsecond\n"; got != want {
		t.Errorf("printError = %q, want %q", got, want)
	}
}
