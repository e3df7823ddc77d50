package predict

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGUIDRoundTrip(t *testing.T) {
	const s = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
	g, err := ParseGUID(s)
	if err != nil {
		t.Fatal(err)
	}
	if g.String() != s {
		t.Errorf("String() = %s, expected %s", g, s)
	}
	// EFI_GUID stores its first three fields little-endian.
	if !bytes.Equal(g[:4], []byte{0x61, 0xdf, 0xe4, 0x8b}) {
		t.Errorf("byte order % x, expected the first field little-endian", g[:4])
	}
	if _, err := ParseGUID("8be4df61-93ca-11d2-aa0d"); err == nil {
		t.Error("short GUID parsed")
	}
}

// TestEfivarsDirMatchesOVMFStore writes the variables of OVMF's Microsoft
// key store as an efivars directory and expects the same PCR 7
// predictions from both readers.
func TestEfivarsDirMatchesOVMFStore(t *testing.T) {
	deb := fetchDeb(t, debOVMF[0], debOVMF[1])
	vars, err := ParseOVMFVariables(extractDebFile(t, deb, "usr/share/OVMF/OVMF_VARS_4M.ms.fd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PK", "KEK", "db", "dbx"} {
		found := false
		for k := range vars {
			found = found || k.Name == name
		}
		if !found {
			t.Fatalf("OVMF_VARS_4M.ms.fd: %s not found among %v", name, vars.VariableNames())
		}
	}
	dir := t.TempDir()
	for k, v := range vars {
		attrs := binary.LittleEndian.AppendUint32(nil, 0x27)
		if err := os.WriteFile(filepath.Join(dir, k.Name+"-"+k.GUID.String()), append(attrs, v...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A running system exposes SecureBoot itself.
	sb := append(binary.LittleEndian.AppendUint32(nil, 6), 1)
	if err := os.WriteFile(filepath.Join(dir, "SecureBoot-"+GUIDGlobalVariable.String()), sb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "not-a-variable"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fromDir, err := ReadEfivarsDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := SecureBootReferences(vars, AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SecureBootReferences(fromDir, AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d references from the store, %d from the directory", len(a), len(b))
	}
	for i := range a {
		if a[i].Component != b[i].Component || !bytes.Equal(a[i].Digests[SHA384], b[i].Digests[SHA384]) {
			t.Errorf("reference %d: store %s %s, directory %s %s", i, a[i].Component, a[i].Digests[SHA384], b[i].Component, b[i].Digests[SHA384])
		}
	}
}

func TestParseOVMFVariablesRejectsMalformed(t *testing.T) {
	store := make([]byte, 0x100)
	copy(store[40:], "_FVH")
	binary.LittleEndian.PutUint16(store[48:], 0x48)
	copy(store[0x48:], guidAuthenticatedVariable[:])
	binary.LittleEndian.PutUint32(store[0x48+16:], 0xb8)
	store[0x48+20], store[0x48+21] = varStoreFormatted, varStoreStateHealthy
	v := store[0x48+28:]
	binary.LittleEndian.PutUint16(v, varStartID)
	v[2] = varStateAdded
	binary.LittleEndian.PutUint32(v[36:], 0xffff) // NameSize past the end

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "missing _FVH"},
		{"variable past end", store, "run past the end"},
	}
	for _, c := range cases {
		if _, err := ParseOVMFVariables(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, expected one containing %q", c.name, err, c.want)
		}
	}
}

func TestParseSignatureListsRejectsMalformed(t *testing.T) {
	good := signatureList(GUIDCertSHA256, GUIDShimLock, make([]byte, 32))
	lists, err := ParseSignatureLists(append(append([]byte(nil), good...), good...))
	if err != nil || len(lists) != 2 || len(lists[1].Signatures) != 1 {
		t.Fatalf("two lists: %v, %d lists", err, len(lists))
	}
	bad := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(bad[24:], 7) // signature size below 16
	if _, err := ParseSignatureLists(bad); err == nil {
		t.Error("signature size 7 accepted")
	}
	if _, err := ParseSignatureLists(good[:20]); err == nil {
		t.Error("truncated header accepted")
	}
}

func FuzzParseOVMFVariables(f *testing.F) {
	f.Add([]byte("_FVH"))
	if b, err := readTestdata("ovmf/OVMF_VARS_4M.ms.head"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := ParseOVMFVariables(data)
		if err != nil {
			return
		}
		_, _ = SecureBootReferences(vars, []Bank{SHA1})
	})
}

func FuzzReadDeb(f *testing.F) {
	f.Add([]byte(arMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		var pkg Package
		_ = readDeb(bytes.NewReader(data), &pkg, func(string, int64, io.Reader) error { return nil })
	})
}
