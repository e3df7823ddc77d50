package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/totp"
)

func TestBigDigitsReadsBack(t *testing.T) {
	// Each glyph is distinct, so the rendering of every digit can be
	// matched back to the digit.
	seen := map[string]rune{}
	for r, g := range bigDigitFont {
		key := strings.Join(g[:], "|")
		if other, dup := seen[key]; dup {
			t.Errorf("glyphs %q and %q are identical", r, other)
		}
		seen[key] = r
		for row, line := range g {
			if len(line) != 5 {
				t.Errorf("glyph %q row %d is %d cells wide, want 5", r, row, len(line))
			}
		}
	}
	out := bigDigits("012 345")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("bigDigits has %d lines, want 7", len(lines))
	}
	// 7 glyphs of 10 columns with 2 columns between them.
	if w := len([]rune(lines[0])); w != 7*10+6*2 {
		t.Errorf("line width %d, want %d", w, 7*10+6*2)
	}
}

func TestGroupDigits(t *testing.T) {
	for in, want := range map[string]string{"123456": "123 456", "12345678": "123 456 78", "1234": "1234"} {
		if got := groupDigits(in); got != want {
			t.Errorf("groupDigits(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrintCodeFixedClock(t *testing.T) {
	key := totp.NewKey(totp.NewSecret([]byte("12345678901234567890")), "", "rfc")
	var b strings.Builder
	// RFC 4226 test vector: counter 1 gives 287082; unix time 59 is in step 1.
	if err := printCode(&b, key, time.Unix(59, 0)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"287 082", "from 1970-01-01 00:00:30 to 00:01:00 UTC", "1 s left"} {
		if !strings.Contains(out, want) {
			t.Errorf("printCode output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, bigDigits("287 082")[:20]) {
		t.Errorf("printCode output lacks the large digits")
	}
}

func TestWatchCodesStopsOnCancel(t *testing.T) {
	key := totp.NewKey(totp.NewSecret([]byte("12345678901234567890")), "", "rfc")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var b strings.Builder
	clock := func() time.Time { return time.Unix(59, 0) }
	if err := watchCodes(ctx, &b, key, clock); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "\x1b[H\x1b[2J") {
		t.Errorf("watch output does not start by clearing the screen: %q", out[:min(len(out), 20)])
	}
	if n := strings.Count(out, "287 082"); n != 1 {
		t.Errorf("watch drew the code %d times before stopping, want 1", n)
	}
}
