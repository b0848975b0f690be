package mail

import "strings"

// Fold prepares a header value that fpsafe writes: control characters (CR, LF, NUL, ...)
// become spaces, so that text quoted from an engine can never inject a header, and lines
// are folded before 78 characters at spaces, as RFC 5322 recommends. nameLen is the
// length of the field name, which shares the first line.
func Fold(nameLen int, value string) string {
	value = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, value)
	const limit = 78
	var b strings.Builder
	line := nameLen + 2
	for i, w := range strings.Split(value, " ") {
		if i > 0 {
			if line+1+len(w) > limit && line > 1 {
				b.WriteString("\r\n\t")
				line = 1
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}
