package predict

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// compressTar writes files as a tar archive, compressed with the method
// that the member name's suffix selects.
func compressTar(t *testing.T, member string, files map[string][]byte) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		data := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()

	var out bytes.Buffer
	var w io.WriteCloser
	switch {
	case strings.HasSuffix(member, ".xz"):
		x, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w = x
	case strings.HasSuffix(member, ".gz"):
		w = gzip.NewWriter(&out)
	case strings.HasSuffix(member, ".zst"):
		z, err := zstd.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w = z
	default:
		return raw.Bytes()
	}
	w.Write(raw.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// buildDeb writes a Debian package as dpkg-deb lays it out: an ar archive
// of debian-binary, control.tar.* and data.tar.*.
func buildDeb(t *testing.T, compression string, data map[string][]byte) []byte {
	t.Helper()
	control := compressTar(t, "control.tar"+compression, map[string][]byte{
		"control": []byte("Package: test-efi\nVersion: 1.0-1\nArchitecture: amd64\nDescription: test\n multi-line: ignored\n"),
	})
	var out bytes.Buffer
	out.WriteString(arMagic)
	member := func(name string, body []byte) {
		fmt.Fprintf(&out, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
		out.Write(body)
		if len(body)%2 == 1 {
			out.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar"+compression, control)
	member("data.tar"+compression, compressTar(t, "data.tar"+compression, data))
	return out.Bytes()
}

func TestAddDebCompressions(t *testing.T) {
	efi := buildPE(t, peSpec{sections: []testSection{{".text", 0x200, []byte("boot")}}})
	want, err := Authenticode(efi, AllBanks)
	if err != nil {
		t.Fatal(err)
	}
	for _, compression := range []string{".xz", ".gz", ".zst", ""} {
		t.Run("data.tar"+compression, func(t *testing.T) {
			deb := buildDeb(t, compression, map[string][]byte{
				"usr/lib/test/testx64.efi.signed": efi,
				"usr/share/doc/test/copyright":    []byte("not an artifact"),
				"boot/initrd.img-1.0":             []byte("initrd"),
			})
			p := NewPredictor()
			if err := p.AddDeb(bytes.NewReader(deb)); err != nil {
				t.Fatal(err)
			}
			pred := p.Prediction()
			if len(pred.Packages) != 1 || pred.Packages[0].Name != "test-efi" || pred.Packages[0].Version != "1.0-1" || pred.Packages[0].Architecture != "amd64" {
				t.Fatalf("packages %+v, expected test-efi 1.0-1 amd64", pred.Packages)
			}
			if len(pred.Packages[0].SHA256) != 32 {
				t.Errorf("package sha256 %x, expected the package file's digest", pred.Packages[0].SHA256)
			}
			if len(pred.References) != 2 {
				t.Fatalf("%d references, expected the EFI application and the initrd", len(pred.References))
			}
			// The tar lists boot/ before usr/, and references follow it.
			app := pred.References[1]
			if app.Kind != KindBootApplication || app.Component != "testx64.efi" || app.Package == nil || app.Package.Name != "test-efi" {
				t.Errorf("second reference %+v, expected testx64.efi from test-efi", app)
			}
			if app.Digests[SHA384].String() != want[SHA384].String() {
				t.Errorf("sha384 %s, expected %s", app.Digests[SHA384], want[SHA384])
			}
			if pred.References[0].Kind != KindGrubFile || pred.References[0].Component != "initrd.img-1.0" {
				t.Errorf("first reference %+v, expected the initrd file hash", pred.References[0])
			}
		})
	}
}

func TestAddDebRejectsMalformed(t *testing.T) {
	good := buildDeb(t, ".gz", map[string][]byte{"boot/initrd.img": []byte("x")})
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"not ar", []byte("PK\x03\x04"), "missing ar archive signature"},
		{"bad header", append([]byte(arMagic), bytes.Repeat([]byte("x"), 60)...), "missing terminator"},
		{"truncated", good[:len(good)-10], "data.tar.gz"},
		{"no data", buildDebWithout(t), "no data.tar member"},
	}
	for _, c := range cases {
		err := NewPredictor().AddDeb(bytes.NewReader(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, expected one containing %q", c.name, err, c.want)
		}
	}
}

// buildDebWithout returns a package holding only its control member.
func buildDebWithout(t *testing.T) []byte {
	t.Helper()
	deb := buildDeb(t, "", map[string][]byte{})
	i := bytes.Index(deb, []byte("data.tar"))
	return deb[:i]
}
