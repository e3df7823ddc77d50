package seal

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds the synthetic files and every file under testdata with the
// given extension, such as blobs sealed on swtpm.
func addSeeds(f *testing.F, ext string, synthetic ...[]byte) {
	for _, s := range synthetic {
		f.Add(s)
	}
	paths, _ := filepath.Glob(filepath.Join("testdata", "*"+ext))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func FuzzParseBlob(f *testing.F) {
	pcr, _ := syntheticBlob(f, PolicyPCRValues).Marshal()
	auth, _ := syntheticBlob(f, PolicyAuthorized).Marshal()
	addSeeds(f, ".seal", pcr, auth)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBlob(data)
		if err != nil {
			if b != nil {
				t.Fatalf("ParseBlob returned a blob with error %v", err)
			}
			return
		}
		// A blob that parses re-encodes to the same bytes.
		out, err := b.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed blob: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("Marshal(ParseBlob(data)) differs from data")
		}
	})
}

func FuzzParseApproval(f *testing.F) {
	key := testKey(f, 1)
	a1, _ := Approve(rand.NewChaCha8([32]byte{1}), key, testPCRs("a"), DefaultCounterIndex, 3)
	a2, _ := Approve(rand.NewChaCha8([32]byte{2}), key, testPCRs("b"), 0, 0)
	s1, _ := a1.Marshal()
	s2, _ := a2.Marshal()
	addSeeds(f, ".approval", s1, s2)
	blob := syntheticBlob(f, PolicyAuthorized)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseApproval(data)
		if err != nil {
			return
		}
		out, err := a.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed approval: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("Marshal(ParseApproval(data)) differs from data")
		}
		_ = a.VerifyFor(blob) // must not panic
	})
}

func FuzzParseExpected(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "rhel8-uefi.expected_pcrs.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"banks":{"sha256":{"0":"00"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseExpected(data, SHA256)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParseExpected returned invalid values: %v", err)
		}
	})
}
