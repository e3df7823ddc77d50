package bundle

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"
)

// fuzzKey is a fixed Ed25519 key, so that seeds signed with it verify.
func fuzzKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := newPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func FuzzParse(f *testing.F) {
	f.Add(readExample(f))
	f.Add([]byte(`{"schema":"https://github.com/vouch-attest/vouch/bundle/v1"}`))
	f.Add([]byte(`{"schema":"https://github.com/vouch-attest/vouch/bundle/v1","publisher":"p","product":"d","version":"1",` +
		`"not_before":"2026-01-01T00:00:00Z","not_after":"2027-01-01T00:00:00Z",` +
		`"components":[{"name":"c","kind":"other","values":[{"pcr":4,"digests":{"sha1":"0000000000000000000000000000000000000000"}}]}]}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip unchanged.
		out, err := b.Marshal()
		if err != nil {
			t.Fatalf("marshal of a parsed bundle failed: %v", err)
		}
		b2, err := Parse(out)
		if err != nil {
			t.Fatalf("reparse of marshalled bundle failed: %v\n%s", err, out)
		}
		out2, err := b2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the bundle:\n%s\n%s", out, out2)
		}
	})
}

func FuzzVerifyEnvelope(f *testing.F) {
	key := fuzzKey(f)
	b, err := Parse(readExample(f))
	if err != nil {
		f.Fatal(err)
	}
	env, err := NewEnvelope(b)
	if err != nil {
		f.Fatal(err)
	}
	unsigned, err := env.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	if err := env.Sign(key, nil); err != nil {
		f.Fatal(err)
	}
	signed, err := env.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(unsigned)
	f.Add([]byte(`{"payloadType":"application/vnd.vouch.bundle.v1+json","payload":"e30=","signatures":[{"sig":"AA=="}]}`))

	trust := NewTrustStore()
	if err := trust.Add("example-debian-mirror", key.Public()); err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseEnvelope(data)
		if err != nil {
			return
		}
		v, err := Verify(env, trust, now)
		if err != nil {
			if RejectionReason(err) == 0 {
				t.Fatalf("verification of a parsed envelope failed without a reason: %v", err)
			}
			return
		}
		if v.Bundle() == nil || v.Publisher() != "example-debian-mirror" {
			t.Fatalf("verified bundle is incomplete: %+v", v)
		}
	})
}
