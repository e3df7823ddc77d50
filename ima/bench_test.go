package ima

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
)

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
// scratch, as a verifier does in the first round of a boot: parse the
// binary list, verify it against quoted SHA-1 and SHA-256 PCR 10 with both
// extend schemes still possible, and check every file digest against a
// 1,000,000-digest allowlist.
func BenchmarkMillion(b *testing.B) {
	f := millionFixture(b)
	quoted := PCRValues{SHA1: {10: nil}, SHA256: {10: nil}}
	quoted[SHA1][10] = f.state.Banks[0].PCRs[10]
	quoted[SHA256][10] = f.state.Banks[1].PCRs[10]
	policy := &Policy{Rules: []Rule{{Name: "distro", Allowlist: f.allow}}}
	b.SetBytes(int64(len(f.list)))
	b.ResetTimer()
	for b.Loop() {
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
	}
}

// BenchmarkMillionKnownScheme is BenchmarkMillion for a verifier that
// keeps the extend scheme from an earlier boot's state, so only the
// per-bank scheme is replayed.
func BenchmarkMillionKnownScheme(b *testing.B) {
	f := millionFixture(b)
	quoted := PCRValues{SHA1: {10: f.state.Banks[0].PCRs[10]}, SHA256: {10: f.state.Banks[1].PCRs[10]}}
	policy := &Policy{Rules: []Rule{{Name: "distro", Allowlist: f.allow}}}
	prior := &State{ResetCount: 1, Banks: []BankState{{Algorithm: SHA1, Scheme: PerBankHash}, {Algorithm: SHA256, Scheme: PerBankHash}}}
	b.SetBytes(int64(len(f.list)))
	b.ResetTimer()
	for b.Loop() {
		entries, err := ParseBinary(f.list, ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		res, err := Verify(prior, Round{ResetCount: 1, Entries: entries, Quoted: quoted}, VerifyOptions{InsecureSkipBootAggregate: true})
		if err != nil {
			b.Fatal(err)
		}
		if rep := policy.Check(res.Verified); rep.Failed() {
			b.Fatalf("policy failed: %+v", rep.Verdicts[0])
		}
	}
}

// BenchmarkIncrement verifies 1,000 new entries on top of the state after
// 1,000,000: parse them, verify from the stored state, check them.
func BenchmarkIncrement(b *testing.B) {
	f := millionFixture(b)
	policy := &Policy{Rules: []Rule{{Name: "distro", Allowlist: f.allow}}}
	b.SetBytes(int64(len(f.increment)))
	b.ResetTimer()
	for b.Loop() {
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
	}
}

// BenchmarkPeerSHA256 is the peer for the ratios: one SHA-256 over each
// entry's template data of the 1,000,000-entry list, the least work any
// verifier of a SHA-256 bank does.
func BenchmarkPeerSHA256(b *testing.B) {
	f := millionFixture(b)
	b.SetBytes(int64(len(f.list)))
	b.ResetTimer()
	for b.Loop() {
		for i := range f.entries {
			sha256.Sum256(f.entries[i].TemplateData)
		}
	}
}
