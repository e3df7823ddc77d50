package strictjson

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Name string `json:"name"`
}

type Embedded struct {
	Kind string `json:"kind"`
}

type doc struct {
	Embedded
	Components []inner          `json:"components"`
	Labels     map[string]inner `json:"labels,omitempty"`
	When       time.Time        `json:"when,omitempty"`
	Plain      int
	Skipped    string           `json:"-"`
	Nested     *struct{ A int } `json:"nested,omitempty"`
}

func TestDecode(t *testing.T) {
	var d doc
	good := `{"kind":"k","components":[{"name":"a"}],"labels":{"X":{"name":"b"},"y":{"name":"c"}},"when":"2026-01-01T00:00:00Z","Plain":3,"nested":{"A":1}}`
	if err := Decode([]byte(good), &d, Options{}); err != nil {
		t.Fatal(err)
	}
	if d.Kind != "k" || d.Components[0].Name != "a" || d.Plain != 3 || d.Nested.A != 1 {
		t.Errorf("decoded %+v", d)
	}

	bad := []struct{ name, json, want string }{
		{"case variant duplicate", `{"components":[{"name":"a"}],"Components":[{"name":"evil"}]}`, `member "Components" at byte`},
		{"unicode fold duplicate", `{"kind":"a","\u212aind":"b"}`, `repeats member "kind" in another case`},
		{"exact duplicate", `{"kind":"a","kind":"b"}`, `duplicate member "kind"`},
		{"duplicate map key", `{"labels":{"x":{"name":"a"},"X":{"name":"b"}}}`, `repeats member "x"`},
		{"wrong case field", `{"Components":[]}`, `member "Components" must be spelled "components"`},
		{"wrong case nested", `{"components":[{"Name":"a"}]}`, `member "Name" in "components[0]" must be spelled "name"`},
		{"wrong case embedded", `{"KIND":"a"}`, `must be spelled "kind"`},
		{"wrong case in map value", `{"labels":{"x":{"NAME":"a"}}}`, `in "labels.x" must be spelled "name"`},
		{"wrong case untagged", `{"plain":1}`, `must be spelled "Plain"`},
		{"unknown member", `{"extra":1}`, `unknown field "extra"`},
		{"skipped field", `{"Skipped":"x"}`, `unknown field "Skipped"`},
		{"trailing data", `{} {}`, "data after the first value"},
		{"deep", strings.Repeat("[", 40) + strings.Repeat("]", 40), "nests deeper than 32"},
		{"empty", ``, "empty input"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Decode([]byte(tt.json), &d, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}

	if err := Decode([]byte(`{"extra":1,"kind":"a"}`), &d, Options{AllowUnknown: true}); err != nil {
		t.Errorf("AllowUnknown: %v", err)
	}
	if err := Decode([]byte(`{"Kind":"a"}`), &d, Options{AllowUnknown: true}); err == nil {
		t.Error("AllowUnknown accepted a field spelled in another case")
	}
}

func TestQuoteCutsLongValues(t *testing.T) {
	q := Quote(strings.Repeat("a", 200000))
	if len(q) > 100 || !strings.Contains(q, "(200000 bytes)") {
		t.Errorf("Quote = %s", q)
	}
	if q := Quote("a\x1b"); q != `"a\x1b"` {
		t.Errorf("Quote = %s", q)
	}
}

// TestStandardLibraryOnly keeps the package usable by stdlib-only parsers.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/vouch-attest/vouch/internal/strictjson" {
			t.Errorf("strictjson depends on %s", dep)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"kind":"k","components":[{"name":"a"}],"labels":{"X":{"name":"b"}}}`))
	f.Add([]byte(`{"components":[],"Components":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		_ = Decode(data, &d, Options{})
	})
}
