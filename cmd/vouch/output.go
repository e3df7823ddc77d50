package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
	text, err := yamlText(v, 0, false)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "---\n"+text)
	return err
}

// yamlText returns v as YAML at the indent level (see yamlValue for
// inline).
func yamlText(v any, indent int, inline bool) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b strings.Builder
	if err := yamlValue(&b, dec, indent, inline); err != nil {
		return "", err
	}
	return b.String(), nil
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

// termText escapes the runes of untrusted text that a terminal would act
// on: control characters (ESC, CR, newline, tab), other non-printable runes
// such as bidirectional overrides, and invalid UTF-8, each written as a Go
// escape (\x1b, \r, \u202e). Table output passes every string read from a
// log, bundle or list through it, so input cannot clear the screen,
// overwrite a line or add rows. Printable text is returned unchanged.
func termText(s string) string {
	plain := true
	for _, r := range s {
		if r == utf8.RuneError || r != ' ' && !unicode.IsPrint(r) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == ' ' || r != utf8.RuneError && unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// cutText escapes s with termText and cuts the result to at most n runes,
// marking a cut with "...".
func cutText(s string, n int) string {
	s = termText(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-3]) + "..."
}

// addOutputFormatFlag registers -o/--output, which selects the output
// format of a command. The first format is the default. Every command that
// prints in more than one format uses this flag, and no command uses -o for
// a file name: files are written with --out.
func addOutputFormatFlag(fs *pflag.FlagSet, p *string, formats ...string) {
	fs.StringVarP(p, "output", "o", formats[0], "output format: "+joinOr(formats))
}

// checkOutputFormat returns a usage error unless format is one of formats.
func checkOutputFormat(format string, formats ...string) error {
	if slices.Contains(formats, format) {
		return nil
	}
	return withExitCode(exitUsage, fmt.Errorf("invalid --output %q: use %s", format, joinOr(formats)))
}

// joinOr joins words as "a, b or c".
func joinOr(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// explainFlagError adds the current spelling to the error of a flag that
// an older release used: -o names the output format everywhere, so
// --format and --json are gone and files are written with --out.
func explainFlagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	hasFormat := cmd.Flags().Lookup("output") != nil
	switch {
	case strings.HasPrefix(msg, "unknown flag: --json") && hasFormat:
		err = fmt.Errorf("%w: use -o json to print JSON", err)
	case strings.HasPrefix(msg, "unknown flag: --format") && hasFormat:
		err = fmt.Errorf("%w: use -o (--output) to select the output format", err)
	case strings.HasPrefix(msg, "unknown shorthand flag: 'o'") && cmd.Flags().Lookup("out") != nil:
		err = fmt.Errorf("%w: use --out FILE to write a file", err)
	}
	return withExitCode(exitUsage, err)
}
