package result

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/bundle"
)

var issued = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func sample() *Result {
	return &Result{
		Machine: "web1", State: StateTrusted, EKSHA256: strings.Repeat("ab", 32), AKSHA256: strings.Repeat("cd", 32),
		BootCount: 3, ResetCount: 7, VerifiedAt: issued.Add(-time.Minute), IssuedAt: issued, ExpiresAt: issued.Add(3 * time.Minute),
	}
}

func signed(t testing.TB, alg string) ([]byte, *bundle.PrivateKey) {
	t.Helper()
	key, err := bundle.GenerateKey(alg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	data, err := Sign(sample(), key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return data, key
}

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range []string{bundle.AlgEd25519, bundle.AlgECDSAP256} {
		data, key := signed(t, alg)
		r, err := Verify(data, key.Public(), issued.Add(time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if !r.Trusted() || r.Machine != "web1" || r.BootCount != 3 || r.Verifier != key.KeyID() {
			t.Errorf("%s: verified result = %+v", alg, r)
		}
	}
}

func TestVerifyRejectsOtherKey(t *testing.T) {
	data, _ := signed(t, bundle.AlgEd25519)
	other, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(data, other.Public(), issued); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify with another key: %v, want ErrSignature", err)
	}
}

func TestVerifyRejectsChangedPayload(t *testing.T) {
	data, key := signed(t, bundle.AlgEd25519)
	var env bundle.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	env.Payload = bytes.Replace(env.Payload, []byte(`"boot_count":3`), []byte(`"boot_count":4`), 1)
	changed, _ := json.Marshal(env)
	if _, err := Verify(changed, key.Public(), issued); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify of a changed payload: %v, want ErrSignature", err)
	}
}

func TestVerifyValidityPeriod(t *testing.T) {
	data, key := signed(t, bundle.AlgEd25519)
	for _, at := range []time.Time{issued.Add(-time.Second), issued.Add(3 * time.Minute), issued.Add(time.Hour)} {
		r, err := Verify(data, key.Public(), at)
		if !errors.Is(err, ErrExpired) {
			t.Errorf("Verify at %s: %v, want ErrExpired", at, err)
		}
		if r == nil || r.Machine != "web1" {
			t.Errorf("Verify at %s returned %+v, want the result for display", at, r)
		}
	}
}

// TestVerifyRejectsBundle checks that a bundle envelope signed by the same
// key does not verify as a result: the payload type is signed.
func TestVerifyRejectsBundle(t *testing.T) {
	key, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(sample())
	env := &bundle.Envelope{PayloadType: bundle.PayloadType, Payload: payload}
	if err := env.Sign(key, rand.Reader); err != nil {
		t.Fatal(err)
	}
	data, _ := env.Marshal()
	if _, err := Verify(data, key.Public(), issued); err == nil || !strings.Contains(err.Error(), "not an attestation result's") {
		t.Errorf("Verify of a bundle envelope: %v, want a payload type error", err)
	}
}

// TestVerifyRejectsDuplicateMembers checks a signed payload whose state
// appears twice, which readers may resolve differently.
func TestVerifyRejectsDuplicateMembers(t *testing.T) {
	key, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(sample())
	payload = bytes.Replace(payload, []byte(`"state":"trusted"`), []byte(`"state":"untrusted","State":"trusted"`), 1)
	env := &bundle.Envelope{PayloadType: PayloadType, Payload: payload}
	if err := env.Sign(key, rand.Reader); err != nil {
		t.Fatal(err)
	}
	data, _ := env.Marshal()
	if _, err := Verify(data, key.Public(), issued); err == nil || errors.Is(err, ErrSignature) {
		t.Errorf("Verify of duplicate members: %v, want a decode error", err)
	}
}

func TestSignRejectsIncompleteResult(t *testing.T) {
	key, _ := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	r := sample()
	r.ExpiresAt = r.IssuedAt
	if _, err := Sign(r, key, rand.Reader); err == nil {
		t.Error("Sign accepted a result that expires when it is issued")
	}
}

func FuzzVerify(f *testing.F) {
	key, err := bundle.GenerateKey(bundle.AlgEd25519, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	data, err := Sign(sample(), key, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"payloadType":"` + PayloadType + `","payload":"` + base64.StdEncoding.EncodeToString([]byte(`{}`)) + `","signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Verify(data, key.Public(), issued)
		if err == nil && (r == nil || r.Machine == "") {
			t.Fatalf("Verify accepted %q as %+v", data, r)
		}
	})
}
