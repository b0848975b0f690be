// Package mail holds fpsafe's message model: the envelope and macros an MTA reports, the
// header fields in the order they arrived, and a body that lives in memory or in a spool
// file. It is a leaf package: every other fpsafe package builds on it and it imports none.
package mail

import (
	"bytes"
	"io"
	"net/netip"
	"strings"
)

// Envelope is what the MTA knows about a message beyond its content: the SMTP
// conversation and the macros it sent.
type Envelope struct {
	MailFrom   string     // MAIL FROM address without angle brackets; "" for the null sender
	Rcpts      []string   // RCPT TO addresses without angle brackets, in order
	ClientIP   netip.Addr // the SMTP client's address; invalid when unknown
	ClientName string     // the client's host name as the MTA resolved it
	Helo       string     // HELO/EHLO argument
	AuthUser   string     // SASL login ({auth_authen}); "" when not authenticated
}

// Field is one header field as received. Value is the raw text after the colon, leading
// white space and folding included, so that the header can be rebuilt byte for byte for
// DKIM's simple canonicalisation.
type Field struct {
	Name  string
	Value string
}

// Text returns the field's value unfolded and trimmed, for people and for matching.
func (f Field) Text() string {
	v := f.Value
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
	}
	return strings.TrimSpace(v)
}

// Message is one message as fpsafe sees it, whether it came from an MTA through the milter
// protocol or from a file given to `fpsafe check`.
type Message struct {
	QueueID string
	Env     Envelope
	Header  []Field
	Body    Body
}

// Get returns the unfolded value of the first field named name (case-insensitive), or "".
func (m *Message) Get(name string) string {
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Text()
		}
	}
	return ""
}

// Values returns the unfolded values of every field named name, in order.
func (m *Message) Values(name string) []string {
	var vs []string
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Text())
		}
	}
	return vs
}

// HeaderBytes renders the header section as it would appear on the wire: each field as
// Name:Value with CRLF line ends, then the empty line that separates it from the body.
func (m *Message) HeaderBytes() []byte {
	var b bytes.Buffer
	for _, f := range m.Header {
		b.WriteString(f.Name)
		b.WriteByte(':')
		b.WriteString(crlf(f.Value))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// Size is the size in bytes of the rendered message, header section included.
func (m *Message) Size() int64 {
	n := int64(2)
	for _, f := range m.Header {
		n += int64(len(f.Name)+1+len(f.Value)) + 2 + int64(strings.Count(f.Value, "\n")-strings.Count(f.Value, "\r\n"))
	}
	if m.Body != nil {
		n += m.Body.Size()
	}
	return n
}

// Open returns the whole message, header section and body, as one stream: what an engine
// or a DKIM verifier reads. Every call starts a new, independent reader.
func (m *Message) Open() (io.ReadCloser, error) {
	hdr := bytes.NewReader(m.HeaderBytes())
	if m.Body == nil {
		return io.NopCloser(hdr), nil
	}
	body, err := m.Body.Open()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(hdr, body), body}, nil
}

// crlf turns the bare LF that Postfix uses between folded header lines into CRLF.
func crlf(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.ReplaceAll(v, "\n", "\r\n")
}
