package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// DecodeLarge makes the checks of Decode and decodes data into v, but
// checks in one pass over the bytes instead of building a generic copy of
// the document first. String values are skipped without being copied, so
// a document of large base64 members, such as an evidence request, costs
// about one encoding/json decode in time and memory. It accepts and rejects
// the same documents as Decode. Its error can differ when a document has
// several faults, because it reports the first one in document order.
func DecodeLarge(data []byte, v any, opts Options) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("strictjson: decode target must be a non-nil pointer")
	}
	sc := &scanner{data: data, maxDepth: opts.MaxDepth, allowUnknown: opts.AllowUnknown, fields: map[reflect.Type]map[string]reflect.Type{}}
	if sc.maxDepth <= 0 {
		sc.maxDepth = DefaultMaxDepth
	}
	if err := sc.document(rv.Type().Elem()); err != nil {
		return err
	}
	// The scan rejected unknown members already (unless AllowUnknown), so
	// json.Unmarshal, which decodes data without copying it to a buffer of
	// its own as a json.Decoder does, accepts what the Decoder of Decode
	// accepts.
	return json.Unmarshal(data, v)
}

// scanner walks a JSON document alongside the Go type it decodes into.
type scanner struct {
	data         []byte
	pos          int
	maxDepth     int
	allowUnknown bool
	// path holds the member names and array indexes from the root to the
	// current value. It is formatted only for an error.
	path   []pathStep
	fields map[reflect.Type]map[string]reflect.Type
}

// pathStep is a member name, or an array index when isIndex is set.
type pathStep struct {
	name    string
	index   int
	isIndex bool
}

func (s *scanner) syntaxError(what string) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", s.pos, what)
}

func (s *scanner) document(t reflect.Type) error {
	s.skipSpace()
	if s.pos == len(s.data) {
		return errors.New("empty input: expected a JSON value")
	}
	if err := s.value(t, 0); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return s.syntaxError("data after the first value")
	}
	return nil
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// checked returns the type whose member names a value of type t must
// match, or nil when they are not checked: t decodes itself, or t is nil
// (a value whose type is unknown).
func checked(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	return t
}

// value scans one value of Go type t (nil when unchecked) inside depth
// open containers.
func (s *scanner) value(t reflect.Type, depth int) error {
	s.skipSpace()
	if s.pos == len(s.data) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(checked(t), depth+1)
	case c == '[':
		return s.array(checked(t), depth+1)
	case c == '"':
		_, err := s.str(false)
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
				s.pos += len(lit)
				return nil
			}
		}
		return s.syntaxError(fmt.Sprintf("invalid character %s looking for a value", strconv.QuoteRune(rune(c))))
	}
}

func (s *scanner) open(depth int) error {
	if depth > s.maxDepth {
		return fmt.Errorf("JSON nests deeper than %d levels at byte %d", s.maxDepth, s.pos+1)
	}
	s.pos++
	return nil
}

func (s *scanner) object(t reflect.Type, depth int) error {
	if err := s.open(depth); err != nil {
		return err
	}
	var fields map[string]reflect.Type
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = s.structFields(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	names := map[string]string{}
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.pos == len(s.data) || s.data[s.pos] != '"' {
			return s.syntaxError("expected a member name")
		}
		name, err := s.str(true)
		if err != nil {
			return err
		}
		key := fold(name)
		if prev, dup := names[key]; dup {
			if prev == name {
				return fmt.Errorf("duplicate member %s at byte %d", Quote(name), s.pos)
			}
			return fmt.Errorf("member %s at byte %d repeats member %s in another case: JSON readers disagree on which one counts", Quote(name), s.pos, Quote(prev))
		}
		names[key] = name

		memberType := elem
		if fields != nil {
			ft, ok := fields[name]
			switch {
			case ok:
				memberType = ft
			case s.matchOtherCase(fields, name) != "":
				return fmt.Errorf("member %s%s must be spelled %s", Quote(name), at(s.pathString()), Quote(s.matchOtherCase(fields, name)))
			case !s.allowUnknown:
				return fmt.Errorf("unknown field %s%s", Quote(name), at(s.pathString()))
			}
		}

		s.skipSpace()
		if s.pos == len(s.data) || s.data[s.pos] != ':' {
			return s.syntaxError("expected ':' after a member name")
		}
		s.pos++
		s.path = append(s.path, pathStep{name: name})
		if err := s.value(memberType, depth); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]

		if done, err := s.commaOrClose('}', "an object member"); done || err != nil {
			return err
		}
	}
}

