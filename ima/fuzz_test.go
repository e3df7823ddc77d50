package ima

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seedLists adds every list in testdata as a fuzz seed.
func seedLists(f *testing.F, format Format) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil || DetectFormat(data) != format || bytes.HasSuffix([]byte(p), []byte(".json")) || bytes.HasSuffix([]byte(p), []byte(".md")) {
			continue
		}
		if len(data) > 4<<10 {
			data = data[:4<<10]
		}
		f.Add(data)
	}
}

// checkEntries exercises everything a verifier does with parsed entries.
func checkEntries(t *testing.T, entries []Entry) {
	for i := range entries {
		e := &entries[i]
		_ = e.CheckTemplateHash()
		if f, err := e.Fields(); err == nil {
			_, _ = ParseSignature(f.Signature)
		}
		if _, err := AppendASCII(nil, e); err != nil {
			continue
		}
	}
	if _, err := ReplayEntries(entries, []Algorithm{SHA1, SHA256}); err != nil {
		t.Fatalf("replay of parsed entries failed: %v", err)
	}
	p := &Policy{Exclude: []string{"/tmp/"}, Rules: []Rule{{Name: "empty", Allowlist: NewAllowlist()}}}
	p.Check(entries)
}

func FuzzParseBinary(f *testing.F) {
	seedLists(f, FormatBinary)
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseBinary(data, ParseOptions{})
		if err != nil && len(entries) > len(data)/29 {
			t.Fatalf("%d entries from %d bytes", len(entries), len(data))
		}
		checkEntries(t, entries)
		// Re-encoding the entries gives back the parsed bytes.
		var out []byte
		for i := range entries {
			out = AppendBinary(out, &entries[i])
		}
		if !bytes.HasPrefix(data, out) {
			t.Fatal("re-encoded entries differ from the input")
		}
		if err == nil && len(out) != len(data) {
			t.Fatalf("parsed %d of %d bytes without an error", len(out), len(data))
		}
	})
}

func FuzzParseASCII(f *testing.F) {
	seedLists(f, FormatASCII)
	f.Add([]byte(" 9 0000000000000000000000000000000000000000 ima-ng sha1:0000000000000000000000000000000000000000 a b\n"))
	f.Add([]byte("10 0000000000000000000000000000000000000000 ima-modsig sha256:" + string(bytes.Repeat([]byte("00"), 32)) + " /x  \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseASCII(data, ParseOptions{})
		if err != nil && errors.Is(err, ErrTruncated) {
			t.Fatal("ascii parser reported a truncated entry")
		}
		checkEntries(t, entries)
		// Entries printed and parsed again keep their template data.
		for i := range entries {
			line, err := AppendASCII(nil, &entries[i])
			if err != nil {
				continue
			}
			back, err := ParseASCII(line, ParseOptions{FirstIndex: entries[i].Index})
			if err != nil {
				// A name with a newline does not survive the ascii format.
				if bytes.Count(line, []byte("\n")) > 1 {
					continue
				}
				t.Fatalf("entry %d: printed line %q does not parse: %v", i, line, err)
			}
			if len(back) != 1 || !bytes.Equal(back[0].TemplateData, entries[i].TemplateData) {
				t.Fatalf("entry %d: template data changed after printing %q", i, line)
			}
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	f.Add([]byte{3, 2, 4, 1, 2, 3, 4, 0, 1, 0xaa})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSignature(data)
		if err == nil && len(s.Value)+signatureHeaderSize != len(data) {
			t.Fatal("signature value size disagrees with the input")
		}
	})
}

func FuzzAllowlistRead(f *testing.F) {
	f.Add([]byte("7288c75488697bad29619f7ad123b8e467744f500369689d97de13197d282e87  /usr/bin/kmod\n\\c6dd853884a0df890e1b66366bbc269f18bc6fd6fb7d4b4a19a735f07d1ca4ae  /tmp/a\\nb\nsha1:19f13b42c2745066347e76454788c0fe083643f3 */init\n# comment\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := NewAllowlist()
		if _, err := a.ReadFrom(bytes.NewReader(data)); err != nil {
			return
		}
		// What was read writes out and reads back to the same list.
		var out bytes.Buffer
		if _, err := a.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		b := NewAllowlist()
		if _, err := b.ReadFrom(&out); err != nil {
			t.Fatalf("written allowlist does not read back: %v\n%s", err, out.Bytes())
		}
		if a.Len() != b.Len() {
			t.Fatalf("%d digests written, %d read back", a.Len(), b.Len())
		}
	})
}
