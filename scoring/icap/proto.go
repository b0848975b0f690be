package icap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// Bounds on what is read from a server, so that one speaking garbage or sending endless
// headers cannot exhaust memory or hold a scan past its deadline with a trickle.
const (
	maxLine       = 8 << 10  // one status, header or chunk-size line
	maxHeader     = 64 << 10 // an ICAP header block, or the encapsulated HTTP headers
	maxOptionBody = 64 << 10 // an OPTIONS opt-body, drained and ignored
	// bodySlack is how much longer than the message an answered body may be before the
	// client stops reading it: an unmodified echo is exactly as long as the message.
	bodySlack = 64 << 10
)

// errProtocol marks answers that are not ICAP/1.0: every such answer is an error.
var errProtocol = errors.New("protocol error")

// errNoAnswer means the connection ended before the first byte of an answer: on a pooled
// connection, the server probably closed it while idle, and the request may be retried.
var errNoAnswer = errors.New("connection closed before any answer")

// header is an ICAP (or encapsulated HTTP) header block. Keys are canonical
// (textproto.CanonicalMIMEHeaderKey); a folded value keeps its line structure, its lines
// trimmed and joined with "\n", because X-Violations-Found puts one item per line.
type header map[string][]string

// get returns the first value of key, unfolded to one line.
func (h header) get(key string) string {
	v := h[textproto.CanonicalMIMEHeaderKey(key)]
	if len(v) == 0 {
		return ""
	}
	return strings.ReplaceAll(v[0], "\n", " ")
}

