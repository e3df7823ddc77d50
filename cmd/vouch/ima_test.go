package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/vouch-attest/vouch/ima"
)

const imaTestdata = "../../ima/testdata"

func TestIMAShow(t *testing.T) {
	out, code := runVouch(t, nil, "ima", "show", filepath.Join(imaTestdata, "h12ssl.ima.bin"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	if !strings.Contains(out, "5071 entries (binary list)") || strings.Count(out, "VIOLATION") != 9 {
		t.Errorf("unexpected output:\n%.500s", out)
	}
	// The name is the last column, so a short name gives a short line
	// however long other names in the list are.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasSuffix(line, " /init") && len(line) > 100 {
			t.Errorf("the /init line is %d characters long, padded to a longer name:\n%s", len(line), line)
		}
	}
	if !strings.Contains(out, "  /init\n") {
		t.Errorf("no line ends with the name /init:\n%.500s", out)
	}
	out, code = runVouch(t, nil, "ima", "show", "-o", "json", filepath.Join(imaTestdata, "ovmf-shim-sbms.ima.ascii"))
	if code != exitOK || !strings.Contains(out, `"format": "ascii"`) || !strings.Contains(out, "/lib/modules/efivarfs.ko") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	out, code = runVouch(t, nil, "ima", "show", filepath.Join(imaTestdata, "sml-ima-sig-sha256.bin"))
	if code != exitUnreadable || !strings.Contains(out, "list ends inside an entry") || !strings.Contains(out, "/scripts/functions") {
		t.Errorf("truncated list: exit %d:\n%s", code, out)
	}
}

