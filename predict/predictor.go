package predict

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// maxArtifactSize bounds an EFI application or kernel read into memory.
// Distribution kernels and UKIs are tens of megabytes.
const maxArtifactSize = 512 << 20

// Role is an artifact's place in the boot chain.
type Role string

// Artifact roles.
const (
	RoleEFIApplication Role = "efi-application"
	RoleKernel         Role = "kernel"
	RoleUKI            Role = "uki"
	RoleInitrd         Role = "initrd"
)

// Artifact is a file found in a package or tree, with its plain file
// digests (what GRUB measures when it loads the file).
type Artifact struct {
	Role      Role
	Component string
	Path      string
	Package   *Package
	// FileDigests is the hash of the whole file in each bank.
	FileDigests Digests
}

// Predictor collects reference values from packages, trees and files.
// Use NewPredictor, because the zero value has no banks.
type Predictor struct {
	banks []Bank
	// MokVariables contains enrolled MOK variables (MokList, MokListX) to
	// include in shim's measurements. Nil means none are enrolled.
	MokVariables Variables

	pred      Prediction
	artifacts []Artifact
}

// NewPredictor returns a Predictor computing the given banks (all banks when
// none are given).
func NewPredictor(banks ...Bank) *Predictor {
	if len(banks) == 0 {
		banks = AllBanks
	}
	return &Predictor{banks: banks, pred: Prediction{Version: FormatVersion}}
}

// Banks returns the banks the predictor computes.
func (p *Predictor) Banks() []Bank { return p.banks }

// Prediction returns the references collected so far.
func (p *Predictor) Prediction() *Prediction {
	out := p.pred
	if out.References == nil {
		out.References = []Reference{}
	}
	return &out
}

// Artifacts returns the artifacts found so far, in input order.
func (p *Predictor) Artifacts() []Artifact { return p.artifacts }

// Add appends references computed elsewhere (GRUB, Secure Boot variables).
func (p *Predictor) Add(refs ...Reference) { p.pred.References = append(p.pred.References, refs...) }

// ErrNoArtifacts is returned by AddPath for a directory or package that
// contains no file it would predict.
var ErrNoArtifacts = errors.New("no boot artifacts found: expected EFI applications (*.efi, *.efi.signed), kernels (vmlinuz*, bzImage) or initrds (initrd.img*, initramfs*)")

// AddPath reads a Debian package (a file ending in .deb), a directory tree
// or a single artifact file.
func (p *Predictor) AddPath(name string) error {
	info, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("read artifact: %w", err)
	}
	before := len(p.artifacts)
	switch {
	case info.IsDir():
		if err := p.AddTree(os.DirFS(name)); err != nil {
			return err
		}
		if len(p.artifacts) == before {
			return fmt.Errorf("directory %s: %w", name, ErrNoArtifacts)
		}
		return nil
	case strings.HasSuffix(name, ".deb"):
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("read package: %w", err)
		}
		defer f.Close()
		if err := p.AddDeb(f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(p.artifacts) == before {
			return fmt.Errorf("package %s: %w", name, ErrNoArtifacts)
		}
		return nil
	default:
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("read artifact: %w", err)
		}
		defer f.Close()
		role := classify(name)
		if role == "" {
			role = RoleEFIApplication
		}
		if err := p.addArtifact(nil, filepath.Base(name), role, info.Size(), f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(p.artifacts) == before {
			return fmt.Errorf("%s: %w: give an EFI application, a kernel (vmlinuz*), an initrd (initrd.img*), a .deb or a directory", name, ErrNotPE)
		}
		return nil
	}
}

