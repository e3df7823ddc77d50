package bundle

import (
	"fmt"
)

// legacyPredictionKinds maps the names that early versions of vouch predict
// gave shim's two measurements to the bundle kind. Current versions write
// bundle kinds.
var legacyPredictionKinds = map[string]Kind{
	"shim-moklist":   KindShimVariable,
	"shim-sbatlevel": KindShimVariable,
}

// prediction is the JSON form, version 1, that `vouch predict` writes. It
// is decoded here, not imported from the predict package, so that bundle
// stays free of artifact parsers.
type prediction struct {
	Version    int `json:"version"`
	References []struct {
		Kind      string `json:"kind"`
		PCR       int    `json:"pcr"`
		EventType string `json:"eventType"`
		Component string `json:"component"`
		Package   *struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"package"`
		Path    string          `json:"path"`
		Event   string          `json:"event"`
		Note    string          `json:"note"`
		Digests map[Bank]Digest `json:"digests"`
	} `json:"references"`
}

// FromPrediction converts the JSON prediction that `vouch predict` writes
// (format version 1) into components: one per component name, kind and
// package, with one value per predicted measurement. The measured text of
// GRUB commands and command lines becomes the value's data, and the
// prediction's note its description.
func FromPrediction(data []byte) ([]Component, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("prediction is %d bytes, more than the limit of %d", len(data), MaxEnvelopeSize)
	}
	var p prediction
	if err := decodeStrict(data, &p, true); err != nil {
		return nil, fmt.Errorf("decode prediction: %w", err)
	}
	if p.Version != 1 {
		return nil, fmt.Errorf("prediction version %d is not supported: this build reads version 1 of vouch predict's output", p.Version)
	}
	if len(p.References) == 0 {
		return nil, fmt.Errorf("prediction has no references")
	}
	if len(p.References) > MaxValues {
		return nil, fmt.Errorf("prediction has %d references, more than the limit of %d", len(p.References), MaxValues)
	}

	type key struct {
		name, source string
		kind         Kind
	}
	index := make(map[key]int)
	var out []Component
	for i, r := range p.References {
		kind := Kind(r.Kind)
		if legacy, ok := legacyPredictionKinds[r.Kind]; ok {
			kind = legacy
		}
		if !kind.Known() {
			return nil, fmt.Errorf("prediction reference %d (%s): kind %q has no bundle kind", i, r.Component, r.Kind)
		}
		source := r.Path
		if r.Package != nil {
			source = r.Package.Name + " " + r.Package.Version
		}
		v := Value{PCR: r.PCR, Digests: r.Digests, Description: r.Note}
		if kind == KindGRUBCommand || kind == KindKernelCmdline {
			v.Data = r.Event
		}
		k := key{name: r.Component, source: source, kind: kind}
		j, ok := index[k]
		if !ok {
			j = len(out)
			index[k] = j
			out = append(out, Component{Name: r.Component, Kind: kind, Source: source})
		}
		out[j].Values = append(out[j].Values, v)
	}
	for i := range out {
		if err := out[i].validate(); err != nil {
			return nil, fmt.Errorf("prediction component %q: %w", out[i].Name, err)
		}
	}
	return out, nil
}
