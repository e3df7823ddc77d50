package totp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	pquerna "github.com/pquerna/otp"
	pquernatotp "github.com/pquerna/otp/totp"
)

// Seeds of RFC 6238 Appendix B: the ASCII digits repeated to the HMAC's
// output size.
var rfcSeeds = map[Algorithm]string{
	SHA1:   "12345678901234567890",
	SHA256: "12345678901234567890123456789012",
	SHA512: "1234567890123456789012345678901234567890123456789012345678901234",
}

func TestTOTPRFC6238Vectors(t *testing.T) {
	vectors := []struct {
		unix int64
		alg  Algorithm
		code string
	}{
		{59, SHA1, "94287082"},
		{59, SHA256, "46119246"},
		{59, SHA512, "90693936"},
		{1111111109, SHA1, "07081804"},
		{1111111109, SHA256, "68084774"},
		{1111111109, SHA512, "25091201"},
		{1111111111, SHA1, "14050471"},
		{1111111111, SHA256, "67062674"},
		{1111111111, SHA512, "99943326"},
		{1234567890, SHA1, "89005924"},
		{1234567890, SHA256, "91819424"},
		{1234567890, SHA512, "93441116"},
		{2000000000, SHA1, "69279037"},
		{2000000000, SHA256, "90698825"},
		{2000000000, SHA512, "38618901"},
		{20000000000, SHA1, "65353130"},
		{20000000000, SHA256, "77737706"},
		{20000000000, SHA512, "47863826"},
	}
	for _, v := range vectors {
		t.Run(fmt.Sprintf("%s/%d", v.alg, v.unix), func(t *testing.T) {
			k := Key{Secret: NewSecret([]byte(rfcSeeds[v.alg])), Account: "rfc", Algorithm: v.alg, Digits: 8, Period: 30 * time.Second}
			got, err := k.Code(time.Unix(v.unix, 0).UTC())
			if err != nil {
				t.Fatal(err)
			}
			if got != v.code {
				t.Errorf("Code(%d) = %s, want %s", v.unix, got, v.code)
			}
		})
	}
}

func TestHOTPRFC4226Vectors(t *testing.T) {
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	k := NewKey(NewSecret([]byte(rfcSeeds[SHA1])), "", "rfc")
	for c, w := range want {
		got, err := k.HOTP(uint64(c))
		if err != nil {
			t.Fatal(err)
		}
		if got != w {
			t.Errorf("HOTP(%d) = %s, want %s", c, got, w)
		}
	}
}

// TestCodeMatchesPquerna checks codes against an independent implementation
// over many time steps and parameters.
func TestCodeMatchesPquerna(t *testing.T) {
	algs := map[Algorithm]pquerna.Algorithm{SHA1: pquerna.AlgorithmSHA1, SHA256: pquerna.AlgorithmSHA256, SHA512: pquerna.AlgorithmSHA512}
	secret := NewSecret(bytes.Repeat([]byte{0xa5, 0x17, 0x3c}, 7))
	for alg, palg := range algs {
		for _, digits := range []int{6, 8} {
			k := Key{Secret: secret, Account: "x", Algorithm: alg, Digits: digits, Period: 30 * time.Second}
			for i := range 200 {
				at := time.Unix(1700000000+int64(i)*17, 0)
				got, err := k.Code(at)
				if err != nil {
					t.Fatal(err)
				}
				want, err := pquernatotp.GenerateCodeCustom(EncodeSecret(secret), at, pquernatotp.ValidateOpts{
					Period: 30, Digits: pquerna.Digits(digits), Algorithm: palg,
				})
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("%s/%d digits at %d: got %s, pquerna/otp computes %s", alg, digits, at.Unix(), got, want)
				}
			}
		}
	}
}

func TestStepStart(t *testing.T) {
	k := NewKey(NewSecret([]byte(rfcSeeds[SHA1])), "", "a")
	at := time.Unix(1111111111, 0).UTC()
	got := k.StepStart(at)
	if got.Unix() != 1111111110 {
		t.Errorf("StepStart(%d) = %d, want 1111111110", at.Unix(), got.Unix())
	}
	if k.Counter(time.Unix(-5, 0)) != 0 {
		t.Errorf("Counter before the epoch is not 0")
	}
}

func TestVerifySkew(t *testing.T) {
	k := NewKey(NewSecret([]byte(rfcSeeds[SHA1])), "", "a")
	at := time.Unix(1234567890, 0)
	prev, _ := k.Code(at.Add(-30 * time.Second))
	ok, err := k.Verify(prev, at, 0)
	if err != nil || ok {
		t.Errorf("Verify(previous code, skew 0) = %v, %v; want false", ok, err)
	}
	ok, err = k.Verify(prev, at, 1)
	if err != nil || !ok {
		t.Errorf("Verify(previous code, skew 1) = %v, %v; want true", ok, err)
	}
	ok, _ = k.Verify("000000", at, 1)
	if ok {
		t.Errorf("Verify accepted a wrong code")
	}
}

