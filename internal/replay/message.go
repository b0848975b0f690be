package replay

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"strings"

	"github.com/fpsafe/fpsafe/internal/mail"
)

// readMessage parses one message into a spool (bodies above the spool's threshold go to a
// temp file; the caller removes it with m.Body.Remove). It never refuses a message: problem
// says what is wrong with a malformed one, which is still decided. err is set only when the
// input could not be read (or spooled); m then holds what was read, to be removed.
func readMessage(r io.Reader, sp *mail.Spool) (m *mail.Message, problem string, err error) {
	hc := &headerCheck{}
	m, err = mail.ReadMessage(io.TeeReader(r, hc), sp)
	hc.finish()
	if m == nil {
		m = &mail.Message{}
	}
	if m.Body == nil {
		m.Body = sp.Body()
	}
	if err != nil {
		return m, "", fmt.Errorf("read error: %w", err)
	}
	return m, hc.problem, nil
}

// headerCheck watches the bytes mail.ReadMessage parses and notes, as ReadMessage itself
// does not, when the header section is malformed: a line that is neither a field nor a
// continuation (ReadMessage ends the header there and makes the rest body), no field at all,
// or a header section above mail.MaxHeaderBytes.
type headerCheck struct {
	line    []byte // the start of the current line (bounded)
	lineLen int
	lines   int
	fields  int
	bytes   int
	done    bool
	problem string
}

const headerCheckLine = 4096 // enough of a line to find the colon after any sane field name

func (h *headerCheck) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !h.done {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		if room := headerCheckLine - len(h.line); room > 0 {
			h.line = append(h.line, chunk[:min(room, len(chunk))]...)
		}
		h.lineLen += len(chunk)
		if i >= 0 {
			h.endLine()
		}
	}
	return n, nil
}

func (h *headerCheck) endLine() {
	l := bytes.TrimRight(h.line, "\r\n")
	h.lines++
	h.bytes += h.lineLen
	h.line, h.lineLen = h.line[:0], 0
	switch {
	case h.bytes > mail.MaxHeaderBytes:
		h.fail(fmt.Sprintf("header section above %d bytes: the rest is read as body", mail.MaxHeaderBytes))
	case len(l) == 0:
		if h.fields == 0 {
			h.fail("no header fields")
		}
		h.done = true
	case (l[0] == ' ' || l[0] == '\t') && h.fields > 0:
	case isField(l):
		h.fields++
	default:
		h.fail(fmt.Sprintf("header line %d is neither a field nor a continuation: the header section ends there", h.lines))
	}
}

func (h *headerCheck) fail(why string) {
	if h.problem == "" {
		h.problem = why
	}
	h.done = true
}

// finish handles a last line without a line end, and a message that has no header at all.
func (h *headerCheck) finish() {
	if !h.done && h.lineLen > 0 {
		h.endLine()
	}
	if !h.done && h.fields == 0 {
		h.fail("empty message")
	}
}

// isField mirrors mail.ReadMessage's test for "Name: value".
func isField(l []byte) bool {
	i := bytes.IndexByte(l, ':')
	if i <= 0 {
		return false
	}
	n := bytes.TrimRight(l[:i], " \t")
	if len(n) == 0 {
		return false
	}
	for _, c := range n {
		if c <= ' ' || c >= 127 {
			return false
		}
	}
	return true
}

// Envelope builds the SMTP envelope a stored message no longer has, from its header:
// MAIL FROM is the Return-Path address ("<>" = the null sender), or else the first From
// address; the recipients are the addresses of To and Cc. There is no client IP or HELO.
func Envelope(m *mail.Message) mail.Envelope {
	var env mail.Envelope
	if rp := m.Values("Return-Path"); len(rp) > 0 {
		v := strings.TrimSpace(rp[0])
		if a, err := netmail.ParseAddress(v); err == nil {
			env.MailFrom = a.Address
		} else {
			env.MailFrom = strings.Trim(v, "<> ")
		}
	} else if as := addresses(m, "From"); len(as) > 0 {
		env.MailFrom = as[0]
	}
	env.Rcpts = append(addresses(m, "To"), addresses(m, "Cc")...)
	return env
}

// addresses parses every field of that name; an unparseable field gives nothing.
func addresses(m *mail.Message, name string) []string {
	var out []string
	for _, v := range m.Values(name) {
		list, err := netmail.ParseAddressList(v)
		if err != nil {
			continue
		}
		for _, a := range list {
			out = append(out, a.Address)
		}
	}
	return out
}

var wordDecoder = mime.WordDecoder{}

// display decodes RFC 2047 encoded words for people, keeping the raw text when it cannot,
// and bounds the length.
func display(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		s = d
	}
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 200 {
		s = string(r[:199]) + "…"
	}
	return s
}
