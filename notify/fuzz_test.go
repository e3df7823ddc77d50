package notify

import (
	"strings"
	"testing"
)

// FuzzVerify checks that Verify accepts only the signature Sign makes,
// in either case of hex digits, whatever header a sender presents.
func FuzzVerify(f *testing.F) {
	body := []byte(`{"type":"machine.state_changed","machine":"web1"}`)
	f.Add(body, Sign(testSecret, body))
	f.Add(body, "")
	f.Add(body, "sha256=")
	f.Add([]byte{}, Sign(testSecret, nil))
	f.Add(body, "sha1=00")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		want := strings.EqualFold(header, Sign(testSecret, body)) && strings.HasPrefix(header, signaturePrefix)
		if got := Verify(testSecret, body, header); got != want {
			t.Errorf("Verify(%q, %q) = %v, want %v", body, header, got, want)
		}
	})
}
