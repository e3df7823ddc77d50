package predict

import (
	"fmt"
	"strings"
)

// grubPart is a piece of a GRUB script word: literal text or a variable
// reference, quoted or not.
type grubPart struct {
	text     string
	variable bool
	quoted   bool
}

type grubWord []grubPart

// literal returns the word's text when it is one unquoted literal, which is
// how keywords are recognized.
func (w grubWord) literal() string {
	if len(w) == 1 && !w[0].variable && !w[0].quoted {
		return w[0].text
	}
	return ""
}

// grubStmt is a simple command (words and an optional block argument) or an
// if statement (ifs).
type grubStmt struct {
	line  int // of the statement's first token, in its script
	words []grubWord
	block string
	ifs   []grubBranch
}

// grubBranch is one arm of an if statement, with a nil cond for else.
type grubBranch struct {
	cond []grubStmt
	body []grubStmt
}

type grubTokenKind int

const (
	tokWord grubTokenKind = iota
	tokSep
	tokBlock
)

type grubToken struct {
	kind  grubTokenKind
	word  grubWord
	block string
	line  int
}

// maxGrubScript bounds the size of a script parsed.
const maxGrubScript = 1 << 20

func lexGrubScript(src string) ([]grubToken, error) {
	if len(src) > maxGrubScript {
		return nil, fmt.Errorf("grub script is %d bytes, more than the %d-byte limit", len(src), maxGrubScript)
	}
	var toks []grubToken
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case c == '\n' || c == ';':
			if c == '\n' {
				line++
			}
			toks = append(toks, grubToken{kind: tokSep, line: line})
			i++
			continue
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			continue
		case c == '\\' && i+1 < len(src) && src[i+1] == '\n':
			line++
			i += 2
			continue
		case c == '{':
			end, err := matchBrace(src, i)
			if err != nil {
				return nil, fmt.Errorf("grub script line %d: %w", line, err)
			}
			block := src[i+1 : end]
			toks = append(toks, grubToken{kind: tokBlock, block: block, line: line})
			line += strings.Count(block, "\n")
			i = end + 1
			continue
		}
		word, next, lines, err := lexWord(src, i)
		if err != nil {
			return nil, fmt.Errorf("grub script line %d: %w", line, err)
		}
		toks = append(toks, grubToken{kind: tokWord, word: word, line: line})
		line += lines
		i = next
	}
	return toks, nil
}

