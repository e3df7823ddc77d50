package main

import "strings"

// bigDigitFont draws the digits 0-9 in 5 by 7 cells, so that a code is
// readable on a console across a room. '#' is a filled cell.
var bigDigitFont = map[rune][7]string{
	'0': {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "},
	'1': {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},
	'2': {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"},
	'3': {" ### ", "#   #", "    #", "  ## ", "    #", "#   #", " ### "},
	'4': {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "},
	'5': {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "},
	'6': {" ### ", "#    ", "#    ", "#### ", "#   #", "#   #", " ### "},
	'7': {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "},
	'8': {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "},
	'9': {" ### ", "#   #", "#   #", " ####", "    #", "    #", " ### "},
	' ': {"     ", "     ", "     ", "     ", "     ", "     ", "     "},
}

// bigDigits renders text (digits and spaces) in bigDigitFont, each cell two
// columns wide so the glyphs look square on a terminal. Other runes are
// drawn as spaces.
func bigDigits(text string) string {
	var b strings.Builder
	for row := range 7 {
		for i, r := range text {
			glyph, ok := bigDigitFont[r]
			if !ok {
				glyph = bigDigitFont[' ']
			}
			if i > 0 {
				b.WriteString("  ")
			}
			for _, c := range glyph[row] {
				if c == '#' {
					b.WriteString("██")
				} else {
					b.WriteString("  ")
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// groupDigits splits a code into groups of three, as authenticator apps
// show it: "123456" becomes "123 456".
func groupDigits(code string) string {
	if len(code) <= 4 {
		return code
	}
	var parts []string
	for len(code) > 3 {
		parts = append(parts, code[:3])
		code = code[3:]
	}
	return strings.Join(append(parts, code), " ")
}
