package predict

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPredictionJSONRoundTrip(t *testing.T) {
	ref, err := GrubCommandReference("set timeout=0", GrubUpstream, AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	in := Prediction{Version: FormatVersion, Packages: []Package{{Name: "p", Version: "1"}}, References: []Reference{ref}}
	raw, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"sha256":"d3a793f471b6bfe8d783f5e629314cad4763d48986a8cd4df25475334b40f49b"`) {
		t.Errorf("JSON lacks the hex sha256 digest: %s", raw)
	}
	var out Prediction
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
	if out.References[0].Digests[SHA384].String() != ref.Digests[SHA384].String() {
		t.Errorf("sha384 changed in the round trip: %s", out.References[0].Digests[SHA384])
	}
}

func TestPredictionValidateRejects(t *testing.T) {
	good := func() Prediction {
		return Prediction{Version: FormatVersion, References: []Reference{{
			Kind: KindGrubFile, PCR: 9, Component: "vmlinuz", Digests: Digests{SHA1: make([]byte, 20)},
		}}}
	}
	cases := []struct {
		name   string
		change func(*Prediction)
		want   string
	}{
		{"version", func(p *Prediction) { p.Version = 2 }, "version 2 is not supported"},
		{"kind", func(p *Prediction) { p.References[0].Kind = "" }, "missing kind"},
		{"pcr", func(p *Prediction) { p.References[0].PCR = 24 }, "out of range"},
		{"no digests", func(p *Prediction) { p.References[0].Digests = nil }, "no digests"},
		{"bank", func(p *Prediction) { p.References[0].Digests = Digests{"md5": make([]byte, 16)} }, "unknown bank"},
		{"size", func(p *Prediction) { p.References[0].Digests = Digests{SHA256: make([]byte, 20)} }, "has 20 bytes, expected 32"},
	}
	for _, c := range cases {
		p := good()
		c.change(&p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, expected one containing %q", c.name, err, c.want)
		}
	}
	var d Digest
	if err := json.Unmarshal([]byte(`"zz"`), &d); err == nil {
		t.Error("invalid hex digest accepted")
	}
}
