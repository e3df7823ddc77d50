package notify

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkNotify measures what the attestation path pays per state
// change, next to the JSON encoding of the change alone. The dispatcher
// delivers to a receiver on 127.0.0.1 meanwhile, and its queue fills, so
// most calls also drop the oldest change: the slowest path of Notify.
func BenchmarkNotify(b *testing.B) {
	c := change("web1", "trusted", "untrusted", 1)
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("notify", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
		defer srv.Close()
		d, err := New(Config{URLs: []string{srv.URL}, Secret: testSecret, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close(b.Context())
		b.ReportAllocs()
		for b.Loop() {
			d.Notify(c)
		}
	})
}
