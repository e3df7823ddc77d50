package qr

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	zxingqr "github.com/makiuchi-d/gozxing/qrcode"
)

const uri = "otpauth://totp/Vouch:host-1.example?algorithm=SHA1&digits=6&issuer=Vouch&period=30&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

// decode reads a QR code from img with gozxing, a decoder independent of
// the encoder under test.
func decode(t *testing.T, img image.Image, hints map[gozxing.DecodeHintType]any) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := zxingqr.NewQRCodeReader().Decode(bmp, hints)
	if err != nil {
		t.Fatalf("decode qr code: %v", err)
	}
	return res.GetText()
}

func TestPNGDecodes(t *testing.T) {
	b, err := PNG(uri, 256)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, img, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true}); got != uri {
		t.Errorf("decoded %q, want %q", got, uri)
	}
}

// TestTerminalDecodes turns the half-block drawing back into pixels, as a
// phone camera sees it on a terminal, and decodes that.
func TestTerminalDecodes(t *testing.T) {
	for _, lightBackground := range []bool{false, true} {
		text, err := Terminal(uri, lightBackground)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		width := len([]rune(lines[0]))
		if width > 80 {
			t.Errorf("terminal qr code is %d columns wide, more than a console's 80", width)
		}

		// The block characters are drawn in the foreground colour: light
		// on a dark terminal, dark on a light one.
		const scale = 4 // pixels per module
		img := image.NewGray(image.Rect(0, 0, width*scale, 2*len(lines)*scale))
		for row, line := range lines {
			for col, r := range []rune(line) {
				var top, bottom bool
				switch r {
				case '█':
					top, bottom = true, true
				case '▀':
					top = true
				case '▄':
					bottom = true
				case ' ':
				default:
					t.Fatalf("unexpected rune %q in terminal output", r)
				}
				for dy := range scale {
					for dx := range scale {
						img.SetGray(col*scale+dx, 2*row*scale+dy, lum(top != lightBackground))
						img.SetGray(col*scale+dx, (2*row+1)*scale+dy, lum(bottom != lightBackground))
					}
				}
			}
		}
		// No PURE_BARCODE hint: the drawing may end with a half row of
		// terminal background below the quiet zone, as a camera sees it.
		if got := decode(t, img, nil); got != uri {
			t.Errorf("light background %v: decoded %q, want %q", lightBackground, got, uri)
		}
	}
}

func lum(light bool) color.Gray {
	if light {
		return color.Gray{Y: 0xff}
	}
	return color.Gray{Y: 0}
}

func TestPNGSizeRejected(t *testing.T) {
	if _, err := PNG(uri, 10); err == nil {
		t.Errorf("PNG accepted size 10")
	}
}
