package ima

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	_ "crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// testKey creates a self-signed certificate for signing IMA signatures.
func testKey(t *testing.T, signer crypto.Signer, skid []byte) (*Keyring, []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "IMA test key"},
		NotBefore:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC),
		SubjectKeyId: skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k, err := ParseKeys(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return k, pemBytes
}

// signDigest builds an IMA v2 signature (signature_v2_hdr) over a file
// digest, as evmctl writes it into security.ima.
func signDigest(t *testing.T, signer crypto.Signer, keyID [4]byte, hashAlgo byte, h crypto.Hash, digest []byte) []byte {
	t.Helper()
	sig, err := signer.Sign(rand.Reader, digest, h)
	if err != nil {
		t.Fatal(err)
	}
	out := []byte{SignatureTypeDigsig, 2, hashAlgo}
	out = append(out, keyID[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(sig)))
	return append(out, sig...)
}

// signedEntries returns the real ima-sig entries of sml-ima-sig-sha256.bin
// (sha256 file digests, no signatures logged) with signatures added.
func signedEntries(t *testing.T, signer crypto.Signer, keyID [4]byte) []Entry {
	entries := loadEntries(t, "sml-ima-sig-sha256.bin")
	for i := 1; i < len(entries); i++ {
		entries[i] = withFields(t, entries[i], func(f *Fields) {
			f.Signature = signDigest(t, signer, keyID, 4, crypto.SHA256, f.Digest)
		})
	}
	return entries
}

