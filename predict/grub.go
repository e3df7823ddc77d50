package predict

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// GrubForm selects how a GRUB build turns a command string into an event.
// Both forms hash the text without its prefix. They differ in the prefix and
// in whether the NUL terminator is hashed.
type GrubForm int

const (
	// GrubUpstream is GRUB 2.04 and later's tpm module (Debian, Ubuntu, COS):
	// event "grub_cmd: TEXT\0" with the digest over TEXT, and kernel command lines as
	// "kernel_cmdline: TEXT\0".
	GrubUpstream GrubForm = iota
	// GrubRHBoot is the Red Hat / Fedora GRUB 2.02 patch set (RHEL 8): event
	// "grub_cmd TEXT\0" with the digest over TEXT and its NUL, and kernel
	// command lines as "grub_kernel_cmdline TEXT\0", digest over TEXT.
	GrubRHBoot
)

// ParseGrubForm parses "upstream" or "rhboot".
func ParseGrubForm(s string) (GrubForm, error) {
	switch s {
	case "upstream", "":
		return GrubUpstream, nil
	case "rhboot":
		return GrubRHBoot, nil
	}
	return 0, fmt.Errorf("unknown GRUB measurement form %q: use upstream or rhboot", s)
}

// GrubCommandReference predicts GRUB's PCR 8 measurement of a command line
// as GRUB ran it: its words after quote removal and variable expansion,
// joined by single spaces.
func GrubCommandReference(command string, form GrubForm, banks []Bank) (Reference, error) {
	data := []byte(command)
	event := "grub_cmd: " + command
	if form == GrubRHBoot {
		data = append(data, 0)
		event = "grub_cmd " + command
	}
	d, err := hashBytes(banks, data)
	if err != nil {
		return Reference{}, err
	}
	return Reference{Kind: KindGrubCommand, PCR: 8, EventType: EventIPL, Component: "grub command", Event: event, Digests: d}, nil
}

// GrubKernelCmdlineReference predicts GRUB's PCR 8 measurement of the
// command line its linux command passes to the kernel. args are the linux
// command's arguments after the command name, starting with the kernel
// path. They are joined as GRUB 2.06's grub_create_loader_cmdline does.
func GrubKernelCmdlineReference(args []string, form GrubForm, banks []Bank) (Reference, error) {
	return grubCmdlineReference(GrubLoaderCmdline(args), form, banks)
}

func grubCmdlineReference(cmdline string, form GrubForm, banks []Bank) (Reference, error) {
	d, err := hashBytes(banks, []byte(cmdline))
	if err != nil {
		return Reference{}, err
	}
	event := "kernel_cmdline: " + cmdline
	if form == GrubRHBoot {
		event = "grub_kernel_cmdline " + cmdline
	}
	return Reference{Kind: KindKernelCmdline, PCR: 8, EventType: EventIPL, Component: "kernel command line", Event: event, Digests: d}, nil
}

