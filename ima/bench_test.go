//go:build unix

package ima

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the user and system CPU time of the process. Benchmarks
// report it per operation next to the wall time, because the wall time of
// a shared machine includes time other processes held the core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs body b.N times and reports the CPU time per operation.
func loop(b *testing.B, body func()) {
	b.Helper()
	b.ResetTimer()
	start := cpuTime()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

// syntheticList builds an ima-ng binary list of n entries after a real
// boot_aggregate-style first entry: sha256 file digests of distinct
// contents, paths of typical length, SHA-1 template hashes as in
// binary_runtime_measurements.
func syntheticList(n int) []byte {
	out := make([]byte, 0, n*130)
	for i := 0; i < n; i++ {
		content := binary.LittleEndian.AppendUint64(nil, uint64(i))
		digest := sha256.Sum256(content)
		name := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/pkg%05d/lib%07d.so.1", i%50000, i)
		if i == 0 {
			name = BootAggregateName
		}
		data := encodeFields(digestField("sha256", digest[:]), append([]byte(name), 0))
		th := sha1.Sum(data)
		e := Entry{PCR: 10, TemplateHash: th[:], TemplateName: TemplateIMANG, TemplateData: data}
		out = AppendBinary(out, &e)
	}
	return out
}

type benchFixture struct {
	list      []byte
	entries   []Entry
	allow     *Allowlist
	quoted    PCRValues // after all entries
	baseN     int       // entries covered by state
	state     *State    // after baseN entries
	increment []byte    // binary list of the entries after baseN
}

var (
	fixtureOnce sync.Once
	fixture     benchFixture
)

const (
	benchEntries   = 1_000_000
	benchIncrement = 1_000
)

// millionFixture builds, once per process, a list of 1,000,000 entries
// plus 1,000 more, an allowlist of every file digest, quoted PCR values
// and the verifier state after the first 1,000,000 entries.
func millionFixture(b *testing.B) *benchFixture {
	fixtureOnce.Do(func() {
		total := benchEntries + benchIncrement
		all := syntheticList(total)
		entries, err := ParseBinary(all, ParseOptions{})
		if err != nil {
			panic(err)
		}
		f := &fixture
		f.allow = NewAllowlist()
		for i := 1; i < benchEntries; i++ {
			fl, _ := entries[i].Fields()
			if err := f.allow.Add("sha256", fl.Digest, ""); err != nil {
				panic(err)
			}
		}
		for i := benchEntries; i < total; i++ {
			fl, _ := entries[i].Fields()
			f.allow.Add("sha256", fl.Digest, "")
		}
		cut := 0
		for i := 0; i < benchEntries; i++ {
			cut += 4 + 20 + 4 + len(TemplateIMANG) + 4 + len(entries[i].TemplateData)
		}
		f.list = all[:cut]
		f.increment = all[cut:]
		f.baseN = benchEntries
		f.entries = entries[:benchEntries]
		base, err := ReplayEntries(f.entries, []Algorithm{SHA1, SHA256})
		if err != nil {
			panic(err)
		}
		full, err := ReplayEntries(entries, []Algorithm{SHA1, SHA256})
		if err != nil {
			panic(err)
		}
		res, err := Verify(nil, Round{Entries: f.entries, Quoted: base.PCRs[PerBankHash]}, VerifyOptions{InsecureSkipBootAggregate: true})
		if err != nil {
			panic(err)
		}
		f.state = res.State
		f.quoted = full.PCRs[PerBankHash]
	})
	return &fixture
}

// BenchmarkMillion replays and checks a 1,000,000-entry ima-ng list from
// scratch, as a verifier does in the first round of a boot. It parses the
// binary list and verifies it against quoted SHA-1 and SHA-256 PCR 10 with
// no extend scheme known yet. Then it checks every file digest against a
// 1,000,000-digest allowlist.
func BenchmarkMillion(b *testing.B) {
	f := millionFixture(b)
	quoted := PCRValues{SHA1: {10: nil}, SHA256: {10: nil}}
	quoted[SHA1][10] = f.state.Banks[0].PCRs[10]
	quoted[SHA256][10] = f.state.Banks[1].PCRs[10]
	policy := &Policy{Rules: []Rule{{Name: "distro", Allowlist: f.allow, AllowSHA1: true}}}
	b.SetBytes(int64(len(f.list)))
	loop(b, func() {
		entries, err := ParseBinary(f.list, ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		res, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{InsecureSkipBootAggregate: true})
		if err != nil {
			b.Fatal(err)
		}
		if rep := policy.Check(res.Verified); rep.Failed() {
			b.Fatalf("policy failed: %+v", rep.Verdicts[0])
		}
	})
}

// BenchmarkMillionSteps times the steps of BenchmarkMillion one by one.
func BenchmarkMillionSteps(b *testing.B) {
	f := millionFixture(b)
	quoted := PCRValues{SHA1: {10: f.state.Banks[0].PCRs[10]}, SHA256: {10: f.state.Banks[1].PCRs[10]}}
	policy := &Policy{Rules: []Rule{{Name: "distro", Allowlist: f.allow, AllowSHA1: true}}}
	b.Run("parse", func(b *testing.B) {
		loop(b, func() {
			if _, err := ParseBinary(f.list, ParseOptions{}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("verify", func(b *testing.B) {
		loop(b, func() {
			if _, err := Verify(nil, Round{Entries: f.entries, Quoted: quoted}, VerifyOptions{InsecureSkipBootAggregate: true}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("verify-sha256-bank", func(b *testing.B) {
		q := PCRValues{SHA256: quoted[SHA256]}
		loop(b, func() {
			if _, err := Verify(nil, Round{Entries: f.entries, Quoted: q}, VerifyOptions{InsecureSkipBootAggregate: true}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("check", func(b *testing.B) {
		loop(b, func() {
			if rep := policy.Check(f.entries); rep.Failed() {
				b.Fatal("policy failed")
			}
		})
	})
}

// BenchmarkMillionInterleaved runs the peer and BenchmarkMillion's work
// in turn within each iteration, so that load from other processes hits
// both alike, and reports the ratio of their summed CPU times.
func BenchmarkMillionInterleaved(b *testing.B) {
	f := millionFixture(b)
	quoted := PCRValues{SHA1: {10: f.state.Banks[0].PCRs[10]}, SHA256: {10: f.state.Banks[1].PCRs[10]}}
	policy := &Policy{Rules: []Rule{{Name: "distro", Allowlist: f.allow, AllowSHA1: true}}}
	var peer, full time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := cpuTime()
		for i := range f.entries {
			sha256.Sum256(f.entries[i].TemplateData)
		}
		t1 := cpuTime()
		entries, err := ParseBinary(f.list, ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		res, err := Verify(nil, Round{Entries: entries, Quoted: quoted}, VerifyOptions{InsecureSkipBootAggregate: true})
		if err != nil {
			b.Fatal(err)
		}
		if rep := policy.Check(res.Verified); rep.Failed() {
			b.Fatal("policy failed")
		}
		t2 := cpuTime()
		peer += t1 - t0
		full += t2 - t1
	}
	b.ReportMetric(float64(full)/float64(peer), "ratio")
}

// BenchmarkIncrement verifies 1,000 new entries on top of the state after
// 1,000,000: parse them, verify from the stored state, check them.
func BenchmarkIncrement(b *testing.B) {
	f := millionFixture(b)
	policy := &Policy{Rules: []Rule{{Name: "distro", Allowlist: f.allow, AllowSHA1: true}}}
	b.SetBytes(int64(len(f.increment)))
	loop(b, func() {
		entries, err := ParseBinary(f.increment, ParseOptions{FirstIndex: f.baseN})
		if err != nil {
			b.Fatal(err)
		}
		res, err := Verify(f.state, Round{Offset: f.baseN, Entries: entries, Quoted: f.quoted}, VerifyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Verified) != benchIncrement {
			b.Fatalf("verified %d", len(res.Verified))
		}
		if rep := policy.Check(res.Verified); rep.Failed() {
			b.Fatal("policy failed")
		}
	})
}

// BenchmarkPeerSHA256 is the peer for the ratios: one SHA-256 over each
// entry's template data of the 1,000,000-entry list, the least work any
// verifier of a SHA-256 bank does.
func BenchmarkPeerSHA256(b *testing.B) {
	f := millionFixture(b)
	b.SetBytes(int64(len(f.list)))
	loop(b, func() {
		for i := range f.entries {
			sha256.Sum256(f.entries[i].TemplateData)
		}
	})
}