// AddDeb reads a Debian binary package and predicts the measurements of the
// boot artifacts in it.
func (p *Predictor) AddDeb(r io.Reader) error {
	pkg := new(Package)
	err := readDeb(r, pkg, func(name string, size int64, r io.Reader) error {
		role := classify(name)
		if role == "" {
			return nil
		}
		if err := p.addArtifact(pkg, name, role, size, r); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.pred.Packages = append(p.pred.Packages, *pkg)
	return nil
}

// AddTree walks an unpacked tree (a package unpacked with dpkg-deb -x, a
// mounted ESP, a /boot directory) and predicts the measurements of the boot
// artifacts in it. Symbolic links are not followed.
func (p *Predictor) AddTree(fsys fs.FS) error { return p.AddTreeOf(fsys, nil) }

// AddTreeOf is AddTree for the unpacked contents of a known package, which
// the references name. pkg may be nil.
func (p *Predictor) AddTreeOf(fsys fs.FS, pkg *Package) error {
	if pkg != nil {
		p.pred.Packages = append(p.pred.Packages, *pkg)
	}
	return fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk tree: %w", err)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		role := classify(name)
		if role == "" {
			return nil
		}
		f, err := fsys.Open(name)
		if err != nil {
			return fmt.Errorf("read artifact: %w", err)
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return fmt.Errorf("stat artifact %s: %w", name, err)
		}
		if err := p.addArtifact(pkg, name, role, info.Size(), f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// classify returns the role a path suggests, or "" for files that are not
// boot artifacts. The contents decide later whether an EFI application is
// a UKI.
func classify(name string) Role {
	base := strings.ToLower(path.Base(filepath.ToSlash(name)))
	switch {
	case strings.HasSuffix(base, ".efi"), strings.HasSuffix(base, ".efi.signed"):
		return RoleEFIApplication
	case base == "vmlinuz", strings.HasPrefix(base, "vmlinuz-"), base == "bzimage":
		return RoleKernel
	case strings.HasPrefix(base, "initrd.img"), strings.HasPrefix(base, "initramfs"), base == "initrd":
		return RoleInitrd
	}
	return ""
}

// componentName returns the name a verdict uses for an artifact: its base
// name without the ".signed" suffix of Debian's signed packages.
func componentName(name string) string {
	return strings.TrimSuffix(path.Base(filepath.ToSlash(name)), ".signed")
}

func (p *Predictor) addArtifact(pkg *Package, name string, role Role, size int64, r io.Reader) error {
	art := Artifact{Role: role, Component: componentName(name), Path: filepath.ToSlash(name), Package: pkg}
	if role == RoleInitrd {
		digests, err := hashLimited(p.banks, r, maxHashedFileSize, name, "an initrd")
		if err != nil {
			return err
		}
		art.FileDigests = digests
		p.artifacts = append(p.artifacts, art)
		p.Add(art.fileReference())
		return nil
	}

	if size > maxArtifactSize {
		return fmt.Errorf("artifact is %d bytes, more than the %d-byte limit", size, maxArtifactSize)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, maxArtifactSize+1)); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if buf.Len() > maxArtifactSize {
		return fmt.Errorf("artifact exceeds the %d-byte limit", maxArtifactSize)
	}
	data := buf.Bytes()
	fileDigests, err := hashBytes(p.banks, data)
	if err != nil {
		return err
	}
	art.FileDigests = fileDigests

	pe, err := ParsePE(bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, ErrNotPE) {
		if role == RoleKernel {
			// A kernel without an EFI stub is still loaded and measured
			// by GRUB as a file.
			p.artifacts = append(p.artifacts, art)
			p.Add(art.fileReference())
			return nil
		}
		// Not every file named .efi is an image (signatures, lists).
		return nil
	}
	if err != nil {
		return err
	}
	refs, err := p.imageReferences(pe, art)
	if err != nil {
		return err
	}
	if IsUKI(pe) {
		art.Role = RoleUKI
	}
	p.artifacts = append(p.artifacts, art)
	p.Add(refs...)
	return nil
}

// imageReferences predicts the measurements of one PE image: its
// Authenticode hash, and depending on its contents the kernel file hash,
// shim's measurements or a UKI's section measurements.
func (p *Predictor) imageReferences(pe *PEFile, art Artifact) ([]Reference, error) {
	auth, err := pe.AuthenticodeDigests(p.banks)
	if err != nil {
		return nil, err
	}
	refs := []Reference{{
		Kind: KindBootApplication, PCR: 4, EventType: EventEFIBootServicesApplication,
		Component: art.Component, Package: art.Package, Path: art.Path, Digests: auth,
	}}
	if art.Role == RoleKernel {
		refs = append(refs, art.fileReference())
	}
	shim, err := ParseShim(pe)
	if err != nil {
		return nil, err
	}
	if shim != nil {
		shimRefs, err := shim.References(p.MokVariables, p.banks)
		if err != nil {
			return nil, err
		}
		for i := range shimRefs {
			shimRefs[i].Package = art.Package
			shimRefs[i].Path = art.Path
			if shimRefs[i].Kind != KindVariableAuthority {
				shimRefs[i].Component = art.Component + " " + shimRefs[i].Component
			}
		}
		refs = append(refs, shimRefs...)
	}
	if IsUKI(pe) {
		ukiRefs, err := UKIReferences(pe, art.Component, p.banks)
		if err != nil {
			return nil, err
		}
		for i := range ukiRefs {
			ukiRefs[i].Package = art.Package
			ukiRefs[i].Path = art.Path
		}
		refs = append(refs, ukiRefs...)
	}
	return refs, nil
}

// fileReference is GRUB's PCR 9 measurement of the artifact as a file.
func (a Artifact) fileReference() Reference {
	return Reference{
		Kind: KindGrubFile, PCR: 9, EventType: EventIPL, Component: a.Component,
		Package: a.Package, Path: a.Path, Digests: a.FileDigests,
	}
}

// GrubFileMap resolves GRUB paths for a GrubSimulation. A GRUB path's
// "(device)" prefix is dropped, so every device maps to the same files.
type GrubFileMap struct {
	// Dir, when set, is a directory that GRUB paths are resolved under.
	Dir string
	// Files maps GRUB paths to local files.
	Files map[string]string
	// Known maps GRUB paths to known file digests, e.g. a kernel read
	// from a package.
	Known map[string]Digests
}

// grubPath removes the "(device)" prefix of a GRUB path and cleans it.
func grubPath(p string) string {
	if strings.HasPrefix(p, "(") {
		if i := strings.IndexByte(p, ')'); i >= 0 {
			p = p[i+1:]
		}
	}
	return path.Clean("/" + p)
}

func (m *GrubFileMap) local(p string) (string, bool) {
	want := grubPath(p)
	for k, v := range m.Files {
		if grubPath(k) == want {
			return v, true
		}
	}
	if m.Dir != "" {
		return filepath.Join(m.Dir, filepath.FromSlash(want)), true
	}
	return "", false
}

// Exists reports whether a GRUB path names a mapped file, a directory
// above one, or a file under Dir.
func (m *GrubFileMap) Exists(p string) bool {
	want := grubPath(p)
	keys := make([]string, 0, len(m.Files)+len(m.Known))
	for k := range m.Files {
		keys = append(keys, k)
	}
	for k := range m.Known {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := grubPath(k)
		if g == want || strings.HasPrefix(g, strings.TrimSuffix(want, "/")+"/") {
			return true
		}
	}
	if m.Dir != "" {
		_, err := os.Stat(filepath.Join(m.Dir, filepath.FromSlash(want)))
		return err == nil
	}
	return false
}

// Read returns a mapped file's contents.
func (m *GrubFileMap) Read(p string) ([]byte, error) {
	local, ok := m.local(p)
	if !ok {
		return nil, fmt.Errorf("no local file for GRUB path %s: map it with a file mapping or a boot directory", p)
	}
	return readFileLimited(local, maxGrubScript, "a GRUB script")
}

// Digests returns a mapped file's digests.
func (m *GrubFileMap) Digests(p string, banks []Bank) (Digests, error) {
	want := grubPath(p)
	for k, d := range m.Known {
		if grubPath(k) == want {
			return d, nil
		}
	}
	local, ok := m.local(p)
	if !ok {
		return nil, fmt.Errorf("no local file for GRUB path %s: map it with a file mapping or a boot directory", p)
	}
	f, err := os.Open(local)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hashLimited(banks, f, maxHashedFileSize, local, "a file GRUB loads")
}
