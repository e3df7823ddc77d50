package eventlog

import (
	"fmt"
	"strings"
	"testing"
)

const sha1Zero = "0000000000000000000000000000000000000000"

func TestParseExpectedPCRs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		bank Algorithm
		pcr  int
		want string
	}{
		{"corpus JSON", `{"provenance": "x", "banks": {"sha1": {"0": "` + sha1Zero + `"}}}`, SHA1, 0, sha1Zero},
		{"bare JSON", `{"sha256": {"7": "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969"}}`, SHA256, 7, "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969"},
		{"tpm2_pcrread 5.x", "  sha1:\n    0 : 0x" + strings.ToUpper("ab"+sha1Zero[2:]) + "\n    1 : 0x" + sha1Zero + "\n", SHA1, 0, "ab" + sha1Zero[2:]},
		{"tpm2_pcrread 4.x", "sha1 :\n  23 : " + sha1Zero + "\n", SHA1, 23, sha1Zero},
		{"YAML with comment", "---\n# read on boot\nsha1:\n  5: \"0x" + sha1Zero + "\"\n", SHA1, 5, sha1Zero},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ParseExpectedPCRs([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := v[tt.bank][tt.pcr]; len(got) == 0 || strings.ToLower(tt.want) != hexString(got) {
				t.Errorf("%s PCR %d = %x, want %s", tt.bank, tt.pcr, got, tt.want)
			}
		})
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestParseExpectedPCRsErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "  \n", "PCR values file is empty"},
		{"bad JSON", `{"banks": `, "invalid PCR values JSON"},
		{"unknown bank", `{"banks": {"md5": {"0": "00"}}}`, `unknown hash algorithm "md5"`},
		{"wrong size", `{"banks": {"sha1": {"0": "00"}}}`, "bank sha1 PCR 0: value is 1 bytes, a sha1 digest is 20"},
		{"bad hex", `{"banks": {"sha1": {"0": "zz"}}}`, "value is not hex"},
		{"index out of range", `{"banks": {"sha1": {"24": "` + sha1Zero + `"}}}`, `invalid PCR index "24"`},
		{"PCR before bank", "0 : 0x" + sha1Zero, "line 1: PCR \"0\" comes before any bank"},
		{"not YAML", "hello world", "line 1: expected"},
		{"duplicate", "sha1:\n 0: " + sha1Zero + "\n 0: " + sha1Zero, "line 3: bank sha1 PCR 0 is given twice"},
		{"no bank", `{"provenance": "x"}`, "has no bank"},
		{"repeated banks", `{"banks": {"sha1": {"0": "` + sha1Zero + `"}}, "banks": {}}`, `duplicate member "banks"`},
		{"repeated PCR", `{"sha1": {"0": "` + sha1Zero + `", "0": "` + sha1Zero + `"}}`, `duplicate member "0"`},
		{"bank in another case", `{"sha256": {}, "SHA256": {}}`, "in another case"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseExpectedPCRs([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestParseExpectedPCRsErrorsCutInput: an error quotes at most a short
// prefix of a bad line, not the whole of a huge one.
func TestParseExpectedPCRsErrorsCutInput(t *testing.T) {
	for _, in := range []string{strings.Repeat("x", 200000), "sha1:\n" + strings.Repeat("9", 200000) + ": 00", strings.Repeat("m", 200000) + ":"} {
		_, err := ParseExpectedPCRs([]byte(in))
		if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "(200000 bytes)") {
			t.Errorf("error of %d bytes: %.300v", len(fmt.Sprint(err)), err)
		}
	}
}

func TestParseAlgorithm(t *testing.T) {
	for name, want := range map[string]Algorithm{"sha1": SHA1, "SHA-256": SHA256, "sha384": SHA384, "sha512": SHA512, "sm3_256": SM3_256, "0x000b": SHA256} {
		got, err := ParseAlgorithm(name)
		if err != nil || got != want {
			t.Errorf("ParseAlgorithm(%q) = %v, %v, want %v", name, got, err, want)
		}
	}
	if _, err := ParseAlgorithm("md5"); err == nil {
		t.Error("ParseAlgorithm accepted md5")
	}
	if h, ok := SM3_256.Hash(); ok || h != 0 {
		t.Error("SM3_256.Hash reported a Go hash")
	}
	if s := Algorithm(0x10).String(); s != "alg_0x0010" {
		t.Errorf("unknown algorithm prints as %q", s)
	}
}
