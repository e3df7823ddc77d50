package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxJSONDepth bounds the nesting of objects and arrays. A version 1
// bundle nests four levels deep; the envelope two.
const maxJSONDepth = 16

// checkJSON walks data token by token and rejects a duplicate member name in
// any object, nesting deeper than maxJSONDepth, and data after the first
// value. encoding/json keeps the last of duplicate members, and another
// implementation may keep the first, so a signed bundle with duplicates could
// mean different things to different readers.
func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()

	// Each open container has a frame. An object's frame records the
	// member names seen so far and whether the next token is a name.
	type frame struct {
		object    bool
		names     map[string]bool
		expectKey bool
	}
	var stack []*frame
	started := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if !started {
				return errors.New("empty input: expected a JSON object")
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
			if top.names[name] {
				return fmt.Errorf("duplicate member %q at byte %d", name, dec.InputOffset())
			}
			top.names[name] = true
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
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("JSON nests deeper than %d levels at byte %d", maxJSONDepth, dec.InputOffset())
			}
			f := &frame{object: d == '{'}
			if f.object {
				f.names = make(map[string]bool)
				f.expectKey = true
			}
			stack = append(stack, f)
		case '}', ']':
			stack = stack[:len(stack)-1]
		}
	}
}
