package mail

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// MaxHeaderBytes bounds the header section ReadMessage keeps in memory. Longer header
// sections are not an error: the rest goes to the body, as an MTA would treat it.
const MaxHeaderBytes = 8 << 20

// ReadMessage parses an RFC 5322 message from r: header fields into Header (raw values,
// folding kept), the rest into a body spooled by s. Like Postfix's cleanup, a line that is
// neither a field nor a continuation ends the header section and starts the body, so a
// malformed message is never refused. Both CRLF and bare-LF line ends are accepted.
func ReadMessage(r io.Reader, s *Spool) (*Message, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	m := &Message{}
	var total int
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull { // a line longer than the buffer: collect it whole
			line = append([]byte(nil), line...) // copy first: the next read reuses the buffer
			rest, rerr := br.ReadBytes('\n')
			line = append(line, rest...)
			err = rerr
		}
		if len(line) == 0 && err != nil {
			break
		}
		total += len(line)
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(trimmed) == 0:
			// the empty line: the header section ends here
			return m, finishBody(m, br, s, nil)
		case (trimmed[0] == ' ' || trimmed[0] == '\t') && len(m.Header) > 0 && total <= MaxHeaderBytes:
			last := &m.Header[len(m.Header)-1]
			last.Value += "\r\n" + string(trimmed)
		default:
			name, value, ok := splitField(trimmed)
			if !ok || total > MaxHeaderBytes {
				return m, finishBody(m, br, s, line)
			}
			m.Header = append(m.Header, Field{Name: name, Value: value})
		}
		if err != nil {
			break
		}
	}
	m.Body = s.Body()
	return m, nil
}

// finishBody copies what is left of br (after first, if any) into the spool.
func finishBody(m *Message, br *bufio.Reader, s *Spool, first []byte) error {
	if first != nil {
		if _, err := s.Write(first); err != nil {
			return err
		}
	}
	if _, err := io.Copy(s, br); err != nil {
		return fmt.Errorf("read message body: %w", err)
	}
	m.Body = s.Body()
	return nil
}

// splitField splits "Name: value" at the first colon. The name must be printable ASCII
// without spaces (RFC 5322 ftext); trailing white space before the colon is tolerated.
func splitField(line []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", "", false
	}
	n := bytes.TrimRight(line[:i], " \t")
	if len(n) == 0 {
		return "", "", false
	}
	for _, c := range n {
		if c <= ' ' || c >= 127 {
			return "", "", false
		}
	}
	return string(n), string(line[i+1:]), true
}
