package eventlog

import (
	"crypto"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-attestation/attest"
)

// benchLog is one corpus log with the PCR values both implementations
// compare their replay with: this package's own replay of the log, so
// every log replays in full in both. Both get the SHA-1 and SHA-256 banks,
// the banks go-attestation replays.
type benchLog struct {
	raw    []byte
	quoted PCRValues
	pcrs   []attest.PCR
}

func loadBenchLogs(b *testing.B) []benchLog {
	dir := corpusDir(b)
	var out []benchLog
	for _, r := range corpusLogs(b, dir) {
		raw, err := os.ReadFile(filepath.Join(dir, r.Path))
		if err != nil {
			b.Fatal(err)
		}
		log, err := Parse(raw)
		if err != nil {
			continue
		}
		quoted, err := Replay(log)
		if err != nil {
			continue
		}
		bl := benchLog{raw: raw, quoted: PCRValues{}}
		for alg, pcrs := range quoted {
			h, _ := alg.Hash()
			if h != crypto.SHA1 && h != crypto.SHA256 {
				continue // go-attestation replays SHA-1 and SHA-256 only
			}
			bl.quoted[alg] = pcrs
			for i, v := range pcrs {
				bl.pcrs = append(bl.pcrs, attest.PCR{Index: i, Digest: v, DigestAlg: h})
			}
		}
		if len(bl.quoted) == 0 {
			continue // a SHA-384-only TDX log: nothing to compare in either
		}
		out = append(out, bl)
	}
	return out
}

// BenchmarkCorpus parses and replays every corpus log that this package
// parses, once with this package (Parse, then Verify, which includes the
// event data checks of Check) and once with go-attestation v0.6.4
// (ParseEventLog, then EventLog.Verify). Compare the logs/s metrics of
// the two sub-benchmarks.
func BenchmarkCorpus(b *testing.B) {
	logs := loadBenchLogs(b)
	var size int
	for _, l := range logs {
		size += len(l.raw)
	}
	opts := VerifyOptions{Workarounds: Workarounds()}

	b.Run("vouch", func(b *testing.B) {
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			for _, l := range logs {
				log, err := Parse(l.raw)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Verify(log, l.quoted, opts); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(logs))/b.Elapsed().Seconds(), "logs/s")
	})

	b.Run("go-attestation", func(b *testing.B) {
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			for _, l := range logs {
				el, err := attest.ParseEventLog(l.raw)
				if err != nil {
					continue // go-attestation rejects a few logs this package parses
				}
				_, _ = el.Verify(l.pcrs)
			}
		}
		b.ReportMetric(float64(b.N*len(logs))/b.Elapsed().Seconds(), "logs/s")
	})
}