func TestValidateRejects(t *testing.T) {
	good := NewKey(NewSecret(make([]byte, 20)), "", "a")
	cases := map[string]func(*Key){
		"short secret": func(k *Key) { k.Secret = NewSecret(make([]byte, 10)) },
		"algorithm":    func(k *Key) { k.Algorithm = "MD5" },
		"digits":       func(k *Key) { k.Digits = 5 },
		"period":       func(k *Key) { k.Period = 1500 * time.Millisecond },
	}
	for name, mutate := range cases {
		k := good
		mutate(&k)
		if _, err := k.Code(time.Unix(0, 0)); err == nil {
			t.Errorf("%s: Code accepted an invalid key", name)
		}
	}
}

func TestSecretNotPrinted(t *testing.T) {
	s := NewSecret([]byte("0123456789abcdef0123"))
	k := NewKey(s, "Vouch", "host")
	for _, text := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v", k, k, k)} {
		if strings.Contains(text, "0123456789") || strings.Contains(text, EncodeSecret(s)) {
			t.Errorf("formatted key contains the secret: %s", text)
		}
	}
	if _, err := json.Marshal(k); err == nil {
		t.Errorf("json.Marshal of a key succeeded, want an error")
	}
}

func TestURIRoundTrip(t *testing.T) {
	s := NewSecret([]byte(rfcSeeds[SHA1]))
	k := NewKey(s, "Vouch", "host-1.example")
	uri, err := k.URI()
	if err != nil {
		t.Fatal(err)
	}
	want := "otpauth://totp/Vouch:host-1.example?algorithm=SHA1&digits=6&issuer=Vouch&period=30&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	if uri != want {
		t.Errorf("URI() = %s\nwant     %s", uri, want)
	}
	back, err := ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Secret.Bytes(), s.Bytes()) || back.Issuer != "Vouch" || back.Account != "host-1.example" || back.Digits != 6 || back.Period != 30*time.Second || back.Algorithm != SHA1 {
		t.Errorf("ParseURI(URI()) = %+v, want the original key", back)
	}

	// pquerna/otp reads the same URI independently.
	pk, err := pquerna.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	if pk.Secret() != EncodeSecret(s) || pk.Issuer() != "Vouch" || pk.AccountName() != "host-1.example" {
		t.Errorf("pquerna/otp reads issuer %q account %q", pk.Issuer(), pk.AccountName())
	}
}

func TestParseURIRejects(t *testing.T) {
	secret := "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	cases := map[string]string{
		"scheme":         "https://totp/a?secret=" + secret,
		"hotp":           "otpauth://hotp/a?secret=" + secret,
		"no secret":      "otpauth://totp/a?digits=6",
		"bad base32":     "otpauth://totp/a?secret=1111",
		"short secret":   "otpauth://totp/a?secret=GEZDGNBV",
		"digits":         "otpauth://totp/a?digits=x&secret=" + secret,
		"period":         "otpauth://totp/a?period=0&secret=" + secret,
		"issuer differs": "otpauth://totp/A:b?issuer=B&secret=" + secret,
		"algorithm":      "otpauth://totp/a?algorithm=MD5&secret=" + secret,
	}
	for name, uri := range cases {
		_, err := ParseURI(uri)
		if err == nil {
			t.Errorf("%s: ParseURI(%q) succeeded", name, uri)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error contains the secret: %v", name, err)
		}
	}
}

func TestGenerateSecret(t *testing.T) {
	s, err := GenerateSecret(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), 20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Bytes(), bytes.Repeat([]byte{7}, 20)) {
		t.Errorf("GenerateSecret did not use the given reader")
	}
	if _, err := GenerateSecret(bytes.NewReader(make([]byte, 5)), 20); err == nil {
		t.Errorf("GenerateSecret succeeded on a short reader")
	}
	if _, err := GenerateSecret(bytes.NewReader(make([]byte, 64)), 8); err == nil {
		t.Errorf("GenerateSecret accepted 8 bytes")
	}
}

func TestSealedRoundTrip(t *testing.T) {
	k := Key{Secret: NewSecret([]byte(rfcSeeds[SHA512])), Account: "a", Algorithm: SHA512, Digits: 8, Period: 60 * time.Second}
	data, err := MarshalSealed(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 128 {
		t.Errorf("sealed form is %d bytes, more than a TPM sealed object holds", len(data))
	}
	back, err := ParseSealed(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Secret.Bytes(), k.Secret.Bytes()) || back.Algorithm != SHA512 || back.Digits != 8 || back.Period != time.Minute {
		t.Errorf("ParseSealed(MarshalSealed(k)) = %+v", back)
	}
	for name, bad := range map[string][]byte{
		"short":     data[:4],
		"version":   append([]byte{2}, data[1:]...),
		"algorithm": append([]byte{1, 9}, data[2:]...),
		"secret":    data[:5+10],
	} {
		if _, err := ParseSealed(bad); err == nil {
			t.Errorf("%s: ParseSealed succeeded", name)
		}
	}
}

func FuzzParseSealed(f *testing.F) {
	k := NewKey(NewSecret([]byte(rfcSeeds[SHA1])), "", "a")
	data, _ := MarshalSealed(k)
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseSealed(data)
		if err != nil {
			return
		}
		if _, err := k.Code(time.Unix(0, 0)); err != nil {
			t.Fatalf("parsed key cannot compute a code: %v", err)
		}
	})
}
