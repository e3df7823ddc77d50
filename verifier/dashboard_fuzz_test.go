package verifier

import (
	"testing"
	"time"
)

// FuzzSessionCookie checks that validSession accepts exactly the cookie
// value the server made, whatever a browser sends.
func FuzzSessionCookie(f *testing.F) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	h := newHarness(f, Config{Now: func() time.Time { return now }})
	genuine := h.srv.newSession(now.Add(time.Hour))
	for _, seed := range []string{
		genuine, "", ".", "v1..", "v1.1.", "v2.1." + genuine[len(genuine)-43:],
		genuine[:len(genuine)-1], genuine + "=", "v1.99999999999999999999.x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		if valid := h.srv.validSession(value); valid != (value == genuine) {
			t.Errorf("validSession(%q) = %v, want %v", value, valid, value == genuine)
		}
	})
}
