package spamd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// maxReply bounds how many bytes of one reply are read, so that a server speaking garbage
// cannot make the client buffer without end. Real SYMBOLS and REPORT replies are a few KB.
const maxReply = 1 << 20

// reply is one parsed spamd answer to CHECK, SYMBOLS or REPORT.
type reply struct {
	Version   string  // "1.1", "1.5", ...
	Spam      bool    // Spam: True or Yes
	Score     float64 // native score
	Threshold float64 // required_score
	Body      string  // SYMBOLS list or REPORT text; "" for CHECK
}

// statusError is a well-formed spamd reply with a non-zero sysexits code, e.g.
// "SPAMD/1.0 76 Bad header line: ...". spamd sends no verdict with it.
type statusError struct {
	Code    int
	Message string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("spamd replied %d %s", e.Code, e.Message)
}

// Errors for replies that stop early or never stop.
var (
	errTruncated = errors.New("reply truncated")
	errTooLong   = fmt.Errorf("reply longer than %d bytes", maxReply)
)

// capped reads at most n bytes from r and then fails with errTooLong rather than EOF, so
// that an over-long reply is not mistaken for a complete one.
type capped struct {
	r io.Reader
	n int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errTooLong
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// readStatus reads and checks the status line "SPAMD/1.x CODE MESSAGE". It returns the
// protocol version and the message; a non-zero code is a *statusError.
func readStatus(br *bufio.Reader) (version, msg string, err error) {
	line, err := readLine(br)
	if err != nil {
		return "", "", fmt.Errorf("status line: %w", err)
	}
	proto, rest, _ := strings.Cut(line, " ")
	version, ok := strings.CutPrefix(proto, "SPAMD/")
	if !ok || !strings.HasPrefix(version, "1.") {
		return "", "", fmt.Errorf("not a spamd status line: %q", clip(line))
	}
	codeText, msg, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || code < 0 {
		return "", "", fmt.Errorf("bad status code in %q", clip(line))
	}
	if code != 0 {
		return "", "", &statusError{Code: code, Message: msg}
	}
	return version, msg, nil
}

// parseReply reads a whole reply to CHECK, SYMBOLS or REPORT: the status line, the headers
// up to the empty line, and the body (Content-length bytes, or up to EOF without one).
// Anything short of a complete answer with a Spam header is an error.
func parseReply(r io.Reader) (reply, error) {
	br := bufio.NewReader(&capped{r: r, n: maxReply})
	var rep reply
	var err error
	if rep.Version, _, err = readStatus(br); err != nil {
		return reply{}, err
	}
	length, haveSpam := -1, false
	for {
		line, err := readLine(br)
		if err != nil {
			return reply{}, fmt.Errorf("headers: %w", err)
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return reply{}, fmt.Errorf("bad header line %q", clip(line))
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > maxReply {
				return reply{}, fmt.Errorf("bad Content-length %q", clip(value))
			}
			length = n
		case "spam":
			if rep.Spam, rep.Score, rep.Threshold, err = parseSpamHeader(value); err != nil {
				return reply{}, err
			}
			haveSpam = true
		}
	}
	if !haveSpam {
		return reply{}, errors.New("reply has no Spam header")
	}
	var body []byte
	if length >= 0 {
		body = make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return reply{}, fmt.Errorf("body: %w", truncated(err))
		}
	} else if body, err = io.ReadAll(br); err != nil {
		return reply{}, fmt.Errorf("body: %w", err)
	}
	rep.Body = string(body)
	return rep, nil
}

// parseSpamHeader parses the value of "Spam: True ; 15.0 / 5.0". REPORT_IFSPAM says Yes/No.
func parseSpamHeader(v string) (spam bool, score, threshold float64, err error) {
	flag, nums, ok := strings.Cut(v, ";")
	if !ok {
		return false, 0, 0, fmt.Errorf("bad Spam header %q", clip(v))
	}
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "true", "yes":
		spam = true
	case "false", "no":
	default:
		return false, 0, 0, fmt.Errorf("bad Spam flag in %q", clip(v))
	}
	s, t, ok := strings.Cut(nums, "/")
	if !ok {
		return false, 0, 0, fmt.Errorf("bad Spam header %q", clip(v))
	}
	if score, err = parseNumber(s); err == nil {
		threshold, err = parseNumber(t)
	}
	if err != nil {
		return false, 0, 0, fmt.Errorf("bad Spam header %q: %w", clip(v), err)
	}
	return spam, score, threshold, nil
}

func parseNumber(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("bad number %q", clip(s))
	}
	return f, nil
}

// parseSymbols splits a SYMBOLS body, "GTUBE,MISSING_DATE\r\n", into sorted rule names.
// spamd may end the list with any number of CRLFs; empty entries are dropped.
func parseSymbols(body string) []string {
	var out []string
	for _, s := range strings.Split(body, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// reportRule matches one row of a REPORT's rule table: " 2.7 MISSING_DATE  Missing Date".
var reportRule = regexp.MustCompile(`^\s*-?[0-9]+(?:\.[0-9]+)?\s+([A-Za-z0-9_]+)(?:\s|$)`)

// parseReport extracts the sorted rule names from a REPORT body: the rows that follow the
// "---- ----" rule under the "pts rule name description" table head.
func parseReport(body string) []string {
	var out []string
	inTable := false
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		if !inTable {
			inTable = strings.HasPrefix(line, "----")
			continue
		}
		if m := reportRule.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// readLine reads one CRLF- (or LF-) terminated line. EOF before the line end means the
// server stopped mid-reply.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", truncated(err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errTruncated
	}
	return err
}

// clip shortens text quoted in error messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
