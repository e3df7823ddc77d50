package totp

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// URI returns the key as an otpauth:// URI in the Key Uri Format that
// Google Authenticator defined and other authenticator apps follow:
//
//	otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
//
// The URI contains the secret: show it only to the person enrolling.
func (k Key) URI() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	if strings.Contains(k.Issuer, ":") || strings.Contains(k.Account, ":") {
		return "", fmt.Errorf("totp issuer %q and account %q must not contain a colon", k.Issuer, k.Account)
	}
	if k.Account == "" {
		return "", fmt.Errorf("totp account name is empty: set one, e.g. the host name")
	}

	label := k.Account
	if k.Issuer != "" {
		label = k.Issuer + ":" + k.Account
	}
	q := url.Values{}
	q.Set("secret", EncodeSecret(k.Secret))
	if k.Issuer != "" {
		q.Set("issuer", k.Issuer)
	}
	q.Set("algorithm", string(k.Algorithm))
	q.Set("digits", strconv.Itoa(k.Digits))
	q.Set("period", strconv.Itoa(int(k.Period/time.Second)))

	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + label, RawQuery: q.Encode()}
	return u.String(), nil
}

// ParseURI reads an otpauth://totp/ URI. Missing algorithm, digits and
// period take the defaults of NewKey. Errors never contain the secret.
func ParseURI(raw string) (Key, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole input, secret included.
		return Key{}, fmt.Errorf("otpauth uri is not a valid URL")
	}
	if u.Scheme != "otpauth" {
		return Key{}, fmt.Errorf("otpauth uri has scheme %q: expected otpauth", u.Scheme)
	}
	if u.Host != "totp" {
		return Key{}, fmt.Errorf("otpauth uri has type %q: only totp is supported", u.Host)
	}

	label := strings.TrimPrefix(u.Path, "/")
	k := Key{Algorithm: SHA1, Digits: DefaultDigits, Period: DefaultPeriod}
	if issuer, account, ok := strings.Cut(label, ":"); ok {
		k.Issuer, k.Account = issuer, strings.TrimLeft(account, " ")
	} else {
		k.Account = label
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Key{}, fmt.Errorf("otpauth uri query is malformed")
	}
	secretText := q.Get("secret")
	if secretText == "" {
		return Key{}, fmt.Errorf("otpauth uri has no secret parameter")
	}
	if k.Secret, err = DecodeSecret(secretText); err != nil {
		return Key{}, err
	}
	if issuer := q.Get("issuer"); issuer != "" {
		if k.Issuer != "" && k.Issuer != issuer {
			return Key{}, fmt.Errorf("otpauth uri label issuer %q differs from issuer parameter %q", k.Issuer, issuer)
		}
		k.Issuer = issuer
	}
	if a := q.Get("algorithm"); a != "" {
		k.Algorithm = Algorithm(strings.ToUpper(a))
	}
	if d := q.Get("digits"); d != "" {
		if k.Digits, err = strconv.Atoi(d); err != nil {
			return Key{}, fmt.Errorf("otpauth uri digits %q is not a number", d)
		}
	}
	if p := q.Get("period"); p != "" {
		secs, err := strconv.Atoi(p)
		if err != nil || secs <= 0 {
			return Key{}, fmt.Errorf("otpauth uri period %q is not a positive number of seconds", p)
		}
		k.Period = time.Duration(secs) * time.Second
	}
	if err := k.Validate(); err != nil {
		return Key{}, fmt.Errorf("otpauth uri: %w", err)
	}
	return k, nil
}