func TestIMAReplay(t *testing.T) {
	list := filepath.Join(imaTestdata, "hahuri.ima.bin")
	out, code := runVouch(t, nil, "ima", "replay", list, "--expect", filepath.Join(imaTestdata, "hahuri.boot.pcrs.json"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"verified 36 entries, 1 pending", "sha256: matches (per-bank-hash)", "boot_aggregate: matches sha256 PCRs 0-9"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, code = runVouch(t, nil, "ima", "replay", list, "--expect", "sha256:10="+strings.Repeat("00", 32))
	if code != exitMismatch || !strings.Contains(out, "pcr-mismatch") {
		t.Errorf("wrong PCR: exit %d: %s", code, out)
	}
	out, code = runVouch(t, nil, "ima", "replay", list, "--expect", "sha256:10=zz")
	if code != exitUsage {
		t.Errorf("bad --expect: exit %d: %s", code, out)
	}
	out, code = runVouch(t, nil, "ima", "replay", list, "--bank", "sha1,sha256,sha384")
	if code != exitOK || !strings.Contains(out, "sha384  10   padded-sha1") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestIMACheck(t *testing.T) {
	list := filepath.Join(imaTestdata, "h12ssl.ima.bin")
	data, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ima.ParseBinary(data, ima.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// An allowlist of every file except those under /var/log/.
	var text strings.Builder
	for i := 1; i < len(entries); i++ {
		f, err := entries[i].Fields()
		if err != nil || entries[i].IsViolation() || strings.HasPrefix(string(f.Name), "/var/log/") {
			continue
		}
		text.WriteString(f.DigestAlgorithm + ":" + hex.EncodeToString(f.Digest) + "  " + string(f.Name) + "\n")
	}
	allow := filepath.Join(t.TempDir(), "allow.txt")
	if err := os.WriteFile(allow, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	expect := filepath.Join(imaTestdata, "h12ssl.boot.pcrs.json")

	// The log's file digests are SHA-1: rejected unless asked for.
	out, code := runVouch(t, nil, "ima", "check", list, "--allowlist", allow, "--expect", expect, "--exclude", "/var/log/", "--violations", "warn")
	if code != exitMismatch || !strings.Contains(out, "file digest algorithm sha1 is not accepted") {
		t.Errorf("without --insecure-allow-sha1: exit %d:\n%.2000s", code, out)
	}

	out, code = runVouch(t, nil, "ima", "check", list, "--insecure-allow-sha1", "--allowlist", allow, "--expect", expect)
	if code != exitMismatch || !strings.Contains(out, "/var/log/") || !strings.Contains(out, "digest is not in the allowlist") {
		t.Errorf("exit %d:\n%.2000s", code, out)
	}
	if !strings.Contains(out, "boot_aggregate: matches sha1 PCRs 0-7") {
		t.Errorf("boot_aggregate not checked:\n%.500s", out)
	}
	out, code = runVouch(t, nil, "ima", "check", list, "--insecure-allow-sha1", "--allowlist", allow, "--expect", expect, "--exclude", "/var/log/", "--violations", "warn")
	if code != exitOK {
		t.Errorf("with /var/log/ excluded: exit %d:\n%.2000s", code, out)
	}
	out, code = runVouch(t, nil, "ima", "check", list, "--insecure-allow-sha1", "--allowlist", allow, "--warn", "--violations", "warn")
	if code != exitOK || !strings.Contains(out, "entries not verified against PCR values") {
		t.Errorf("--warn: exit %d:\n%.500s", code, out)
	}
	out, code = runVouch(t, nil, "ima", "check", list)
	if code != exitUsage {
		t.Errorf("no allowlist: exit %d: %s", code, out)
	}
}

func TestIMAAllowlistCreate(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "usr", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "usr", "bin", "tool"), []byte("tool\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "allow.txt")
	out, code := runVouch(t, nil, "ima", "allowlist", "create", "--dir", dir, "--out", outFile)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	got, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("tool\n"))
	if want := hex.EncodeToString(sum[:]) + "  /usr/bin/tool\n"; string(got) != want {
		t.Errorf("allowlist = %q", got)
	}
	if _, code := runVouch(t, nil, "ima", "allowlist", "create"); code != exitUsage {
		t.Errorf("no source: exit %d", code)
	}
}

// TestIMACheckJSONStdout checks that -o json leaves standard output to
// the JSON report and sends the replay's progress lines to standard error.
func TestIMACheckJSONStdout(t *testing.T) {
	list := filepath.Join(imaTestdata, "hahuri.ima.bin")
	allow := filepath.Join(t.TempDir(), "allow.txt")
	if err := os.WriteFile(allow, []byte("sha256:"+strings.Repeat("00", 32)+"  /nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"ima", "check", list, "--allowlist", allow, "--expect", filepath.Join(imaTestdata, "hahuri.boot.pcrs.json"), "--warn", "-o", "json"})
	if err := root.Execute(); err != nil {
		t.Fatalf("ima check -o json: %v\n%s", err, stderr.String())
	}
	var report map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Errorf("standard output is not one JSON document: %v\n%.500s", err, stdout.String())
	}
	if !strings.Contains(stderr.String(), "verified 36 entries") {
		t.Errorf("standard error lacks the replay summary:\n%s", stderr.String())
	}
}

// TestIMAShowTableLayout: the table printed row by row is laid out as
// text/tabwriter lays out the whole table at once.
func TestIMAShowTableLayout(t *testing.T) {
	for _, name := range []string{"h12ssl.ima.bin", "ovmf-shim-sbms.ima.ascii", "sml-ima-sig-sha256.bin"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(imaTestdata, name)
			got, _ := runVouch(t, nil, "ima", "show", path)

			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			entries, format, parseErr := ima.Parse(data, ima.ParseOptions{})
			var want bytes.Buffer
			tw := tabwriter.NewWriter(&want, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, strings.Join(imaColumns, "\t"))
			for i := range entries {
				s := describeEntry(&entries[i])
				fmt.Fprintln(tw, strings.Join(imaRow(&s), "\t"))
			}
			tw.Flush()
			fmt.Fprintf(&want, "%d entries (%s list)\n", len(entries), format)
			if parseErr != nil {
				want.WriteString(fmt.Errorf("%s: %w", path, parseErr).Error())
			}
			if got != want.String() {
				t.Errorf("table differs from the tabwriter layout:\ngot:\n%.1000s\nwant:\n%.1000s", got, want.String())
			}
		})
	}
}

// TestIMAShowNotAList: a file that is not a list prints no empty table.
func TestIMAShowNotAList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "text")
	if err := os.WriteFile(path, []byte("10 not-hex ima-ng sha256:00 /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"table", "json"} {
		out, code := runVouch(t, nil, "ima", "show", "-o", format, path)
		if code != exitUnreadable || !strings.HasPrefix(out, path+": line 1 (entry 0)") {
			t.Errorf("-o %s: exit %d: %s", format, code, out)
		}
	}
}
