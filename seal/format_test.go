package seal

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// testPCRs returns sha256 values for PCRs 0, 2, 4 and 7 derived from seed.
func testPCRs(seed string) PCRs {
	p := PCRs{Bank: SHA256, Values: map[int][]byte{}}
	for _, i := range []int{0, 2, 4, 7} {
		sum := sha256.Sum256([]byte(seed + string(rune('0'+i))))
		p.Values[i] = sum[:]
	}
	return p
}

var testKeys sync.Map // seed -> *ecdsa.PrivateKey

// testKey returns the same P-256 key for the same seed within a test run.
// ecdsa.GenerateKey does not promise determinism for a given reader.
func testKey(t testing.TB, seed uint64) *ecdsa.PrivateKey {
	t.Helper()
	if k, ok := testKeys.Load(seed); ok {
		return k.(*ecdsa.PrivateKey)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.NewChaCha8([32]byte{byte(seed)}))
	if err != nil {
		t.Fatal(err)
	}
	actual, _ := testKeys.LoadOrStore(seed, k)
	return actual.(*ecdsa.PrivateKey)
}

// sealedTemplate returns the public area the tpm package gives a sealed
// data object with the given policy.
func sealedTemplate(policy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, NoDA: true},
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// syntheticBlob builds a blob whose object public area is what the TPM
// would return. Its private area is placeholder bytes, because parsing
// does not decrypt it.
func syntheticBlob(t testing.TB, kind PolicyKind) *Blob {
	t.Helper()
	b := &Blob{Kind: kind, Parent: ParentECCSRK, PCRs: testPCRs("a"), Private: tpm2.TPM2BPrivate{Buffer: bytes.Repeat([]byte{0x5a}, 96)}}
	if kind == PolicyAuthorized {
		pub, err := PolicyKeyPublic(&testKey(t, 1).PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		b.PolicyKey = pub
		b.Counter = DefaultCounterIndex
	}
	policy, err := b.AuthPolicy()
	if err != nil {
		t.Fatal(err)
	}
	b.Public = tpm2.New2B(sealedTemplate(policy))
	return b
}

func TestBlobRoundTrip(t *testing.T) {
	for _, kind := range []PolicyKind{PolicyPCRValues, PolicyAuthorized} {
		t.Run(kind.String(), func(t *testing.T) {
			b := syntheticBlob(t, kind)
			data, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseBlob(data)
			if err != nil {
				t.Fatal(err)
			}
			if !back.Equal(b) {
				t.Errorf("ParseBlob(Marshal(b)) differs from b")
			}
			if back.Kind != kind || back.PCRs.Selection().String() != "0,2,4,7" {
				t.Errorf("parsed kind %s selection %s", back.Kind, back.PCRs.Selection())
			}
		})
	}
}

func TestParseBlobRejects(t *testing.T) {
	good, err := syntheticBlob(t, PolicyPCRValues).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		field  string
	}{
		{"empty", func([]byte) []byte { return nil }, "magic"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, "magic"},
		{"version", func(b []byte) []byte { b[9] = 2; return b }, "version"},
		{"policy kind", func(b []byte) []byte { b[10] = 9; return b }, "policy kind"},
		{"parent kind", func(b []byte) []byte { b[11] = 0; return b }, "parent kind"},
		{"bank", func(b []byte) []byte { b[13] = 0x99; return b }, "pcr bank"},
		{"no pcr", func(b []byte) []byte { copy(b[14:18], []byte{0, 0, 0, 0}); return b }, "pcr selection"},
		{"pcr 24", func(b []byte) []byte { b[14] = 1; return b }, "pcr selection"},
		{"pcr value altered", func(b []byte) []byte { b[20] ^= 1; return b }, "sealed object public area"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, "sealed object private area"},
		{"trailing", func(b []byte) []byte { return append(b, 0) }, "end"},
		{"too large", func(b []byte) []byte { return append(b, make([]byte, MaxFileSize)...) }, "file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBlob(c.mutate(bytes.Clone(good)))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("ParseBlob error = %v, want a *FormatError", err)
			}
			if fe.Field != c.field {
				t.Errorf("error names field %q, want %q (%v)", fe.Field, c.field, err)
			}
		})
	}
}

