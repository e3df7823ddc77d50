package bundle

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inPeriod is a time inside the example bundle's validity period.
var inPeriod = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB, alg string) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(alg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func trustFor(t testing.TB, publisher string, keys ...*PrivateKey) *TrustStore {
	t.Helper()
	ts := NewTrustStore()
	for _, k := range keys {
		if err := ts.Add(publisher, k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

func signedExample(t testing.TB, keys ...*PrivateKey) *Envelope {
	t.Helper()
	b, err := Parse(readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	env, err := NewEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := env.Sign(k, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("bundle accepted, want rejection %s", want)
	}
	if got := RejectionReason(err); got != want {
		t.Fatalf("reason = %s (%v), want %s", got, err, want)
	}
}

func TestVerifyAccepts(t *testing.T) {
	for _, alg := range []string{AlgEd25519, AlgECDSAP256} {
		t.Run(alg, func(t *testing.T) {
			key := newKey(t, alg)
			env := signedExample(t, key)
			// Round-trip through JSON as a verifier would receive it.
			data, err := env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ParseEnvelope(data)
			if err != nil {
				t.Fatal(err)
			}
			v, err := Verify(parsed, trustFor(t, "example-debian-mirror", key), inPeriod)
			if err != nil {
				t.Fatal(err)
			}
			if v.Bundle().ID() != "debian-12.8" {
				t.Errorf("bundle = %s", v.Bundle().ID())
			}
			if v.KeyID() != key.KeyID() || v.Publisher() != "example-debian-mirror" {
				t.Errorf("key %s publisher %s, want %s example-debian-mirror", v.KeyID(), v.Publisher(), key.KeyID())
			}
		})
	}
}

func TestVerifyUnsigned(t *testing.T) {
	key := newKey(t, AlgEd25519)
	env := signedExample(t)
	_, err := Verify(env, trustFor(t, "example-debian-mirror", key), inPeriod)
	wantReason(t, err, ReasonUnsigned)
}

func TestVerifyTamperedPayload(t *testing.T) {
	for _, alg := range []string{AlgEd25519, AlgECDSAP256} {
		t.Run(alg, func(t *testing.T) {
			key := newKey(t, alg)
			env := signedExample(t, key)
			// Swap one digest for another of the same length: still a
			// valid bundle, so only the signature can catch it.
			env.Payload = []byte(strings.Replace(string(env.Payload),
				"a68f6d71ebddaa19751ff8d729f67d11b0df8e4c49400c3e7e90de16119e1265",
				"b68f6d71ebddaa19751ff8d729f67d11b0df8e4c49400c3e7e90de16119e1265", 1))
			if _, err := Parse(env.Payload); err != nil {
				t.Fatalf("tampered payload should still parse: %v", err)
			}
			_, err := Verify(env, trustFor(t, "example-debian-mirror", key), inPeriod)
			wantReason(t, err, ReasonBadSignature)
			if !strings.Contains(err.Error(), key.KeyID()) {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

func TestVerifyTamperedSignature(t *testing.T) {
	key := newKey(t, AlgECDSAP256)
	env := signedExample(t, key)
	env.Signatures[0].Sig[len(env.Signatures[0].Sig)-1] ^= 1
	_, err := Verify(env, trustFor(t, "example-debian-mirror", key), inPeriod)
	wantReason(t, err, ReasonBadSignature)
}

func TestVerifyWrongKey(t *testing.T) {
	// The signature claims a trusted key's id but was made by another key.
	trusted := newKey(t, AlgEd25519)
	other := newKey(t, AlgEd25519)
	env := signedExample(t, other)
	env.Signatures[0].KeyID = trusted.KeyID()
	_, err := Verify(env, trustFor(t, "example-debian-mirror", trusted), inPeriod)
	wantReason(t, err, ReasonBadSignature)
}

func TestVerifyUntrustedPublisher(t *testing.T) {
	trusted := newKey(t, AlgEd25519)
	stranger := newKey(t, AlgECDSAP256)
	env := signedExample(t, stranger)
	_, err := Verify(env, trustFor(t, "example-debian-mirror", trusted), inPeriod)
	wantReason(t, err, ReasonUntrustedPublisher)
	if !strings.Contains(err.Error(), stranger.KeyID()) {
		t.Errorf("error %q does not name the signing key", err)
	}

	// Without a key id, the signature is tried against every trusted key.
	env.Signatures[0].KeyID = ""
	_, err = Verify(env, trustFor(t, "example-debian-mirror", trusted), inPeriod)
	wantReason(t, err, ReasonUntrustedPublisher)
}

func TestVerifyNoKeyID(t *testing.T) {
	key := newKey(t, AlgEd25519)
	env := signedExample(t, key)
	env.Signatures[0].KeyID = ""
	v, err := Verify(env, trustFor(t, "example-debian-mirror", newKey(t, AlgEd25519), key), inPeriod)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyID() != key.KeyID() {
		t.Errorf("key id = %s, want %s", v.KeyID(), key.KeyID())
	}
}

func TestVerifyPublisherMismatch(t *testing.T) {
	// A key trusted for another publisher must not vouch for this one.
	key := newKey(t, AlgEd25519)
	env := signedExample(t, key)
	_, err := Verify(env, trustFor(t, "ubuntu", key), inPeriod)
	wantReason(t, err, ReasonPublisherMismatch)
	if !strings.Contains(err.Error(), `names publisher "example-debian-mirror"`) {
		t.Errorf("error %q does not name the publishers", err)
	}
}

func TestVerifyOneTrustedSignatureSuffices(t *testing.T) {
	stranger := newKey(t, AlgEd25519)
	key := newKey(t, AlgECDSAP256)
	env := signedExample(t, stranger, key)
	if _, err := Verify(env, trustFor(t, "example-debian-mirror", key), inPeriod); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyValidityPeriod(t *testing.T) {
	key := newKey(t, AlgEd25519)
	env := signedExample(t, key)
	trust := trustFor(t, "example-debian-mirror", key)
	notBefore := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

	tests := []struct {
		name string
		now  time.Time
		want Reason // 0: accepted
	}{
		{"before not_before", notBefore.Add(-time.Second), ReasonNotYetValid},
		{"at not_before", notBefore, 0},
		{"at not_after", notAfter, 0},
		{"after not_after", notAfter.Add(time.Second), ReasonExpired},
		{"years later", notAfter.AddDate(3, 0, 0), ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(env, trust, tt.now)
			if tt.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantReason(t, err, tt.want)
		})
	}
}

func TestVerifyInvalidSignedPayload(t *testing.T) {
	key := newKey(t, AlgEd25519)
	env := &Envelope{PayloadType: PayloadType, Payload: []byte(`{"schema":"x"}`)}
	if err := env.Sign(key, rand.Reader); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(env, trustFor(t, "example-debian-mirror", key), inPeriod)
	wantReason(t, err, ReasonInvalidPayload)
}

func TestVerifyPayloadTypeIsSigned(t *testing.T) {
	key := newKey(t, AlgEd25519)
	env := signedExample(t, key)
	env.PayloadType = "application/vnd.in-toto+json"
	_, err := Verify(env, trustFor(t, "example-debian-mirror", key), inPeriod)
	wantReason(t, err, ReasonInvalidPayload)
}

func TestVerifyWithoutTrust(t *testing.T) {
	env := signedExample(t, newKey(t, AlgEd25519))
	_, err := Verify(env, NewTrustStore(), inPeriod)
	if err == nil || RejectionReason(err) != 0 {
		t.Fatalf("error = %v, want an operational error", err)
	}
}

func TestPAE(t *testing.T) {
	// The example from the DSSE protocol description.
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if got != want {
		t.Errorf("PAE = %q, want %q", got, want)
	}
}

func TestParseEnvelopeRejects(t *testing.T) {
	env := signedExample(t, newKey(t, AlgEd25519))
	good, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"other payload type", []byte(strings.Replace(string(good), PayloadType, "text/plain", 1)), `payload type "text/plain" is not a bundle's`},
		{"empty payload", []byte(`{"payloadType":"` + PayloadType + `","payload":"","signatures":[]}`), "empty payload"},
		{"bad base64", []byte(`{"payloadType":"` + PayloadType + `","payload":"!!","signatures":[]}`), "illegal base64"},
		{"empty signature", []byte(`{"payloadType":"` + PayloadType + `","payload":"e30=","signatures":[{"sig":""}]}`), "signature 0 is empty"},
		{"unknown member", []byte(`{"payloadType":"` + PayloadType + `","payload":"e30=","signatures":[],"x":1}`), `unknown field "x"`},
		{"payload in another case", []byte(`{"payloadType":"` + PayloadType + `","payload":"e30=","Payload":"e30=","signatures":[]}`), `repeats member "payload" in another case`},
		{"duplicate payload", []byte(`{"payloadType":"` + PayloadType + `","payload":"e30=","payload":"e30=","signatures":[]}`), `duplicate member "payload"`},
		{"not JSON", []byte("-----BEGIN PGP"), "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnvelope(tt.data)
			if err == nil {
				t.Fatal("ParseEnvelope accepted the envelope")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}

	many := &Envelope{PayloadType: PayloadType, Payload: []byte("{}")}
	for range MaxSignatures + 1 {
		many.Signatures = append(many.Signatures, Signature{Sig: []byte{1}})
	}
	data, err := json.Marshal(many)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEnvelope(data); err == nil || !strings.Contains(err.Error(), "17 signatures") {
		t.Errorf("error = %v, want the signature limit", err)
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	for _, alg := range []string{AlgEd25519, AlgECDSAP256} {
		t.Run(alg, func(t *testing.T) {
			key := newKey(t, alg)
			privPEM, err := MarshalPrivateKeyPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			key2, err := ParsePrivateKeyPEM(privPEM)
			if err != nil {
				t.Fatal(err)
			}
			if key2.KeyID() != key.KeyID() {
				t.Errorf("key id changed: %s, %s", key2.KeyID(), key.KeyID())
			}
			pubPEM, err := MarshalPublicKeyPEM(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublicKeyPEM(pubPEM)
			if err != nil {
				t.Fatal(err)
			}
			if id, _ := KeyID(pub); id != key.KeyID() {
				t.Errorf("public key id = %s, want %s", id, key.KeyID())
			}
		})
	}
}

func TestPrivateKeyDoesNotLeak(t *testing.T) {
	key := newKey(t, AlgEd25519)
	if _, err := json.Marshal(key); err == nil {
		t.Error("json.Marshal encoded a private key")
	}
	if _, err := json.Marshal(struct{ K *PrivateKey }{key}); err == nil {
		t.Error("json.Marshal encoded a struct holding a private key")
	}
	privPEM, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(privPEM)
	for _, s := range []string{fmt.Sprint(key), fmt.Sprintf("%v", key), fmt.Sprintf("%+v", key), key.String()} {
		if strings.Contains(s, fmt.Sprintf("%x", block.Bytes[len(block.Bytes)-32:])) {
			t.Errorf("formatted key %q contains key material", s)
		}
	}
	// A corrupt key file must not be echoed in the error.
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-bytes-secret")})
	_, err = ParsePrivateKeyPEM(corrupt)
	if err == nil || strings.Contains(err.Error(), "secret-bytes") {
		t.Errorf("error = %v", err)
	}
}

func TestUnsupportedKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("RSA private key: error = %v", err)
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err = x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err == nil || !strings.Contains(err.Error(), "P-384 is not supported") {
		t.Errorf("P-384 public key: error = %v", err)
	}
	if _, err := GenerateKey("rsa", rand.Reader); err == nil {
		t.Error("GenerateKey accepted rsa")
	}
}

func TestTrustStoreKeyOnePublisher(t *testing.T) {
	key := newKey(t, AlgEd25519)
	ts := trustFor(t, "debian", key)
	if err := ts.Add("ubuntu", key.Public()); err == nil {
		t.Error("one key was trusted for two publishers")
	}
	if err := ts.Add("debian", key.Public()); err != nil {
		t.Errorf("adding the same key twice: %v", err)
	}
}

func writeEnvelope(t *testing.T, path string, env *Envelope) {
	t.Helper()
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDir(t *testing.T) {
	key := newKey(t, AlgEd25519)
	stranger := newKey(t, AlgEd25519)
	dir := t.TempDir()

	writeEnvelope(t, filepath.Join(dir, "a-good.json"), signedExample(t, key))
	writeEnvelope(t, filepath.Join(dir, "b-unsigned.json"), signedExample(t))
	writeEnvelope(t, filepath.Join(dir, "c-stranger.json"), signedExample(t, stranger))
	tampered := signedExample(t, key)
	tampered.Payload = []byte(strings.Replace(string(tampered.Payload), `"12.8"`, `"12.9"`, 1))
	writeEnvelope(t, filepath.Join(dir, "d-tampered.json"), tampered)
	if err := os.WriteFile(filepath.Join(dir, "b-unsigned-bare.json"), readExample(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "e-garbage.json"), []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o755); err != nil {
		t.Fatal(err)
	}

	l := &Loader{Trust: trustFor(t, "example-debian-mirror", key), Now: func() time.Time { return inPeriod }}
	got, errs := l.LoadDir(dir)
	if len(got) != 1 || got[0].Bundle().ID() != "debian-12.8" {
		t.Fatalf("loaded %d bundles, want only a-good.json's", len(got))
	}
	if got[0].Source() != filepath.Join(dir, "a-good.json") {
		t.Errorf("source = %s", got[0].Source())
	}
	want := []struct {
		file   string
		reason Reason
	}{
		{"b-unsigned-bare.json", ReasonUnsigned},
		{"b-unsigned.json", ReasonUnsigned},
		{"c-stranger.json", ReasonUntrustedPublisher},
		{"d-tampered.json", ReasonBadSignature},
		{"e-garbage.json", 0},
	}
	if len(errs) != len(want) {
		t.Fatalf("errors = %v, want %d", errs, len(want))
	}
	for i, w := range want {
		var le *LoadError
		if !errors.As(errs[i], &le) || filepath.Base(le.Source) != w.file {
			t.Errorf("error %d = %v, want one for %s", i, errs[i], w.file)
			continue
		}
		if got := RejectionReason(errs[i]); got != w.reason {
			t.Errorf("%s: reason = %v, want %v (%v)", w.file, got, w.reason, errs[i])
		}
	}

	// Expired at a later time.
	l.Now = func() time.Time { return time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC) }
	got, errs = l.Load(context.Background(), filepath.Join(dir, "a-good.json"))
	if len(got) != 0 || len(errs) != 1 {
		t.Fatalf("got %d bundles and %d errors", len(got), len(errs))
	}
	if RejectionReason(errs[0]) != ReasonExpired {
		t.Errorf("error = %v, want expired", errs[0])
	}
}

func TestFetch(t *testing.T) {
	key := newKey(t, AlgECDSAP256)
	good, err := signedExample(t, key).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debian-12.8.json", func(w http.ResponseWriter, r *http.Request) { w.Write(good) })
	mux.HandleFunc("/huge.json", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range MaxEnvelopeSize/len(chunk) + 2 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	l := &Loader{Trust: trustFor(t, "example-debian-mirror", key), Now: func() time.Time { return inPeriod }, Client: srv.Client()}
	ctx := context.Background()
	v, err := l.Fetch(ctx, srv.URL+"/debian-12.8.json")
	if err != nil {
		t.Fatal(err)
	}
	if v.Bundle().ID() != "debian-12.8" || v.Source() != srv.URL+"/debian-12.8.json" {
		t.Errorf("bundle %s from %s", v.Bundle().ID(), v.Source())
	}

	if _, err := l.Fetch(ctx, srv.URL+"/missing.json"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing: error = %v, want 404", err)
	}
	if _, err := l.Fetch(ctx, srv.URL+"/huge.json"); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Errorf("huge: error = %v, want the size limit", err)
	}
	if _, err := l.Fetch(ctx, "file:///etc/passwd"); err == nil || !strings.Contains(err.Error(), "invalid bundle URL") {
		t.Errorf("file URL: error = %v", err)
	}

	// Load dispatches URLs to Fetch; a wrong publisher key rejects it.
	l.Trust = trustFor(t, "example-debian-mirror", newKey(t, AlgEd25519))
	_, errs := l.Load(ctx, srv.URL+"/debian-12.8.json")
	if len(errs) != 1 || RejectionReason(errs[0]) != ReasonUntrustedPublisher {
		t.Errorf("errors = %v, want untrusted publisher", errs)
	}
}
