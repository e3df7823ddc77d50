// Package strictjson decodes JSON that other programs may read too, such as
// signed bundles, rules and quote files, so that every reader sees the same
// document. encoding/json keeps the last of duplicate members and matches
// member names to struct fields ignoring case, while other readers such as
// Python's json and jq are case-sensitive, and another implementation may
// keep the first duplicate. A document that relies on either difference could pass review
// with one tool and mean something else to vouch, so Decode rejects it.
//
// The package depends on the standard library only, so that stdlib-only
// parsers such as bundle can use it.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"
)

// DefaultMaxDepth bounds nesting when Options.MaxDepth is zero.
const DefaultMaxDepth = 32

// Options adjust Decode.
type Options struct {
	// MaxDepth bounds the nesting of objects and arrays (DefaultMaxDepth
	// when zero).
	MaxDepth int
	// AllowUnknown accepts members that match no struct field in any
	// spelling. A member that matches a field only ignoring case is
	// always rejected.
	AllowUnknown bool
}

// Decode checks data with Check, checks that every member name of an
// object decoded into a struct is spelled exactly as the field's JSON name,
// and decodes data into v (a non-nil pointer).
func Decode(data []byte, v any, opts Options) error {
	if err := Check(data, opts.MaxDepth); err != nil {
		return err
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("strictjson: decode target must be a non-nil pointer")
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return err
	}
	if err := checkNames(rv.Type().Elem(), doc, "", opts.AllowUnknown); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	if !opts.AllowUnknown {
		dec.DisallowUnknownFields()
	}
	return dec.Decode(v)
}

// Check walks data token by token and rejects a member name that repeats
// another of the same object exactly or ignoring case, nesting deeper than
// maxDepth (DefaultMaxDepth when zero), and data after the first value.
func Check(data []byte, maxDepth int) error {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()

	// Each open container has a frame. An object's frame records the
	// folded member names seen so far and whether the next token is a
	// name.
	type frame struct {
		object    bool
		names     map[string]string
		expectKey bool
	}
	var stack []*frame
	started := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if !started {
				return errors.New("empty input: expected a JSON value")
			}
			if len(stack) > 0 {
				return errors.New("invalid JSON: unexpected end of input")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalid JSON at byte %d: %w", dec.InputOffset(), err)
		}
		if len(stack) == 0 && started {
			return fmt.Errorf("invalid JSON at byte %d: data after the first value", dec.InputOffset())
		}
		started = true

		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			name, ok := tok.(string)
			if !ok {
				return fmt.Errorf("invalid JSON at byte %d: expected a member name", dec.InputOffset())
			}
			key := fold(name)
			if prev, dup := top.names[key]; dup {
				if prev == name {
					return fmt.Errorf("duplicate member %s at byte %d", Quote(name), dec.InputOffset())
				}
				return fmt.Errorf("member %s at byte %d repeats member %s in another case: JSON readers disagree on which one counts", Quote(name), dec.InputOffset(), Quote(prev))
			}
			top.names[key] = name
			top.expectKey = false
			continue
		}
		if top != nil && top.object {
			top.expectKey = true // this token is a member's value
		}

		d, ok := tok.(json.Delim)
		if !ok {
			continue
		}
		switch d {
		case '{', '[':
			if len(stack) >= maxDepth {
				return fmt.Errorf("JSON nests deeper than %d levels at byte %d", maxDepth, dec.InputOffset())
			}
			f := &frame{object: d == '{'}
			if f.object {
				f.names = make(map[string]string)
				f.expectKey = true
			}
			stack = append(stack, f)
		case '}', ']':
			stack = stack[:len(stack)-1]
		}
	}
}

// fold maps a name to a key equal for every name that matches it under
// Unicode simple case folding, which covers the folding encoding/json
// applies to member names.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < least {
				least = f
			}
		}
		b.WriteRune(least)
	}
	return b.String()
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkNames walks the generic document doc alongside the Go type t and
// rejects an object member whose name matches a struct field only ignoring
// case (and, unless allowUnknown, one that matches no field). Types with
// their own UnmarshalJSON or UnmarshalText are not entered: Check already
// rejected duplicates inside them.
func checkNames(t reflect.Type, doc any, path string, allowUnknown bool) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil // a type error, which the real decode reports
		}
		fields := structFields(t)
		for name, value := range obj {
			ft, ok := fields[name]
			if !ok {
				for exact := range fields {
					if strings.EqualFold(exact, name) {
						return fmt.Errorf("member %s%s must be spelled %s", Quote(name), at(path), Quote(exact))
					}
				}
				if !allowUnknown {
					return fmt.Errorf("unknown field %s%s", Quote(name), at(path))
				}
				continue
			}
			if err := checkNames(ft, value, path+"."+name, allowUnknown); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		for name, value := range obj {
			if err := checkNames(t.Elem(), value, path+"."+name, allowUnknown); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		list, ok := doc.([]any)
		if !ok {
			return nil
		}
		for i, value := range list {
			if err := checkNames(t.Elem(), value, fmt.Sprintf("%s[%d]", path, i), allowUnknown); err != nil {
				return err
			}
		}
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " in " + Quote(strings.TrimPrefix(path, "."))
}

// structFields returns the JSON member names of t's fields, with those of
// embedded structs promoted as encoding/json does.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for n, ft := range structFields(et) {
					if _, ok := out[n]; !ok {
						out[n] = ft
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// maxQuoted bounds how much of an input value Quote echoes.
const maxQuoted = 64

// Quote returns s as a Go string literal, cut to its first 64 bytes so that
// an error never echoes a huge input.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:maxQuoted], len(s))
}
