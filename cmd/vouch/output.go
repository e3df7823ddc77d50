package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeYAML writes v as YAML, by walking its JSON encoding so that field
// order and the JSON field names carry over. Strings are written as
// double-quoted scalars, whose escapes are the JSON ones.
func writeYAML(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b strings.Builder
	b.WriteString("---\n")
	if err := yamlValue(&b, dec, 0, false); err != nil {
		return err
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// yamlValue writes the next JSON value of dec. inline is true when the
// caller already wrote a key or list marker on the current line.
func yamlValue(b *strings.Builder, dec *json.Decoder, indent int, inline bool) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	pad := strings.Repeat("  ", indent)
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			if !dec.More() {
				_, _ = dec.Token()
				b.WriteString(" {}\n")
				return nil
			}
			if inline {
				b.WriteString("\n")
			}
			for dec.More() {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				fmt.Fprintf(b, "%s%s:", pad, yamlKey(key.(string)))
				if err := yamlValue(b, dec, indent+1, true); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case '[':
			if !dec.More() {
				_, _ = dec.Token()
				b.WriteString(" []\n")
				return nil
			}
			if inline {
				b.WriteString("\n")
			}
			for dec.More() {
				fmt.Fprintf(b, "%s-", pad)
				if err := yamlValue(b, dec, indent+1, true); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
	case string:
		q, _ := json.Marshal(t)
		fmt.Fprintf(b, " %s\n", q)
	case json.Number:
		fmt.Fprintf(b, " %s\n", t)
	case bool:
		fmt.Fprintf(b, " %t\n", t)
	case nil:
		b.WriteString(" null\n")
	}
	return nil
}

func yamlKey(k string) string {
	for _, c := range k {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			q, _ := json.Marshal(k)
			return string(q)
		}
	}
	if k == "" {
		return `""`
	}
	return k
}
