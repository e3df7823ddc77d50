package strictjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// decodeTwoPass is Decode's check: Check, then the member names against a
// generic copy of the document. DecodeLarge must accept exactly what it
// accepts.
func decodeTwoPass(data []byte, v any, opts Options) error {
	return Decode(data, v, opts)
}

func TestDecodeLargeMatchesDecode(t *testing.T) {
	good := `{"kind":"k","components":[{"name":"a"}],"labels":{"X":{"name":"b"},"y":{"name":"c"}},"when":"2026-01-01T00:00:00Z","Plain":3,"nested":{"A":1}}`
	var d doc
	if err := DecodeLarge([]byte(good), &d, Options{}); err != nil {
		t.Fatal(err)
	}
	if d.Kind != "k" || d.Components[0].Name != "a" || d.Labels["y"].Name != "c" || d.Plain != 3 || d.Nested.A != 1 || d.When.Year() != 2026 {
		t.Errorf("decoded %+v", d)
	}
	for _, tt := range []struct{ name, json, want string }{
		{"case variant duplicate", `{"components":[{"name":"a"}],"Components":[{"name":"evil"}]}`, `member "Components" at byte 41 repeats member "components"`},
		{"unicode fold duplicate", `{"kind":"a","\u212aind":"b"}`, `repeats member "kind" in another case`},
		{"exact duplicate", `{"kind":"a","kind":"b"}`, `duplicate member "kind" at byte 18`},
		{"duplicate map key", `{"labels":{"x":{"name":"a"},"X":{"name":"b"}}}`, `repeats member "x"`},
		{"duplicate in unchecked value", `{"when":{"a":1,"a":2}}`, `duplicate member "a"`},
		{"wrong case field", `{"Components":[]}`, `member "Components" must be spelled "components"`},
		{"wrong case nested", `{"components":[{"Name":"a"}]}`, `member "Name" in "components[0]" must be spelled "name"`},
		{"wrong case embedded", `{"KIND":"a"}`, `must be spelled "kind"`},
		{"wrong case in map value", `{"labels":{"x":{"NAME":"a"}}}`, `in "labels.x" must be spelled "name"`},
		{"wrong case untagged", `{"plain":1}`, `must be spelled "Plain"`},
		{"escaped wrong case", `{"\u004bind":"a"}`, `member "Kind" must be spelled "kind"`},
		{"unknown member", `{"extra":1}`, `unknown field "extra"`},
		{"skipped field", `{"Skipped":"x"}`, `unknown field "Skipped"`},
		{"trailing data", `{} {}`, "data after the first value"},
		{"deep", strings.Repeat("[", 40) + strings.Repeat("]", 40), "nests deeper than 32"},
		{"empty", ` `, "empty input"},
		{"unterminated string", `{"kind":"a`, "unexpected end of input"},
		{"control character", "{\"kind\":\"a\x01\"}", "control character"},
		{"bad escape", `{"kind":"\x"}`, "invalid escape"},
		{"bad number", `{"Plain":01}`, "expected ',' or '}'"},
		{"bad literal", `{"Plain":nul}`, "invalid character"},
		{"missing colon", `{"kind" "a"}`, "expected ':'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := DecodeLarge([]byte(tt.json), &d, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeLarge error = %v, want it to contain %q", err, tt.want)
			}
			if err := decodeTwoPass([]byte(tt.json), &d, Options{}); err == nil {
				t.Errorf("Decode accepted what DecodeLarge rejected")
			}
		})
	}
	if err := DecodeLarge([]byte(`{"extra":{"x":[1,2]},"kind":"a"}`), &d, Options{AllowUnknown: true}); err != nil {
		t.Errorf("AllowUnknown: %v", err)
	}
	if err := DecodeLarge([]byte(`{"Kind":"a"}`), &d, Options{AllowUnknown: true}); err == nil {
		t.Error("AllowUnknown accepted a field spelled in another case")
	}
}

// largeDoc has the shape of an evidence request: big base64 members, a
// map with integer keys and an optional nested object.
type largeDoc struct {
	ID    string `json:"id"`
	Blob  []byte `json:"blob"`
	Banks []struct {
		Alg    uint16         `json:"alg"`
		Values map[int][]byte `json:"values"`
	} `json:"banks"`
	Extra *struct {
		Offset int64  `json:"offset"`
		Data   []byte `json:"data"`
	} `json:"extra,omitempty"`
	Any any `json:"any,omitempty"`
}

func FuzzDecodeLargeMatchesDecode(f *testing.F) {
	f.Add([]byte(`{"id":"x","blob":"AAAA","banks":[{"alg":11,"values":{"0":"AAAA","7":"AQID"}}],"extra":{"offset":3,"data":""}}`))
	f.Add([]byte(`{"id":"x","ID":"y"}`))
	f.Add([]byte(`{"Id":"x"}`))
	f.Add([]byte(`{"banks":[{"alg":1,"Values":{}}]}`))
	f.Add([]byte(`{"any":{"a":{"b":[1,2,{"c":null}]},"A":true}}`))
	f.Add([]byte(`{"id":"\u00e9\ud800","blob":null} `))
	f.Add([]byte(`[1,-0.5e+3,"x",true,false,null]`))
	f.Add([]byte(`{"extra":{"offset":1e400}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []Options{{}, {AllowUnknown: true, MaxDepth: 4}} {
			var a, b largeDoc
			errLarge := DecodeLarge(data, &a, opts)
			errDecode := decodeTwoPass(data, &b, opts)
			if (errLarge == nil) != (errDecode == nil) {
				t.Fatalf("options %+v: DecodeLarge: %v; Decode: %v", opts, errLarge, errDecode)
			}
			if errLarge != nil {
				continue
			}
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if !bytes.Equal(ja, jb) {
				t.Fatalf("decoded differently:\n%s\n%s", ja, jb)
			}
		}
	})
}