// commaOrClose consumes the ',' or the closing byte that follows an
// element (what names it for the error) and reports whether it was the
// closing byte.
func (s *scanner) commaOrClose(closing byte, what string) (bool, error) {
	s.skipSpace()
	if s.pos == len(s.data) {
		return false, errors.New("invalid JSON: unexpected end of input")
	}
	switch s.data[s.pos] {
	case ',':
		s.pos++
		return false, nil
	case closing:
		s.pos++
		return true, nil
	}
	return false, s.syntaxError(fmt.Sprintf("expected ',' or '%c' after %s", closing, what))
}

func (s *scanner) matchOtherCase(fields map[string]reflect.Type, name string) string {
	for exact := range fields {
		if strings.EqualFold(exact, name) {
			return exact
		}
	}
	return ""
}

func (s *scanner) array(t reflect.Type, depth int) error {
	if err := s.open(depth); err != nil {
		return err
	}
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		s.path = append(s.path, pathStep{index: i, isIndex: true})
		if err := s.value(elem, depth); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		if done, err := s.commaOrClose(']', "an array element"); done || err != nil {
			return err
		}
	}
}

// str scans a string and, when decode is set, returns its value as
// encoding/json decodes it (escapes resolved, invalid UTF-8 replaced).
func (s *scanner) str(decode bool) (string, error) {
	start := s.pos
	s.pos++
	plain := true
	for {
		// Skip the bytes that need no attention at once.
		rest := s.data[s.pos:]
		n := 0
		for n < len(rest) && rest[n] >= 0x20 && rest[n] != '"' && rest[n] != '\\' && rest[n] < 0x80 {
			n++
		}
		s.pos += n
		if s.pos == len(s.data) {
			return "", errors.New("invalid JSON: unexpected end of input in a string")
		}
		switch c := s.data[s.pos]; {
		case c == '"':
			s.pos++
			raw := s.data[start:s.pos]
			if !decode {
				return "", nil
			}
			if plain {
				return string(raw[1 : len(raw)-1]), nil
			}
			var out string
			if err := json.Unmarshal(raw, &out); err != nil {
				return "", fmt.Errorf("invalid JSON at byte %d: %w", start, err)
			}
			return out, nil
		case c < 0x20:
			return "", s.syntaxError("control character in a string")
		case c == '\\':
			plain = false
			if s.pos+1 == len(s.data) {
				return "", errors.New("invalid JSON: unexpected end of input in a string")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) {
					return "", errors.New("invalid JSON: unexpected end of input in a string")
				}
				for _, h := range s.data[s.pos+2 : s.pos+6] {
					if !isHex(h) {
						return "", s.syntaxError("invalid \\u escape in a string")
					}
				}
				s.pos += 6
			default:
				return "", s.syntaxError("invalid escape in a string")
			}
		default: // a byte of a multi-byte UTF-8 sequence, or invalid UTF-8
			plain = false
			s.pos++
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number scans a number by the JSON grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.data) && s.data[s.pos] == '0':
		s.pos++
	case s.pos < len(s.data) && s.data[s.pos] >= '1' && s.data[s.pos] <= '9':
		s.digits()
	default:
		return s.syntaxError("invalid number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.syntaxError("invalid number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.syntaxError("invalid number")
		}
	}
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

func (s *scanner) structFields(t reflect.Type) map[string]reflect.Type {
	f, ok := s.fields[t]
	if !ok {
		f = structFields(t)
		s.fields[t] = f
	}
	return f
}

// pathString formats s.path as Decode's errors do: members joined by '.'
// and indexes in brackets, such as "components[0].name".
func (s *scanner) pathString() string {
	var b strings.Builder
	for _, step := range s.path {
		if step.isIndex {
			fmt.Fprintf(&b, "[%d]", step.index)
		} else {
			b.WriteString("." + step.name)
		}
	}
	return b.String()
}
