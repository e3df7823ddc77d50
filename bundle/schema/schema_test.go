// Package schema_test checks that the JSON Schema file of version 1 bundles
// agrees with the bundle package's parser. It lives apart from package bundle
// so that the schema validator is not linked into bundle's fuzz targets.
package schema_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/vouch-attest/vouch/bundle"
)

const examplePath = "../testdata/debian-12-shim-grub.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(bundle.SchemaJSON))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("bundle-v1.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("bundle-v1.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return s
}

func validate(s *jsonschema.Schema, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

func readExample(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSchemaAcceptsExample(t *testing.T) {
	s := compileSchema(t)
	if err := validate(s, readExample(t)); err != nil {
		t.Errorf("schema rejects the example: %v", err)
	}
	b, err := bundle.Parse(readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(s, out); err != nil {
		t.Errorf("schema rejects Marshal's output: %v", err)
	}
}

// TestSchemaAgreesWithParse changes the example in ways both the schema and
// bundle.Parse must reject.
func TestSchemaAgreesWithParse(t *testing.T) {
	component0 := func(m map[string]any) map[string]any {
		return m["components"].([]any)[0].(map[string]any)
	}
	value0 := func(m map[string]any) map[string]any {
		return component0(m)["values"].([]any)[0].(map[string]any)
	}
	tests := []struct {
		name   string
		change func(m map[string]any)
	}{
		{"unknown member", func(m map[string]any) { m["extra"] = 1 }},
		{"wrong schema", func(m map[string]any) { m["schema"] = "v2" }},
		{"missing not_after", func(m map[string]any) { delete(m, "not_after") }},
		{"not_before not a time", func(m map[string]any) { m["not_before"] = "yesterday" }},
		{"empty publisher", func(m map[string]any) { m["publisher"] = "" }},
		{"padded product", func(m map[string]any) { m["product"] = " debian" }},
		{"control character in version", func(m map[string]any) { m["version"] = "12\x1b[31m" }},
		{"no components", func(m map[string]any) { m["components"] = []any{} }},
		{"unknown kind", func(m map[string]any) { component0(m)["kind"] = "bootloader" }},
		{"component without name", func(m map[string]any) { delete(component0(m), "name") }},
		{"no values", func(m map[string]any) { component0(m)["values"] = []any{} }},
		{"pcr 24", func(m map[string]any) { value0(m)["pcr"] = 24 }},
		{"negative pcr", func(m map[string]any) { value0(m)["pcr"] = -1 }},
		{"unknown bank", func(m map[string]any) {
			value0(m)["digests"] = map[string]any{"md5": "00112233445566778899aabbccddeeff"}
		}},
		{"short digest", func(m map[string]any) { value0(m)["digests"] = map[string]any{"sha256": "0011"} }},
		{"no digests", func(m map[string]any) { value0(m)["digests"] = map[string]any{} }},
	}
	s := compileSchema(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(readExample(t), &m); err != nil {
				t.Fatal(err)
			}
			tt.change(m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(s, data); err == nil {
				t.Error("the JSON Schema accepts it")
			}
			if _, err := bundle.Parse(data); err == nil {
				t.Error("bundle.Parse accepts it")
			}
		})
	}
}