// has reports whether a comma-separated header lists tok (case-insensitive).
func (h header) has(key, tok string) bool {
	for _, v := range h[textproto.CanonicalMIMEHeaderKey(key)] {
		for _, t := range strings.Split(strings.ReplaceAll(v, "\n", ","), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// response is an ICAP response's status and headers.
type response struct {
	code   int
	reason string
	h      header
}

// readLine reads one CRLF- (or LF-) terminated line of at most maxLine bytes, without the
// line end. *budget, when not nil, is decreased by the bytes read and must stay positive.
func readLine(br *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", errProtocol, maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	if budget != nil {
		if *budget -= len(line); *budget < 0 {
			return "", fmt.Errorf("%w: header block longer than %d bytes", errProtocol, maxHeader)
		}
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	return string(line), nil
}

// readResponse reads a status line and header block. A connection that ends before the
// first byte yields errNoAnswer.
func readResponse(br *bufio.Reader) (*response, error) {
	if _, err := br.Peek(1); err != nil {
		if err == io.EOF || isReset(err) {
			return nil, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		return nil, err
	}
	budget := maxHeader
	line, err := readLine(br, &budget)
	if err != nil {
		return nil, fmt.Errorf("read status line: %w", err)
	}
	r, err := parseStatus(line)
	if err != nil {
		return nil, err
	}
	if r.h, err = readHeader(br, &budget); err != nil {
		return nil, fmt.Errorf("read %d response headers: %w", r.code, err)
	}
	return r, nil
}

// parseStatus parses "ICAP/1.0 200 OK". Any other version is refused: ICAP/1.0 is the only
// one there is, and a server claiming another is not one whose answers we can read.
func parseStatus(line string) (*response, error) {
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "ICAP/") {
		return nil, fmt.Errorf("%w: status line %q is not ICAP", errProtocol, clip(line))
	}
	if proto != "ICAP/1.0" {
		return nil, fmt.Errorf("%w: unsupported version in status line %q (want ICAP/1.0)", errProtocol, clip(line))
	}
	code, reason, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 || n < 100 {
		return nil, fmt.Errorf("%w: bad status code in %q", errProtocol, clip(line))
	}
	return &response{code: n, reason: strings.TrimSpace(reason)}, nil
}

// readHeader reads header lines up to the empty line that ends the block.
func readHeader(br *bufio.Reader, budget *int) (header, error) {
	h := header{}
	var last string // key of the previous field, for folded lines
	for {
		line, err := readLine(br, budget)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if line == "" {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("%w: continuation line before any header: %q", errProtocol, clip(line))
			}
			vs := h[last]
			vs[len(vs)-1] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%w: malformed header line %q", errProtocol, clip(line))
		}
		last = textproto.CanonicalMIMEHeaderKey(k)
		h[last] = append(h[last], strings.TrimSpace(v))
	}
}

// section is one entry of an Encapsulated header: "res-hdr=0".
type section struct {
	name   string
	offset int
}

// parseEncapsulated reads "res-hdr=0, res-body=161". Offsets must grow, and only the last
// entry may be a body (req-body, res-body, opt-body or null-body).
func parseEncapsulated(v string) ([]section, error) {
	if v == "" {
		return nil, fmt.Errorf("%w: no Encapsulated header", errProtocol)
	}
	var out []section
	for _, part := range strings.Split(v, ",") {
		name, off, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(strings.TrimSpace(off))
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || err != nil || n < 0 || n > maxHeader {
			return nil, fmt.Errorf("%w: bad Encapsulated header %q", errProtocol, clip(v))
		}
		if len(out) > 0 && n < out[len(out)-1].offset {
			return nil, fmt.Errorf("%w: Encapsulated offsets out of order in %q", errProtocol, clip(v))
		}
		switch name {
		case "req-hdr", "res-hdr":
		case "req-body", "res-body", "opt-body", "null-body":
		default:
			return nil, fmt.Errorf("%w: unknown Encapsulated entry %q", errProtocol, name)
		}
		out = append(out, section{name, n})
	}
	for i, s := range out {
		isBody := strings.HasSuffix(s.name, "-body")
		if isBody != (i == len(out)-1) {
			return nil, fmt.Errorf("%w: Encapsulated header %q: the body entry must be the one last", errProtocol, clip(v))
		}
	}
	return out, nil
}

// encapsulated is what follows an ICAP header block, up to the body.
type encapsulated struct {
	httpStatus int    // status of the encapsulated HTTP response; 0 when there is none
	body       string // the body entry: "res-body", "null-body", ...
}

// readEncapsulated reads the encapsulated HTTP header sections (bounded by the offsets)
// and returns the HTTP response status, if any, and which body follows.
func readEncapsulated(br *bufio.Reader, secs []section) (encapsulated, error) {
	last := secs[len(secs)-1]
	var e encapsulated
	e.body = last.name
	if last.offset == 0 {
		return e, nil
	}
	buf := make([]byte, last.offset)
	if _, err := io.ReadFull(br, buf); err != nil {
		return e, fmt.Errorf("read encapsulated headers: %w", err)
	}
	for i, s := range secs[:len(secs)-1] {
		if s.name != "res-hdr" {
			continue
		}
		blk := buf[s.offset:secs[i+1].offset]
		line, _, _ := bytes.Cut(blk, []byte("\n"))
		f := strings.Fields(strings.TrimSpace(string(line)))
		if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
			return e, fmt.Errorf("%w: encapsulated response line %q is not HTTP", errProtocol, clip(string(line)))
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 100 || n > 999 {
			return e, fmt.Errorf("%w: bad encapsulated HTTP status in %q", errProtocol, clip(string(line)))
		}
		e.httpStatus = n
	}
	return e, nil
}

// readChunked copies a chunked body to w, up to limit bytes of data, and consumes the
// final chunk and its trailer, so that the connection can carry the next request. It
// returns errTooLong, having stopped reading, when the body passes limit.
func readChunked(br *bufio.Reader, w io.Writer, limit int64) (int64, error) {
	var n int64
	for {
		line, err := readLine(br, nil)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("read chunk size: %w", err)
		}
		sz, _, _ := strings.Cut(line, ";") // chunk extensions (ieof) are ignored
		size, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
		if err != nil || size < 0 {
			return n, fmt.Errorf("%w: bad chunk size line %q", errProtocol, clip(line))
		}
		if size == 0 {
			budget := maxHeader
			for {
				t, err := readLine(br, &budget)
				if err != nil {
					return n, fmt.Errorf("read chunked trailer: %w", err)
				}
				if t == "" {
					return n, nil
				}
			}
		}
		if n+size > limit {
			return n, errTooLong
		}
		if _, err := io.CopyN(w, br, size); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("read chunk: %w", err)
		}
		n += size
		crlf, err := readLine(br, nil)
		if err != nil || crlf != "" {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("%w: chunk not followed by CRLF", errProtocol)
			}
			return n, err
		}
	}
}

var errTooLong = errors.New("body longer than the limit")

// clip shortens peer-supplied text for error messages.
func clip(s string) string {
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
