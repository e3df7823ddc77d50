package ima

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Allowlist holds reference file digests, each with the file names it is
// known under. Digests of different algorithms never match each other.
type Allowlist struct {
	sha256 digestTable      // SHA-256 digest -> first name record
	other  map[string]int32 // "alg:" + digest -> first name record
	names  []nameRecord
	count  int
}

// digestTable is an open-addressing hash table of SHA-256 digests. File
// digests are uniformly distributed, so their first bytes serve as the
// hash, and each slot holds the whole digest: a lookup in a large list
// touches one cache line in the common case, where a Go map touches two.
type digestTable struct {
	slots []digestSlot
	used  int
}

type digestSlot struct {
	digest [32]byte
	head   int32 // first name record + 1; 0 marks an empty slot
}

func (t *digestTable) find(d *[32]byte) *digestSlot {
	if len(t.slots) == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := binary.LittleEndian.Uint64(d[:8]) & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.head == 0 || s.digest == *d {
			return s
		}
	}
}

// slot returns the slot of d, claiming an empty one, and grows the table
// to keep it at most half full.
func (t *digestTable) slot(d *[32]byte) *digestSlot {
	if 2*(t.used+1) > len(t.slots) {
		old := t.slots
		t.slots = make([]digestSlot, max(1024, 2*len(old)))
		for i := range old {
			if old[i].head != 0 {
				*t.find(&old[i].digest) = old[i]
			}
		}
	}
	s := t.find(d)
	if s.head == 0 {
		s.digest = *d
		t.used++
	}
	return s
}

// nameRecord chains the names listed for one digest. An empty name means
// the digest was listed without a name.
type nameRecord struct {
	name string
	next int32 // index of the next record, or -1
}

// NewAllowlist returns an empty allowlist.
func NewAllowlist() *Allowlist {
	return &Allowlist{other: map[string]int32{}}
}

// Len returns the number of distinct digests.
func (a *Allowlist) Len() int { return a.count }

// Add lists digest, of the kernel-named algorithm alg ("sha256",
// "sha1"...), for the file name name, which may be empty. Spaces in name
// become underscores, because IMA logs file names that way (see
// LoggedName).
func (a *Allowlist) Add(alg string, digest []byte, name string) error {
	if err := checkDigestSize(alg, digest); err != nil {
		return err
	}
	name = LoggedName(name)
	rec := int32(len(a.names))
	if alg == "sha256" {
		s := a.sha256.slot((*[32]byte)(digest))
		head := s.head - 1
		if s.head == 0 {
			a.count++
		} else if a.hasName(head, name) {
			return nil
		}
		a.names = append(a.names, nameRecord{name: name, next: head})
		s.head = rec + 1
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

// LoggedName returns a file name as IMA logs it: the kernel replaces
// every space with an underscore when it records a name
// (ima_write_template_field_data in security/integrity/ima/ima_template_lib.c),
// so that names do not split the fields of the ascii list.
func LoggedName(name string) string {
	if !strings.Contains(name, " ") {
		return name
	}
	return strings.ReplaceAll(name, " ", "_")
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
		if s := a.sha256.find((*[32]byte)(digest)); s != nil {
			return s.head - 1
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
	for i := range a.sha256.slots {
		if s := &a.sha256.slots[i]; s.head != 0 {
			add("sha256", s.digest[:], s.head-1)
		}
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