// GrubLoaderCmdline joins loader arguments as GRUB 2.06 does: an argument
// containing a space is put in double quotes, and a backslash, single quote
// or double quote gets a backslash, except in a \xHH escape.
func GrubLoaderCmdline(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		quote := strings.IndexByte(a, ' ') >= 0
		if quote {
			b.WriteByte('"')
		}
		for j := 0; j < len(a); j++ {
			c := a[j]
			if c == '\\' && j+3 < len(a) && a[j+1] == 'x' && isHex(a[j+2]) && isHex(a[j+3]) {
				b.WriteString(a[j : j+4])
				j += 3
				continue
			}
			if c == '\\' || c == '\'' || c == '"' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		if quote {
			b.WriteByte('"')
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// GrubFiles resolves the files a GRUB script reads. Paths are in GRUB's
// form, possibly with a "(device)" prefix.
type GrubFiles interface {
	// Exists reports whether path names a file or directory.
	Exists(path string) bool
	// Read returns a file's contents, for source and configfile.
	Read(path string) ([]byte, error)
	// Digests returns a file's digests, for the PCR 9 measurement of a
	// file GRUB loads (configuration, kernel, initrd).
	Digests(path string, banks []Bank) (Digests, error)
}

// GrubSimulation evaluates GRUB configuration scripts to predict the
// commands GRUB measures. It implements the part of GRUB's script language
// that generated configurations use: quoting, variable expansion, set,
// if/elif/else with [ and test, source and configfile, menuentry and
// submenu, and booting the default entry.
//
// NOTE: search, regexp, loops and functions are not evaluated. A command that
// would set a variable through them (search --set=root) leaves it unchanged,
// so set such variables in Vars beforehand.
type GrubSimulation struct {
	Files GrubFiles
	Form  GrubForm
	Banks []Bank
	// Vars contains GRUB environment variables, such as prefix, root and
	// cmdpath, before the first script runs.
	Vars map[string]string

	refs    []Reference
	entries []grubEntry
	depth   int
	// work counts the bytes of scripts parsed and of command lines run,
	// bounded by maxGrubWork.
	work int64
}

type grubEntry struct {
	title string
	id    string
	body  string
}

// maxGrubDepth bounds nested source and configfile commands.
const maxGrubDepth = 16

// Bounds on the work of one simulation, so that a small hostile script
// (set a="$a$a" repeated, or files that source each other twice) fails
// with an error instead of exhausting memory or time. Generated
// configurations stay far below them: grub-mkconfig output for a few
// kernels is tens of KiB (an estimate).
const (
	// maxGrubWord bounds an expanded word, and so a variable's value.
	// Kernel command lines are at most a few KiB (2 KiB on x86 by
	// default).
	maxGrubWord = 64 << 10
	// maxGrubWork bounds the bytes of scripts parsed plus command lines
	// run by one simulation.
	maxGrubWork = 64 << 20
	// grubCommandCost is the work counted per command besides its bytes.
	grubCommandCost = 64
)

// errGrubWork is wrapped by the error of a simulation over maxGrubWork.
var errGrubWork = fmt.Errorf("grub script: the simulation exceeds its work limit of %d bytes of scripts and commands: look for source or configfile commands that repeat", maxGrubWork)

// spend counts n bytes of work and fails once the total passes
// maxGrubWork.
func (g *GrubSimulation) spend(n int) error {
	g.work += int64(n)
	if g.work > maxGrubWork {
		return errGrubWork
	}
	return nil
}

// References returns the measurements predicted so far.
func (g *GrubSimulation) References() []Reference { return g.refs }

// Run evaluates a script, as GRUB does for its embedded configuration or a
// file given to source.
func (g *GrubSimulation) Run(script string) error {
	if g.Vars == nil {
		g.Vars = map[string]string{}
	}
	if err := g.spend(len(script)); err != nil {
		return err
	}
	stmts, err := parseGrubScript(script)
	if err != nil {
		return err
	}
	return g.exec(stmts)
}

// Boot runs the default menu entry, as GRUB does when the timeout expires:
// the variable default selects an entry by index, title or id (the first
// when unset).
func (g *GrubSimulation) Boot() error {
	if len(g.entries) == 0 {
		return errors.New("grub configuration defines no menu entry to boot")
	}
	entry := g.entries[0]
	if def := g.Vars["default"]; def != "" {
		found := false
		if n, err := strconv.Atoi(def); err == nil && n >= 0 && n < len(g.entries) {
			entry, found = g.entries[n], true
		}
		for _, e := range g.entries {
			if !found && (e.title == def || e.id == def) {
				entry, found = e, true
			}
		}
		if !found {
			return fmt.Errorf("grub default entry %q matches no menu entry", def)
		}
	}
	if err := g.measure([]string{"setparams", entry.title}); err != nil {
		return err
	}
	return g.Run(entry.body)
}

func (g *GrubSimulation) measure(argv []string) error {
	ref, err := GrubCommandReference(strings.Join(argv, " "), g.Form, g.Banks)
	if err != nil {
		return err
	}
	g.refs = append(g.refs, ref)
	return nil
}

func (g *GrubSimulation) measureFile(path string) error {
	d, err := g.Files.Digests(path, g.Banks)
	if err != nil {
		return fmt.Errorf("grub file %s: %w", path, err)
	}
	name := path
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	g.refs = append(g.refs, Reference{Kind: KindGrubFile, PCR: 9, EventType: EventIPL, Component: name, Path: path, Event: path, Digests: d})
	return nil
}

func (g *GrubSimulation) exec(stmts []grubStmt) error {
	for _, s := range stmts {
		switch {
		case s.ifs != nil:
			for _, branch := range s.ifs {
				ok := true
				if branch.cond != nil {
					var err error
					if ok, err = g.runCommands(branch.cond); err != nil {
						return err
					}
				}
				if ok {
					if err := g.exec(branch.body); err != nil {
						return err
					}
					break
				}
			}
		default:
			if _, err := g.runCommands([]grubStmt{s}); err != nil {
				return err
			}
		}
	}
	return nil
}

// runCommands runs simple commands and returns the last one's status.
func (g *GrubSimulation) runCommands(stmts []grubStmt) (bool, error) {
	status := true
	for _, s := range stmts {
		if s.ifs != nil {
			return false, errors.New("grub script: if inside a condition is not supported")
		}
		argv, err := g.expand(s.words)
		if err != nil {
			return false, fmt.Errorf("grub script line %d: %w", s.line, err)
		}
		cost := grubCommandCost + len(s.block)
		for _, a := range argv {
			cost += len(a)
		}
		if err := g.spend(cost); err != nil {
			return false, fmt.Errorf("grub script line %d: %w", s.line, err)
		}
		if len(argv) == 0 {
			continue
		}
		negate := false
		if argv[0] == "!" {
			negate = true
			argv = argv[1:]
			if len(argv) == 0 {
				continue
			}
		}
		if s.block != "" {
			argv = append(argv, "{"+s.block+"}")
		}
		ok, err := g.command(argv)
		if err != nil {
			return false, err
		}
		status = ok != negate
	}
	return status, nil
}

func (g *GrubSimulation) command(argv []string) (bool, error) {
	if err := g.measure(argv); err != nil {
		return false, err
	}
	args := argv[1:]
	switch argv[0] {
	case "set":
		for _, a := range args {
			if k, v, ok := strings.Cut(a, "="); ok {
				g.Vars[k] = v
			}
		}
	case "unset":
		for _, a := range args {
			delete(g.Vars, a)
		}
	case "true":
	case "false":
		return false, nil
	case "[", "test":
		if argv[0] == "[" {
			if len(args) == 0 || args[len(args)-1] != "]" {
				return false, fmt.Errorf("grub script: %q lacks its closing ]", strings.Join(argv, " "))
			}
			args = args[:len(args)-1]
		}
		return g.test(args)
	case "source", "configfile", ".":
		if len(args) != 1 {
			return false, fmt.Errorf("grub script: %s takes one file, got %d arguments", argv[0], len(args))
		}
		return true, g.source(args[0])
	case "menuentry", "submenu":
		g.addEntry(args)
	case "linux", "linuxefi", "linux16":
		if len(args) == 0 {
			return false, fmt.Errorf("grub script: %s needs a kernel path", argv[0])
		}
		if err := g.measureFile(args[0]); err != nil {
			return false, err
		}
		ref, err := GrubKernelCmdlineReference(args, g.Form, g.Banks)
		if err != nil {
			return false, err
		}
		g.refs = append(g.refs, ref)
	case "initrd", "initrdefi", "initrd16":
		for _, a := range args {
			if strings.HasPrefix(a, "--") {
				continue
			}
			if err := g.measureFile(a); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

func (g *GrubSimulation) source(path string) error {
	if g.depth >= maxGrubDepth {
		return fmt.Errorf("grub script: source nested more than %d deep at %s", maxGrubDepth, path)
	}
	data, err := g.Files.Read(path)
	if err != nil {
		return fmt.Errorf("grub source %s: %w", path, err)
	}
	if err := g.measureFile(path); err != nil {
		return err
	}
	if err := g.spend(len(data)); err != nil {
		return fmt.Errorf("grub source %s: %w", path, err)
	}
	stmts, err := parseGrubScript(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	g.depth++
	defer func() { g.depth-- }()
	return g.exec(stmts)
}

// addEntry records a menuentry: its first argument that is not an option is
// the title, --id gives the id, and the last argument is the block.
func (g *GrubSimulation) addEntry(args []string) {
	if len(args) == 0 {
		return
	}
	e := grubEntry{body: strings.TrimSuffix(strings.TrimPrefix(args[len(args)-1], "{"), "}")}
	for i := 0; i < len(args)-1; i++ {
		a := args[i]
		switch {
		case a == "--id" && i+1 < len(args)-1:
			e.id = args[i+1]
			i++
		case strings.HasPrefix(a, "--id="):
			e.id = strings.TrimPrefix(a, "--id=")
		case strings.HasPrefix(a, "--") && (a == "--class" || a == "--users" || a == "--hotkey") && i+1 < len(args)-1:
			i++
		case strings.HasPrefix(a, "-"):
		case e.title == "":
			e.title = a
		}
	}
	g.entries = append(g.entries, e)
}

// test evaluates the arguments of [ or test: -e, -f, -d, -s, -z, -n, = and
// !=, combined with !, -a and -o (-a binds tighter, as in GRUB).
func (g *GrubSimulation) test(args []string) (bool, error) {
	var orTerms [][]string
	start := 0
	for i, a := range args {
		if a == "-o" {
			orTerms = append(orTerms, args[start:i])
			start = i + 1
		}
	}
	orTerms = append(orTerms, args[start:])
	for _, term := range orTerms {
		all := true
		start := 0
		var ands [][]string
		for i, a := range term {
			if a == "-a" {
				ands = append(ands, term[start:i])
				start = i + 1
			}
		}
		ands = append(ands, term[start:])
		for _, t := range ands {
			ok, err := g.primary(t)
			if err != nil {
				return false, err
			}
			all = all && ok
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}

func (g *GrubSimulation) primary(t []string) (bool, error) {
	if len(t) > 0 && t[0] == "!" {
		ok, err := g.primary(t[1:])
		return !ok, err
	}
	switch len(t) {
	case 0:
		return false, nil
	case 1:
		return t[0] != "", nil
	case 2:
		switch t[0] {
		case "-z":
			return t[1] == "", nil
		case "-n":
			return t[1] != "", nil
		case "-e", "-f", "-d", "-s":
			return g.Files.Exists(t[1]), nil
		}
	case 3:
		switch t[1] {
		case "=", "==":
			return t[0] == t[2], nil
		case "!=":
			return t[0] != t[2], nil
		}
	}
	return false, fmt.Errorf("grub script: test expression %q is not supported", strings.Join(t, " "))
}

// expand turns parsed words into arguments: it substitutes variables and
// drops a word that was only unquoted, empty expansions. A word longer
// than maxGrubWord is an error.
func (g *GrubSimulation) expand(words []grubWord) ([]string, error) {
	var argv []string
	for i, w := range words {
		var b strings.Builder
		keep := false
		for _, p := range w {
			n := len(p.text)
			if p.variable {
				n = len(g.Vars[p.text])
			}
			if b.Len()+n > maxGrubWord {
				return nil, fmt.Errorf("word %d expands to more than %d bytes, more than GRUB takes on a command line (a variable that keeps doubling?)", i+1, maxGrubWord)
			}
			if p.variable {
				b.WriteString(g.Vars[p.text])
				if p.quoted {
					keep = true
				}
				continue
			}
			b.WriteString(p.text)
			keep = true
		}
		if keep || b.Len() > 0 {
			argv = append(argv, b.String())
		}
	}
	return argv, nil
}