func TestVerifySignature(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer crypto.Signer
		skid   []byte
	}{
		{"rsa with skid", rsaKey, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0xde, 0xad, 0xbe, 0xef}},
		{"ecdsa without skid", ecKey, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, _ := testKey(t, tc.signer, tc.skid)
			id := keys.Keys[0].IDs[0]
			entries := signedEntries(t, tc.signer, id)
			for i := 1; i < len(entries); i++ {
				f, err := entries[i].Fields()
				if err != nil {
					t.Fatal(err)
				}
				sig, err := ParseSignature(f.Signature)
				if err != nil {
					t.Fatal(err)
				}
				if sig.KeyID != id || sig.HashName() != "sha256" || sig.Version != 2 {
					t.Errorf("entry %d: header %+v", i, sig)
				}
				if _, err := keys.VerifySignature(&f); err != nil {
					t.Errorf("entry %d: %v", i, err)
				}
				if err := entries[i].CheckTemplateHash(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	t.Run("failures", func(t *testing.T) {
		keys, _ := testKey(t, rsaKey, nil)
		id := keys.Keys[0].IDs[0]
		otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		e := loadEntries(t, "sml-ima-sig-sha256.bin")[2]
		f, err := e.Fields()
		if err != nil {
			t.Fatal(err)
		}
		good := signDigest(t, rsaKey, id, 4, crypto.SHA256, f.Digest)
		tests := []struct {
			name, sig []byte
			want      string
		}{
			{[]byte("wrong key"), signDigest(t, otherKey, id, 4, crypto.SHA256, f.Digest), "does not verify"},
			{[]byte("unknown key id"), signDigest(t, rsaKey, [4]byte{9, 9, 9, 9}, 4, crypto.SHA256, f.Digest), "no configured key has key id 09090909"},
			{[]byte("hash mismatch"), signDigest(t, rsaKey, id, 2, crypto.SHA256, f.Digest), "signature uses sha1 but the file digest is sha256"},
			{[]byte("truncated"), good[:len(good)-1], "does not parse"},
			{[]byte("short"), []byte{3, 2, 4}, "does not parse"},
			{[]byte("bad type"), append([]byte{0x04}, good[1:]...), "type 0x04"},
			{[]byte("version 3"), append([]byte{3, 3}, good[2:]...), "not supported"},
		}
		for _, tt := range tests {
			t.Run(string(tt.name), func(t *testing.T) {
				g := f
				g.Signature = tt.sig
				_, err := keys.VerifySignature(&g)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("err = %v, want %q", err, tt.want)
				}
			})
		}
	})
}

// TestUnparseableSignatureKept checks that a "sig" field that is not an
// IMA signature survives parsing in both formats byte for byte and is
// reported by the policy.
func TestUnparseableSignatureKept(t *testing.T) {
	garbage := []byte{0x03, 0x02, 0x04, 0xff, 0xff} // header cut short
	e := withFields(t, loadEntries(t, "sml-ima-sig-sha256.bin")[3], func(f *Fields) { f.Signature = garbage })
	line, err := AppendASCII(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{line, AppendBinary(nil, &e)} {
		got, _, err := Parse(data, ParseOptions{FirstIndex: 3})
		if err != nil {
			t.Fatal(err)
		}
		f, err := got[0].Fields()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Signature, garbage) {
			t.Errorf("signature = %x, want %x", f.Signature, garbage)
		}
		if err := got[0].CheckTemplateHash(); err != nil {
			t.Error(err)
		}
		keys, _ := testKey(t, mustRSA(t), nil)
		p := &Policy{Rules: []Rule{{Name: "signed", Keys: keys}}}
		rep := p.Check(got)
		if len(rep.Verdicts) != 1 || !strings.Contains(rep.Verdicts[0].Reason, "signature does not parse") {
			t.Fatalf("verdicts = %+v, want one naming the unparseable signature", rep.Verdicts)
		}
		if v := rep.Verdicts[0]; v.Entry != 3 || v.File != "/usr/lib/x86_64-linux-gnu/ld-2.31.so" || v.Rule != "signed" || v.Action != Enforce || !strings.HasPrefix(v.Digest, "sha256:") {
			t.Errorf("verdict = %+v", v)
		}
	}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPolicyRules(t *testing.T) {
	// The log's file digests are SHA-1, so every rule accepts SHA-1.
	entries := loadEntries(t, "h12ssl.ima.bin")
	all := allowAll(t, entries)

	// An allowlist that misses the files under /var/log/ and
	// lists /usr/bin/bash's digest under another name.
	partial := NewAllowlist()
	var varlog, bash int
	for i := 1; i < len(entries); i++ {
		if entries[i].IsViolation() {
			continue
		}
		f, _ := entries[i].Fields()
		name := string(f.Name)
		switch {
		case strings.HasPrefix(name, "/var/log/"):
			varlog++
			continue
		case name == "/usr/bin/bash":
			bash++
			name = "/bin/bash-copy"
		}
		if err := partial.Add(f.DigestAlgorithm, f.Digest, name); err != nil {
			t.Fatal(err)
		}
	}
	// Some log files share a digest with listed files (empty files).
	var missing int
	for i := 1; i < len(entries); i++ {
		f, _ := entries[i].Fields()
		if !entries[i].IsViolation() && !partial.Contains(f.DigestAlgorithm, f.Digest) {
			missing++
		}
	}
	if varlog == 0 || bash == 0 || missing == 0 {
		t.Fatalf("test list lacks varlog (%d) or bash (%d) entries", varlog, bash)
	}

	t.Run("everything allowed", func(t *testing.T) {
		rep := (&Policy{Rules: []Rule{{AllowSHA1: true, Name: "all", Allowlist: all}}, Violations: Warn}).Check(entries)
		if rep.Failed() || rep.Accepted != len(entries)-9 {
			t.Errorf("accepted %d, failed %v", rep.Accepted, rep.Failed())
		}
	})
	t.Run("enforce", func(t *testing.T) {
		rep := (&Policy{Rules: []Rule{{AllowSHA1: true, Name: "distro", Allowlist: partial}}, Violations: Warn}).Check(entries)
		if !rep.Failed() {
			t.Fatal("missing varlog digests did not fail the report")
		}
		var rejected int
		for _, v := range rep.Verdicts {
			if v.Outcome != Rejected {
				continue
			}
			rejected++
			if !strings.HasPrefix(v.File, "/var/log/") || v.Rule != "distro" || v.Action != Enforce || !strings.Contains(v.Reason, "not in the allowlist") {
				t.Errorf("verdict %+v", v)
			}
		}
		if rejected != missing {
			t.Errorf("rejected %d, want %d", rejected, missing)
		}
	})
	t.Run("warn rule", func(t *testing.T) {
		p := &Policy{Rules: []Rule{
			{AllowSHA1: true, Name: "varlog", Action: Warn, Paths: []string{"/var/log/"}, Allowlist: partial},
			{AllowSHA1: true, Name: "distro", Allowlist: partial},
		}, Violations: Warn}
		rep := p.Check(entries)
		if rep.Failed() {
			t.Errorf("warn rule failed the report: %+v", rep.Verdicts[0])
		}
		if len(rep.Verdicts) != missing+9 {
			t.Errorf("%d verdicts, want %d", len(rep.Verdicts), missing+9)
		}
	})
	t.Run("exclusion", func(t *testing.T) {
		p := &Policy{Exclude: []string{"/var/log/"}, Rules: []Rule{{AllowSHA1: true, Name: "distro", Allowlist: partial}}, Violations: Warn}
		rep := p.Check(entries)
		if rep.Failed() || rep.Excluded < varlog {
			t.Errorf("excluded %d (want at least %d), failed %v", rep.Excluded, varlog, rep.Failed())
		}
	})
	t.Run("match name", func(t *testing.T) {
		p := &Policy{Exclude: []string{"/var/log/"}, Rules: []Rule{{AllowSHA1: true, Name: "by-name", Allowlist: partial, MatchName: true}}, Violations: Warn}
		rep := p.Check(entries)
		var found bool
		for _, v := range rep.Verdicts {
			if v.File == "/usr/bin/bash" {
				found = strings.Contains(v.Reason, "not for this file name")
			}
		}
		if !found {
			t.Error("bash under another name was not rejected with a name reason")
		}
	})
	t.Run("uncovered", func(t *testing.T) {
		p := &Policy{Rules: []Rule{{AllowSHA1: true, Name: "etc", Paths: []string{"/etc/*"}, Allowlist: all}}, Uncovered: Warn, Violations: Warn}
		rep := p.Check(entries)
		if rep.Failed() {
			t.Error("uncovered entries with the Warn action failed the report")
		}
		if i := slices.IndexFunc(rep.Verdicts, func(v Verdict) bool { return v.Rule == "uncovered" }); i < 0 {
			t.Error("no uncovered verdict")
		}
	})
	t.Run("signature or allowlist", func(t *testing.T) {
		signer := mustRSA(t)
		keys, _ := testKey(t, signer, nil)
		signed := signedEntries(t, signer, keys.Keys[0].IDs[0])
		p := &Policy{Rules: []Rule{{Name: "signed-or-listed", Keys: keys, Allowlist: NewAllowlist()}}}
		if rep := p.Check(signed); rep.Failed() {
			t.Errorf("signed entries rejected: %+v", rep.Verdicts)
		}
		unsigned := loadEntries(t, "sml-ima-sig-sha256.bin")
		rep := p.Check(unsigned)
		if len(rep.Verdicts) != len(unsigned)-1 || !strings.Contains(rep.Verdicts[0].Reason, "entry has no signature") {
			t.Errorf("verdicts = %+v", rep.Verdicts)
		}
	})
}

// TestPolicyRejectsBrokenDigests: a file's signer picks the hash algorithm
// in its security.ima header, and MD5 or SHA-1 collisions let one signed
// benign file vouch for a malicious one.
func TestPolicyRejectsBrokenDigests(t *testing.T) {
	signer := mustRSA(t)
	keys, _ := testKey(t, signer, nil)
	id := keys.Keys[0].IDs[0]
	entries := loadEntries(t, "sml-ima-sig-sha256.bin")[:3]
	withAlg := func(name string, kernelAlg byte, h crypto.Hash) []Entry {
		out := make([]Entry, len(entries))
		copy(out, entries)
		for i := 1; i < len(out); i++ {
			out[i] = withFields(t, out[i], func(f *Fields) {
				hh := h.New()
				hh.Write(f.Name)
				f.DigestAlgorithm, f.Digest = name, hh.Sum(nil)
				f.Signature = signDigest(t, signer, id, kernelAlg, h, f.Digest)
			})
		}
		return out
	}
	md5Entries := withAlg("md5", 1, crypto.MD5)
	sha1Entries := withAlg("sha1", 2, crypto.SHA1)
	for _, tt := range []struct {
		name      string
		entries   []Entry
		allowSHA1 bool
		want      string
	}{
		{"md5", md5Entries, false, "file digest algorithm md5 is broken"},
		{"md5 with sha1 allowed", md5Entries, true, "file digest algorithm md5 is broken"},
		{"sha1", sha1Entries, false, "file digest algorithm sha1 is not accepted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The signatures themselves verify.
			if _, err := keys.VerifySignature(mustFields(t, tt.entries[1])); err != nil {
				t.Fatal(err)
			}
			p := &Policy{Rules: []Rule{{Name: "signed", Keys: keys, AllowSHA1: tt.allowSHA1}}}
			rep := p.Check(tt.entries)
			if !rep.Failed() || len(rep.Verdicts) != len(tt.entries)-1 || !strings.Contains(rep.Verdicts[0].Reason, tt.want) {
				t.Errorf("verdicts = %+v, want every entry rejected with %q", rep.Verdicts, tt.want)
			}
		})
	}
	p := &Policy{Rules: []Rule{{Name: "signed", Keys: keys, AllowSHA1: true}}}
	if rep := p.Check(sha1Entries); rep.Failed() {
		t.Errorf("sha1 with AllowSHA1 rejected: %+v", rep.Verdicts)
	}
}

func mustFields(t *testing.T, e Entry) *Fields {
	t.Helper()
	f, err := e.Fields()
	if err != nil {
		t.Fatal(err)
	}
	return &f
}

func TestAllowlistFile(t *testing.T) {
	text := "# reference digests\n" +
		"7288c75488697bad29619f7ad123b8e467744f500369689d97de13197d282e87  /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n" +
		"c6dd853884a0df890e1b66366bbc269f18bc6fd6fb7d4b4a19a735f07d1ca4ae */usr/bin/kmod\n" +
		"19f13b42c2745066347e76454788c0fe083643f3  /init\n" +
		"\\c6dd853884a0df890e1b66366bbc269f18bc6fd6fb7d4b4a19a735f07d1ca4ae  /tmp/a\\nb\\\\c\n" +
		"sha384:" + strings.Repeat("ab", 48) + "  /boot/x\n" +
		"fad464bad8a60f04ff6a6a0c478e8b528d0e161ecbd4a0a66de1e18d08e617fe\n"
	a := NewAllowlist()
	if _, err := a.ReadFrom(strings.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 5 {
		t.Errorf("Len = %d, want 5", a.Len())
	}
	kmod := mustHex(t, "c6dd853884a0df890e1b66366bbc269f18bc6fd6fb7d4b4a19a735f07d1ca4ae")
	if !a.ContainsFor("sha256", kmod, []byte("/usr/bin/kmod")) || !a.ContainsFor("sha256", kmod, []byte("/tmp/a\nb\\c")) {
		t.Error("kmod digest not listed under both names")
	}
	if a.ContainsFor("sha256", kmod, []byte("/usr/bin/other")) {
		t.Error("kmod digest listed under a name it was not given")
	}
	if !a.Contains("sha1", mustHex(t, "19f13b42c2745066347e76454788c0fe083643f3")) {
		t.Error("unprefixed 40-digit digest not read as sha1")
	}
	if !a.ContainsFor("sha256", mustHex(t, "fad464bad8a60f04ff6a6a0c478e8b528d0e161ecbd4a0a66de1e18d08e617fe"), []byte("/any")) {
		t.Error("digest without a name does not match every name")
	}
	if a.Contains("sha1", kmod[:20]) {
		t.Error("digest matched across algorithms")
	}
	var out bytes.Buffer
	if _, err := a.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	b := NewAllowlist()
	if _, err := b.ReadFrom(&out); err != nil {
		t.Fatal(err)
	}
	if b.Len() != a.Len() || !b.ContainsFor("sha256", kmod, []byte("/tmp/a\nb\\c")) {
		t.Error("allowlist changed in a write and read round trip")
	}
	spaced := NewAllowlist()
	if _, err := spaced.ReadFrom(strings.NewReader(hex.EncodeToString(kmod) + "  /opt/my app/bin\n")); err != nil {
		t.Fatal(err)
	}
	if !spaced.ContainsFor("sha256", kmod, []byte("/opt/my_app/bin")) {
		t.Error("a name with a space does not match the name IMA logs, with an underscore")
	}
	for _, bad := range []string{"zz  /x\n", "abcd  /x\n", "sha999:abcd  /x\n"} {
		if _, err := NewAllowlist().ReadFrom(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err = %v, want an error naming line 1", bad, err)
		}
	}
}
