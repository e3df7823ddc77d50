// Package qr renders text, such as an otpauth:// URI, as a QR code for a
// terminal or as a PNG image.
package qr

import (
	"fmt"

	qrcode "github.com/skip2/go-qrcode"
)

// level is the error correction level: Medium recovers from about 15% of
// damaged modules and keeps a TOTP URI small enough for an 80-column console.
const level = qrcode.Medium

// Terminal returns the QR code of text drawn with Unicode half blocks, two
// module rows per line, including the quiet zone. By default it draws the
// light modules with the terminal's foreground colour, so the code scans on
// a terminal with light text on a dark background, such as the Linux
// console. With lightBackground it draws the dark modules instead, for dark
// text on a light background.
func Terminal(text string, lightBackground bool) (string, error) {
	q, err := qrcode.New(text, level)
	if err != nil {
		return "", fmt.Errorf("encode qr code of %d bytes: %w", len(text), err)
	}
	return q.ToSmallString(lightBackground), nil
}

// PNG returns the QR code of text as a PNG image of size by size pixels,
// black on white, including the quiet zone.
func PNG(text string, size int) ([]byte, error) {
	if size < 64 || size > 4096 {
		return nil, fmt.Errorf("qr png size %d out of range: use 64 to 4096 pixels", size)
	}
	q, err := qrcode.New(text, level)
	if err != nil {
		return nil, fmt.Errorf("encode qr code of %d bytes: %w", len(text), err)
	}
	png, err := q.PNG(size)
	if err != nil {
		return nil, fmt.Errorf("render qr code as png: %w", err)
	}
	return png, nil
}