func TestParseBlobRejectsUserWithAuth(t *testing.T) {
	b := syntheticBlob(t, PolicyPCRValues)
	pub, _ := b.Public.Contents()
	pub.ObjectAttributes.UserWithAuth = true
	b.Public = tpm2.New2B(*pub)
	if _, err := b.Marshal(); err == nil || !strings.Contains(err.Error(), "without the policy") {
		t.Errorf("Marshal of a userWithAuth object: error %v, want one about unsealing without the policy", err)
	}
}

func TestApprovalRoundTripAndVerify(t *testing.T) {
	blob := syntheticBlob(t, PolicyAuthorized)
	key := testKey(t, 1)
	a, err := Approve(rand.NewChaCha8([32]byte{9}), key, testPCRs("b"), DefaultCounterIndex, 7)
	if err != nil {
		t.Fatal(err)
	}
	data, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseApproval(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.VerifyFor(blob); err != nil {
		t.Fatalf("VerifyFor: %v", err)
	}
	if back.Generation != 7 || back.Counter != DefaultCounterIndex {
		t.Errorf("parsed generation %d counter 0x%x", back.Generation, uint32(back.Counter))
	}

	// Check 4: altered generation breaks the signature.
	back.Generation = 8
	var ve *VerificationError
	if err := back.VerifyFor(blob); !errors.As(err, &ve) {
		t.Errorf("VerifyFor with altered generation = %v, want a *VerificationError", err)
	}
	// Check 3: another key's approval.
	other, _ := Approve(rand.NewChaCha8([32]byte{9}), testKey(t, 2), testPCRs("b"), DefaultCounterIndex, 7)
	if err := other.VerifyFor(blob); err == nil || !strings.Contains(err.Error(), "not by the blob's policy key") {
		t.Errorf("VerifyFor with another key = %v", err)
	}
	// Check 2: another counter.
	noCounter, _ := Approve(rand.NewChaCha8([32]byte{9}), key, testPCRs("b"), 0, 0)
	if err := noCounter.VerifyFor(blob); err == nil || !strings.Contains(err.Error(), "revocation counter") {
		t.Errorf("VerifyFor with another counter = %v", err)
	}
	// Check 1: a PCR blob takes no approvals.
	if err := a.VerifyFor(syntheticBlob(t, PolicyPCRValues)); err == nil {
		t.Errorf("VerifyFor accepted a pcr-policy blob")
	}
}

func TestParseApprovalRejects(t *testing.T) {
	a, _ := Approve(rand.NewChaCha8([32]byte{9}), testKey(t, 1), testPCRs("b"), 0, 0)
	good, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseApproval(good[:len(good)-3]); err == nil {
		t.Errorf("truncated approval parsed")
	}
	if _, err := ParseBlob(good); err == nil || !strings.Contains(err.Error(), "not a vouch sealed blob") {
		t.Errorf("ParseBlob(approval) = %v, want a magic error", err)
	}
}

func TestParseExpectedCorpusLayout(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "rhel8-uefi.expected_pcrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseExpected(data, SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := p.Subset(SelectionOf(0, 2, 4, 7))
	if err != nil {
		t.Fatal(err)
	}
	if got := sub.Selection().String(); got != "0,2,4,7" {
		t.Errorf("subset selection %s", got)
	}
	if _, err := p.Subset(SelectionOf(0, 17)); err == nil || !strings.Contains(err.Error(), "pcr 17") {
		t.Errorf("Subset with a missing pcr = %v, want it named", err)
	}
	if _, err := ParseExpected(data, SHA512); err == nil || !strings.Contains(err.Error(), "no sha512 bank") {
		t.Errorf("ParseExpected for a missing bank = %v", err)
	}
	if _, err := ParseExpected([]byte(`{"banks":{"sha256":{"0":"abcd"}}}`), SHA256); err == nil || !strings.Contains(err.Error(), "pcr 0") {
		t.Errorf("ParseExpected with a short digest = %v", err)
	}
}

func TestPCRPolicyMatchesKnownDigest(t *testing.T) {
	// PolicyPCR over sha256 PCR 0..7 all zero: digest recomputed by hand from
	// TPM 2.0 Part 3 section 23.7: H(zeros || TPM_CC_PolicyPCR || pcrs || H(values)).
	p := PCRs{Bank: SHA256, Values: map[int][]byte{}}
	for i := range 8 {
		p.Values[i] = make([]byte, 32)
	}
	got, err := PCRPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	values := sha256.New()
	for range 8 {
		values.Write(make([]byte, 32))
	}
	h := sha256.New()
	h.Write(make([]byte, 32))
	h.Write([]byte{0, 0, 0x01, 0x7f})                   // TPM_CC_PolicyPCR
	h.Write([]byte{0, 0, 0, 1, 0, 0x0b, 3, 0xff, 0, 0}) // TPML_PCR_SELECTION: 1 bank, sha256, 3 bytes
	h.Write(values.Sum(nil))
	if want := h.Sum(nil); !bytes.Equal(got, want) {
		t.Errorf("PCRPolicy = %x, want %x", got, want)
	}
}

func TestPolicyKeyFiles(t *testing.T) {
	privPEM, pubPEM, err := GeneratePolicyKey(rand.NewChaCha8([32]byte{3}))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePolicyPrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePolicyPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(&priv.PublicKey) {
		t.Errorf("public key file does not match the private key")
	}

	fromPriv, err := ParsePolicyPublicKey(privPEM)
	if err != nil || !fromPriv.Equal(pub) {
		t.Errorf("ParsePolicyPublicKey(private key file) = %v", err)
	}
	if _, err := ParsePolicyPrivateKey(pubPEM); err == nil {
		t.Errorf("ParsePolicyPrivateKey accepted a public key")
	}
	if _, err := ParsePolicyPublicKey([]byte("not pem")); err == nil {
		t.Errorf("ParsePolicyPublicKey accepted text without PEM")
	}

	tpmPub, err := PolicyKeyPublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	back, err := policyKeyECDSA(tpmPub)
	if err != nil || !back.Equal(pub) {
		t.Errorf("policyKeyECDSA(PolicyKeyPublic(k)) = %v", err)
	}
}

func TestParseSwtpmFiles(t *testing.T) {
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	pcrBlob, err := ParseBlob(read("swtpm-pcr.seal"))
	if err != nil {
		t.Fatalf("swtpm-pcr.seal: %v", err)
	}
	if pcrBlob.Kind != PolicyPCRValues || pcrBlob.PCRs.Selection().String() != "0,2,4,7" {
		t.Errorf("swtpm-pcr.seal: kind %s selection %s", pcrBlob.Kind, pcrBlob.PCRs.Selection())
	}
	authBlob, err := ParseBlob(read("swtpm-authorized.seal"))
	if err != nil {
		t.Fatalf("swtpm-authorized.seal: %v", err)
	}
	if authBlob.Kind != PolicyAuthorized || authBlob.Counter != DefaultCounterIndex {
		t.Errorf("swtpm-authorized.seal: kind %s counter 0x%08x", authBlob.Kind, uint32(authBlob.Counter))
	}
	a, err := ParseApproval(read("swtpm.approval"))
	if err != nil {
		t.Fatalf("swtpm.approval: %v", err)
	}
	if err := a.VerifyFor(authBlob); err != nil {
		t.Errorf("swtpm.approval does not verify for swtpm-authorized.seal: %v", err)
	}
	if err := a.VerifyFor(pcrBlob); err == nil {
		t.Errorf("swtpm.approval verified for a pcr blob")
	}
}

func TestParseExpectedRejectsRepeatedMember(t *testing.T) {
	d := strings.Repeat("ab", 32)
	for _, doc := range []string{
		`{"banks":{"sha256":{"0":"` + d + `"}},"banks":{}}`,
		`{"banks":{"sha256":{"0":"` + d + `","0":"` + strings.Repeat("cd", 32) + `"}}}`,
	} {
		_, err := ParseExpected([]byte(doc), SHA256)
		if err == nil || !strings.Contains(err.Error(), "duplicate member") {
			t.Errorf("ParseExpected(%s) = %v, want a duplicate member error", doc, err)
		}
	}
}
