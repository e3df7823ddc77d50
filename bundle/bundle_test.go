package bundle

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

const examplePath = "testdata/debian-12-shim-grub.json"

func readExample(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseExample(t *testing.T) {
	b, err := Parse(readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.ID(); got != "debian-12.8" {
		t.Errorf("ID = %q, want debian-12.8", got)
	}
	if len(b.Components) != 6 {
		t.Fatalf("components = %d, want 6", len(b.Components))
	}
	grub := b.Components[1]
	if grub.Name != "grubx64.efi" || grub.Kind != KindBootApplication {
		t.Errorf("component 1 = %s %s, want grubx64.efi boot-application", grub.Name, grub.Kind)
	}
	if got := grub.Values[0].Digests["sha256"].String(); got != "a68f6d71ebddaa19751ff8d729f67d11b0df8e4c49400c3e7e90de16119e1265" {
		t.Errorf("grub sha256 = %s", got)
	}
	if !b.NotAfter.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("not_after = %v", b.NotAfter)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	b, err := Parse(readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Parse(out)
	if err != nil {
		t.Fatalf("parse marshalled bundle: %v", err)
	}
	out2, err := b2.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, out2) {
		t.Errorf("marshal is not stable:\n%s\n%s", out, out2)
	}
}

// mutate decodes the example into a generic map, applies f and encodes it.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readExample(t), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func component0(m map[string]any) map[string]any {
	return m["components"].([]any)[0].(map[string]any)
}

func value0(m map[string]any) map[string]any {
	return component0(m)["values"].([]any)[0].(map[string]any)
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		data func(t *testing.T) []byte
		want string
	}{
		{"unknown member", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["extra"] = 1 })
		}, `unknown field "extra"`},
		{"duplicate member", func(t *testing.T) []byte {
			return []byte(strings.Replace(string(readExample(t)), `"product": "debian",`, `"product": "debian", "product": "ubuntu",`, 1))
		}, `duplicate member "product"`},
		{"components in another case", func(t *testing.T) []byte {
			// encoding/json would take the second list; jq and Python the first.
			return mutate(t, func(m map[string]any) { m["Components"] = m["components"] })
		}, `in another case`},
		{"publisher in another case", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["Publisher"] = m["publisher"]; delete(m, "publisher") })
		}, `member "Publisher" must be spelled "publisher"`},
		{"value member in another case", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { value0(m)["PCR"] = value0(m)["pcr"]; delete(value0(m), "pcr") })
		}, `member "PCR" in "components[0].values[0]" must be spelled "pcr"`},
		{"wrong schema", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["schema"] = "v2" })
		}, `schema "v2" is not supported`},
		{"missing not_after", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { delete(m, "not_after") })
		}, "validity period is missing"},
		{"not_after before not_before", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["not_after"] = "2025-01-01T00:00:00Z" })
		}, "is not after not_before"},
		{"empty publisher", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["publisher"] = "" })
		}, "bundle publisher: value is empty"},
		{"control character in version", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["version"] = "12\x1b[31m" })
		}, "non-printable character U+001B"},
		{"no components", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { m["components"] = []any{} })
		}, "bundle has no components"},
		{"unknown kind", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { component0(m)["kind"] = "bootloader" })
		}, `kind "bootloader" is not a known event kind`},
		{"no values", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { component0(m)["values"] = []any{} })
		}, "component has no values"},
		{"pcr 24", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { value0(m)["pcr"] = 24 })
		}, "pcr 24 is outside 0 to 23"},
		{"unknown bank", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) {
				value0(m)["digests"] = map[string]any{"md5": "00112233445566778899aabbccddeeff"}
			})
		}, `bank "md5" is not supported`},
		{"short digest", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { value0(m)["digests"] = map[string]any{"sha256": "0011"} })
		}, "sha256 digest is 2 bytes, expected 32"},
		{"non-hex digest", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { value0(m)["digests"] = map[string]any{"sha1": strings.Repeat("zz", 20)} })
		}, "digest is not hexadecimal"},
		{"no digests", func(t *testing.T) []byte {
			return mutate(t, func(m map[string]any) { value0(m)["digests"] = map[string]any{} })
		}, "value has no digests"},
		{"trailing data", func(t *testing.T) []byte {
			return append(readExample(t), []byte(" {}")...)
		}, "data after the first value"},
		{"deep nesting", func(t *testing.T) []byte {
			return []byte(`{"description":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`)
		}, "nests deeper than 16 levels"},
		{"not an object", func(t *testing.T) []byte { return []byte(`"bundle"`) }, "cannot unmarshal string"},
		{"empty", func(t *testing.T) []byte { return nil }, "empty input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data(t)
			_, err := Parse(data)
			if err == nil {
				t.Fatal("Parse accepted the bundle")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseRejectsOversized(t *testing.T) {
	data := make([]byte, MaxEnvelopeSize+1)
	_, err := Parse(data)
	if err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Errorf("error = %v, want a size limit error", err)
	}
}

func TestParseRejectsTooManyComponents(t *testing.T) {
	data := mutate(t, func(m map[string]any) {
		c := component0(m)
		list := make([]any, MaxComponents+1)
		for i := range list {
			list[i] = c
		}
		m["components"] = list
	})
	_, err := Parse(data)
	if err == nil || !strings.Contains(err.Error(), "4097 components, more than the limit of 4096") {
		t.Errorf("error = %v, want the component limit", err)
	}
}

func TestKindsAreKnown(t *testing.T) {
	for _, k := range Kinds() {
		if !k.Known() {
			t.Errorf("kind %q is listed but not known", k)
		}
	}
	if len(Kinds()) != len(knownKinds) {
		t.Errorf("Kinds lists %d kinds, knownKinds has %d", len(Kinds()), len(knownKinds))
	}
	// The schema's enum must list the same kinds.
	var schema struct {
		Defs struct {
			Kind struct {
				Enum []string `json:"enum"`
			} `json:"kind"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(SchemaJSON, &schema); err != nil {
		t.Fatal(err)
	}
	if len(schema.Defs.Kind.Enum) != len(knownKinds) {
		t.Errorf("schema lists %d kinds, want %d", len(schema.Defs.Kind.Enum), len(knownKinds))
	}
	for _, k := range schema.Defs.Kind.Enum {
		if !Kind(k).Known() {
			t.Errorf("schema kind %q is not known to the parser", k)
		}
	}
}
