package ima

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Allowlist holds reference file digests, each with the file names it is
// known under. Digests of different algorithms never match each other.
type Allowlist struct {
	sha256 map[[32]byte]int32 // digest -> first name record
	other  map[string]int32   // "alg:" + digest -> first name record
	names  []nameRecord
	count  int
}

// nameRecord chains the names listed for one digest. An empty name means
// the digest was listed without a name.
type nameRecord struct {
	name string
	next int32 // index of the next record, or -1
}

// NewAllowlist returns an empty allowlist.
func NewAllowlist() *Allowlist {
	return &Allowlist{sha256: map[[32]byte]int32{}, other: map[string]int32{}}
}

// Len returns the number of distinct digests.
func (a *Allowlist) Len() int { return a.count }

// Add lists digest, of the kernel-named algorithm alg ("sha256",
// "sha1"...), for the file name name, which may be empty.
func (a *Allowlist) Add(alg string, digest []byte, name string) error {
	if err := checkDigestSize(alg, digest); err != nil {
		return err
	}
	rec := int32(len(a.names))
	if alg == "sha256" {
		key := [32]byte(digest)
		head, ok := a.sha256[key]
		if !ok {
			head = -1
			a.count++
		} else if a.hasName(head, name) {
			return nil
		}
		a.names = append(a.names, nameRecord{name: name, next: head})
		a.sha256[key] = rec
		return nil
	}
	key := alg + ":" + string(digest)
	head, ok := a.other[key]
	if !ok {
		head = -1
		a.count++
	} else if a.hasName(head, name) {
		return nil
	}
	a.names = append(a.names, nameRecord{name: name, next: head})
	a.other[key] = rec
	return nil
}

func (a *Allowlist) hasName(head int32, name string) bool {
	for i := head; i >= 0; i = a.names[i].next {
		if a.names[i].name == name {
			return true
		}
	}
	return false
}

// lookup returns the first name record of a digest, or -1.
func (a *Allowlist) lookup(alg string, digest []byte) int32 {
	if alg == "sha256" && len(digest) == 32 {
		if head, ok := a.sha256[[32]byte(digest)]; ok {
			return head
		}
		return -1
	}
	var buf [80]byte
	key := append(append(append(buf[:0], alg...), ':'), digest...)
	if head, ok := a.other[string(key)]; ok {
		return head
	}
	return -1
}

// Contains reports whether the digest is listed, under any name.
func (a *Allowlist) Contains(alg string, digest []byte) bool {
	return a.lookup(alg, digest) >= 0
}

// ContainsFor reports whether the digest is listed for the file name, or
// listed without a name.
func (a *Allowlist) ContainsFor(alg string, digest []byte, name []byte) bool {
	for i := a.lookup(alg, digest); i >= 0; i = a.names[i].next {
		if n := a.names[i].name; n == "" || n == string(name) {
			return true
		}
	}
	return false
}

// ReadFrom reads an allowlist in the format of sha256sum and its
// kind: one "DIGEST  NAME" per line, where DIGEST is hexadecimal, of
// SHA-256 unless prefixed with the algorithm ("sha1:..."), a '*' may mark
// the name, and a line starting with '\' has a name with "\\" and "\n"
// escapes. NAME may be missing. Blank lines and lines starting with '#'
// are skipped. Entries are added to a, which may already hold digests.
func (a *Allowlist) ReadFrom(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var n int64
	line := 0
	for sc.Scan() {
		line++
		text := sc.Bytes()
		n += int64(len(text)) + 1
		if len(bytes.TrimSpace(text)) == 0 || text[0] == '#' {
			continue
		}
		escaped := text[0] == '\\'
		if escaped {
			text = text[1:]
		}
		digestText, name, _ := bytes.Cut(text, []byte(" "))
		if len(name) > 0 && (name[0] == ' ' || name[0] == '*') {
			name = name[1:]
		}
		alg := "sha256"
		if i := bytes.IndexByte(digestText, ':'); i >= 0 {
			alg, digestText = string(digestText[:i]), digestText[i+1:]
		} else if len(digestText) != 64 {
			if guess, ok := algorithmBySize[len(digestText)/2]; ok {
				alg = guess
			}
		}
		digest := make([]byte, hex.DecodedLen(len(digestText)))
		if _, err := hex.Decode(digest, digestText); err != nil {
			return n, fmt.Errorf("allowlist line %d: digest %q is not hexadecimal", line, truncateForError(digestText))
		}
		nameStr := string(name)
		if escaped {
			nameStr = unescapeName(nameStr)
		}
		if err := a.Add(alg, digest, nameStr); err != nil {
			return n, fmt.Errorf("allowlist line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("allowlist line %d: %w", line+1, err)
	}
	return n, nil
}

// algorithmBySize guesses an unprefixed digest's algorithm from its size,
// as sha1sum, sha384sum and sha512sum output has no prefix.
var algorithmBySize = map[int]string{20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}

func unescapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func escapeName(s string) (string, bool) {
	if !strings.ContainsAny(s, "\\\n") {
		return s, false
	}
	return strings.NewReplacer("\\", "\\\\", "\n", "\\n").Replace(s), true
}

// WriteTo writes the allowlist in the format ReadFrom reads, sorted by
// name and then digest, with SHA-256 digests unprefixed.
func (a *Allowlist) WriteTo(w io.Writer) (int64, error) {
	type line struct{ name, digest string }
	var lines []line
	add := func(alg string, digest []byte, head int32) {
		d := hex.EncodeToString(digest)
		if alg != "sha256" {
			d = alg + ":" + d
		}
		for i := head; i >= 0; i = a.names[i].next {
			lines = append(lines, line{a.names[i].name, d})
		}
	}
	for k, head := range a.sha256 {
		add("sha256", k[:], head)
	}
	for k, head := range a.other {
		alg, digest, _ := strings.Cut(k, ":")
		add(alg, []byte(digest), head)
	}
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].name != lines[j].name {
			return lines[i].name < lines[j].name
		}
		return lines[i].digest < lines[j].digest
	})
	bw := bufio.NewWriter(w)
	var n int64
	for _, l := range lines {
		name, escaped := escapeName(l.name)
		prefix := ""
		if escaped {
			prefix = "\\"
		}
		m, err := fmt.Fprintf(bw, "%s%s  %s\n", prefix, l.digest, name)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}
