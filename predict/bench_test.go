package predict

import (
	"bytes"
	"testing"
)

// benchImage is an 8 MiB PE image, the size of a distribution kernel.
func benchImage(b *testing.B) []byte {
	b.Helper()
	return buildPE(b, peSpec{
		sections: []testSection{{".text", 8 << 20, bytes.Repeat([]byte{0x90}, 8<<20)}},
		cert:     make([]byte, 2048),
	})
}

// BenchmarkAuthenticode measures the Authenticode hash in three banks.
// Compare with BenchmarkPlainHash, which hashes the same bytes in the same
// banks without parsing: the ratio is the cost of the PE layout.
func BenchmarkAuthenticode(b *testing.B) {
	img := benchImage(b)
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		if _, err := Authenticode(img, AllBanks); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlainHash(b *testing.B) {
	img := benchImage(b)
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		if _, err := hashBytes(AllBanks, img); err != nil {
			b.Fatal(err)
		}
	}
}
