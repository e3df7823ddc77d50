package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
)

// member is one member of a top-level JSON or YAML object. A member with
// list set is a list, written one element at a time. Otherwise value is
// written whole.
type member struct {
	key   string
	value any
	list  iter.Seq[any]
}

// writeStreamed writes an object in the format "json" or "yaml", as
// writeJSON and writeYAML would write the same object. It encodes the
// elements of list members one at a time, so a long list is never held in
// memory in its encoded form.
func writeStreamed(w io.Writer, format string, members []member) error {
	if format == "yaml" {
		return writeStreamedYAML(w, members)
	}
	if _, err := io.WriteString(w, "{"); err != nil {
		return err
	}
	for i, m := range members {
		if i > 0 {
			io.WriteString(w, ",")
		}
		key, _ := json.Marshal(m.key)
		fmt.Fprintf(w, "\n  %s: ", key)
		if m.list == nil {
			if err := writeIndentedJSON(w, m.value, "  "); err != nil {
				return err
			}
			continue
		}
		if err := writeJSONList(w, m.list); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "\n}\n")
	return err
}

func writeJSONList(w io.Writer, list iter.Seq[any]) error {
	n := 0
	for v := range list {
		sep := ",\n    "
		if n == 0 {
			sep = "[\n    "
		}
		io.WriteString(w, sep)
		if err := writeIndentedJSON(w, v, "    "); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		_, err := io.WriteString(w, "[]")
		return err
	}
	_, err := io.WriteString(w, "\n  ]")
	return err
}

// writeIndentedJSON writes v as indented JSON whose lines after the first
// start with prefix.
func writeIndentedJSON(w io.Writer, v any, prefix string) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent(prefix, "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	return err
}

func writeStreamedYAML(w io.Writer, members []member) error {
	if _, err := io.WriteString(w, "---\n"); err != nil {
		return err
	}
	for _, m := range members {
		fmt.Fprintf(w, "%s:", yamlKey(m.key))
		if m.list == nil {
			if err := writeYAMLValue(w, m.value, 1); err != nil {
				return err
			}
			continue
		}
		n := 0
		for v := range m.list {
			if n == 0 {
				io.WriteString(w, "\n")
			}
			io.WriteString(w, "  -")
			if err := writeYAMLValue(w, v, 2); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			io.WriteString(w, " []\n")
		}
	}
	return nil
}

// writeYAMLValue writes v as the YAML value of a key or list marker that
// is already on the line, at the indent level.
func writeYAMLValue(w io.Writer, v any, indent int) error {
	text, err := yamlText(v, indent, true)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, text)
	return err
}
