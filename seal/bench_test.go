package seal

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/vouch-attest/vouch/tpm"
)

func BenchmarkParseBlob(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "swtpm-authorized.seal"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseBlob(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnseal compares unsealing a PCR-policy blob with unsealing an
// authorized blob under an approval with a revocation counter, on the
// in-process simulator. The authorized path adds PolicyNV, LoadExternal,
// VerifySignature and PolicyAuthorize, plus the software checks.
func BenchmarkUnseal(b *testing.B) {
	if !tpm.SimulatorAvailable {
		b.Skip("this build has no simulator (CGO_ENABLED=0)")
	}
	tp, err := tpm.Open(tpm.Config{Transport: tpm.TransportSimulator})
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	pcrs, err := ReadPCRs(tp, SHA256, SelectionOf(0, 2, 4, 7))
	if err != nil {
		b.Fatal(err)
	}
	secret := []byte("benchmark secret")

	pcrBlob, err := Seal(tp, secret, Request{PCRs: pcrs})
	if err != nil {
		b.Fatal(err)
	}
	key := testKey(b, 21)
	generation, err := tp.EnsureCounter(DefaultCounterIndex)
	if err != nil {
		b.Fatal(err)
	}
	authBlob, err := Seal(tp, secret, Request{PCRs: pcrs, PolicyKey: &key.PublicKey, Counter: DefaultCounterIndex})
	if err != nil {
		b.Fatal(err)
	}
	approval, err := Approve(rand.NewChaCha8([32]byte{5}), key, pcrs, DefaultCounterIndex, generation)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("pcr", func(b *testing.B) {
		for b.Loop() {
			if _, err := Unseal(tp, pcrBlob, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authorized", func(b *testing.B) {
		for b.Loop() {
			if _, err := Unseal(tp, authBlob, []*Approval{approval}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
