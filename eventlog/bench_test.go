package eventlog

import (
	"crypto"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// BenchmarkCorpusInterleaved runs one corpus pass of each implementation
// per iteration, alternating, and reports both rates and their ratio. On
// a shared machine the load then hits both sides alike, so the ratio is
// steadier than the ratio of two separate benchmarks. The cpu-speedup
// metric compares process CPU time, which other processes do not inflate;
// run with -cpu 1 so that garbage collection shares the measured thread.
func BenchmarkCorpusInterleaved(b *testing.B) {
	logs := loadBenchLogs(b)
	opts := VerifyOptions{Workarounds: Workarounds()}
	var vouch, goAttestation, vouchCPU, goAttestationCPU time.Duration
	for b.Loop() {
		start, startCPU := time.Now(), processCPUTime()
		for _, l := range logs {
			log, err := Parse(l.raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Verify(log, l.quoted, opts); err != nil {
				b.Fatal(err)
			}
		}
		mid, midCPU := time.Now(), processCPUTime()
		for _, l := range logs {
			el, err := attest.ParseEventLog(l.raw)
			if err != nil {
				continue
			}
			_, _ = el.Verify(l.pcrs)
		}
		vouch += mid.Sub(start)
		goAttestation += time.Since(mid)
		vouchCPU += midCPU - startCPU
		goAttestationCPU += processCPUTime() - midCPU
	}
	n := float64(b.N * len(logs))
	b.ReportMetric(n/vouch.Seconds(), "vouch-logs/s")
	b.ReportMetric(n/goAttestation.Seconds(), "go-attestation-logs/s")
	b.ReportMetric(goAttestation.Seconds()/vouch.Seconds(), "speedup")
	if vouchCPU > 0 {
		b.ReportMetric(goAttestationCPU.Seconds()/vouchCPU.Seconds(), "cpu-speedup")
	}
}