// matchBrace returns the index of the } that closes the { at open, skipping
// quoted text and comments.
func matchBrace(src string, open int) (int, error) {
	depth := 0
	for i := open; i < len(src); i++ {
		switch src[i] {
		case '\\':
			i++
		case '\'':
			j := strings.IndexByte(src[i+1:], '\'')
			if j < 0 {
				return 0, fmt.Errorf("unterminated single quote")
			}
			i += j + 1
		case '"':
			for i++; i < len(src) && src[i] != '"'; i++ {
				if src[i] == '\\' {
					i++
				}
			}
			if i >= len(src) {
				return 0, fmt.Errorf("unterminated double quote")
			}
		case '#':
			if i == 0 || strings.IndexByte(" \t\n;{", src[i-1]) >= 0 {
				for i < len(src) && src[i] != '\n' {
					i++
				}
			}
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("block opened with { is never closed")
}

// lexWord reads one word starting at i and returns it, the index after it
// and the number of newlines it contains.
func lexWord(src string, i int) (grubWord, int, int, error) {
	var word grubWord
	var lit strings.Builder
	lines := 0
	flush := func(quoted bool) {
		if lit.Len() > 0 || quoted {
			word = append(word, grubPart{text: lit.String(), quoted: quoted})
			lit.Reset()
		}
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';':
			flush(false)
			return word, i, lines, nil
		case c == '\\':
			if i+1 < len(src) {
				if src[i+1] == '\n' {
					lines++
				} else {
					lit.WriteByte(src[i+1])
				}
			}
			i += 2
		case c == '\'':
			flush(false)
			j := strings.IndexByte(src[i+1:], '\'')
			if j < 0 {
				return nil, 0, 0, fmt.Errorf("unterminated single quote")
			}
			lit.WriteString(src[i+1 : i+1+j])
			lines += strings.Count(src[i+1:i+1+j], "\n")
			flush(true)
			i += j + 2
		case c == '"':
			flush(false)
			i++
			closed := false
			for i < len(src) && !closed {
				switch d := src[i]; {
				case d == '"':
					closed = true
					i++
				case d == '\\' && i+1 < len(src) && strings.IndexByte("\\\"$\n", src[i+1]) >= 0:
					if src[i+1] != '\n' {
						lit.WriteByte(src[i+1])
					}
					i += 2
				case d == '$':
					name, next := lexVariable(src, i)
					if name == "" {
						lit.WriteByte('$')
						i++
						continue
					}
					flush(true)
					word = append(word, grubPart{text: name, variable: true, quoted: true})
					i = next
				default:
					if d == '\n' {
						lines++
					}
					lit.WriteByte(d)
					i++
				}
			}
			if !closed {
				return nil, 0, 0, fmt.Errorf("unterminated double quote")
			}
			flush(true)
		case c == '$':
			name, next := lexVariable(src, i)
			if name == "" {
				lit.WriteByte('$')
				i++
				continue
			}
			flush(false)
			word = append(word, grubPart{text: name, variable: true})
			i = next
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush(false)
	return word, i, lines, nil
}

// lexVariable reads $name or ${name} at i.
func lexVariable(src string, i int) (string, int) {
	if i+1 < len(src) && src[i+1] == '{' {
		end := strings.IndexByte(src[i+2:], '}')
		if end < 0 {
			return "", i
		}
		return src[i+2 : i+2+end], i + 3 + end
	}
	j := i + 1
	for j < len(src) && (src[j] == '_' || src[j] == '?' || src[j] == '#' ||
		'a' <= src[j] && src[j] <= 'z' || 'A' <= src[j] && src[j] <= 'Z' || '0' <= src[j] && src[j] <= '9') {
		j++
	}
	return src[i+1 : j], j
}

func parseGrubScript(src string) ([]grubStmt, error) {
	toks, err := lexGrubScript(src)
	if err != nil {
		return nil, err
	}
	p := &grubParser{toks: toks}
	stmts, end, err := p.list(nil)
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, fmt.Errorf("grub script line %d: unexpected %q", p.line(), end)
	}
	return stmts, nil
}

type grubParser struct {
	toks []grubToken
	pos  int
}

func (p *grubParser) line() int {
	if p.pos < len(p.toks) {
		return p.toks[p.pos].line
	}
	if len(p.toks) > 0 {
		return p.toks[len(p.toks)-1].line
	}
	return 1
}

// list parses statements until one of the keywords in stop starts a
// command, and returns that keyword (consumed), or "" at the end of input.
func (p *grubParser) list(stop []string) ([]grubStmt, string, error) {
	var stmts []grubStmt
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		if t.kind == tokSep {
			p.pos++
			continue
		}
		if t.kind == tokBlock {
			return nil, "", fmt.Errorf("grub script line %d: block without a command", t.line)
		}
		kw := t.word.literal()
		for _, s := range stop {
			if kw == s {
				p.pos++
				return stmts, kw, nil
			}
		}
		switch kw {
		case "if":
			p.pos++
			s, err := p.ifStatement()
			if err != nil {
				return nil, "", err
			}
			stmts = append(stmts, s)
			continue
		case "for", "while", "until", "function", "then", "elif", "else", "fi", "do", "done":
			return nil, "", fmt.Errorf("grub script line %d: %q is not supported here", t.line, kw)
		}
		stmts = append(stmts, p.simple())
	}
	if stop != nil {
		return nil, "", fmt.Errorf("grub script: missing %s at the end of the script", strings.Join(stop, " or "))
	}
	return stmts, "", nil
}

func (p *grubParser) simple() grubStmt {
	s := grubStmt{line: p.line()}
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		if t.kind == tokSep {
			break
		}
		p.pos++
		if t.kind == tokBlock {
			s.block = t.block
			break
		}
		s.words = append(s.words, t.word)
	}
	return s
}

func (p *grubParser) ifStatement() (grubStmt, error) {
	var s grubStmt
	for {
		cond, kw, err := p.list([]string{"then"})
		if err != nil {
			return s, err
		}
		_ = kw
		body, kw, err := p.list([]string{"elif", "else", "fi"})
		if err != nil {
			return s, err
		}
		s.ifs = append(s.ifs, grubBranch{cond: cond, body: body})
		switch kw {
		case "fi":
			return s, nil
		case "else":
			body, _, err := p.list([]string{"fi"})
			if err != nil {
				return s, err
			}
			s.ifs = append(s.ifs, grubBranch{body: body})
			return s, nil
		}
	}
}
