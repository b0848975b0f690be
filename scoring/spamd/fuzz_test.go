package spamd

import (
	"bytes"
	"errors"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fuzzCounter counts the bytes read through it.
type fuzzCounter struct {
	r io.Reader
	n int64
}

func (c *fuzzCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fuzzRepeat yields its data over and over: a server that never stops talking.
type fuzzRepeat struct {
	data []byte
	off  int
}

func (r *fuzzRepeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.data[r.off:])
		n += k
		r.off = (r.off + k) % len(r.data)
	}
	return n, nil
}

// fuzzStatusCode is the status code of data's first line as spamd writes it, and whether
// that line is a well-formed "SPAMD/1.x CODE ..." status line at all.
func fuzzStatusCode(data []byte) (int, bool) {
	line, _, complete := bytes.Cut(data, []byte("\n"))
	if !complete {
		return 0, false // parseReply stops at a truncated status line
	}
	fields := strings.SplitN(strings.TrimSuffix(string(line), "\r"), " ", 3)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "SPAMD/1.") {
		return 0, false
	}
	code, err := strconv.Atoi(fields[1])
	return code, err == nil && code >= 0
}

var fuzzRuleName = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// FuzzParseReply: parseReply, the parser of every CHECK, SYMBOLS and REPORT answer, never
// panics; it reads at most maxReply bytes even from a server that never stops (repeat);
// a verdict needs status code 0 and a Spam header with finite numbers, and a non-zero
// status code is always a *statusError, never a verdict. The body parsers that run on
// a verdict's body never panic and return sorted, distinct, non-empty rule names.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"SPAMD/1.1 0 EX_OK\r\nContent-length: 18\r\nSpam: True ; 1003.3 / 5.0\r\n\r\nGTUBE,MISSING_DATE",
		"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.5 / 5.0\r\n\r\n",
		"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: No ; -1.2 / 5.0\r\n\r\n",
		"SPAMD/1.5 0 EX_OK\nSpam: Yes ; 6 / 5\n\nSpam detection software\n\nContent analysis details:   (6.0 points, 5.0 required)\n\n pts rule name              description\n---- ---------------------- ------------------------------\n 2.7 MISSING_DATE           Missing Date: header\n-0.1 DKIM_VALID  Message has a valid signature\n",
		"SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 10 bytes, got 5 bytes)\r\n",
		"SPAMD/1.1 0 PONG\r\n",
		"SPAMD/1.1 +0 EX_OK\r\nSpam: True ; 1 / 2\r\n\r\n",
		"SPAMD/1.1 74 EX_IOERR\r\nSpam: True ; 1 / 2\r\n\r\n",
		"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: True ; 1 / 2\r\n\r\nab",
		"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 2\r\n\r\n",
		"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1e999 / 2\r\n\r\n",
		"SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999999999999999\r\n\r\n",
		"SPAMD/2.0 0 EX_OK\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
		"",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, repeat bool) {
		var src io.Reader = bytes.NewReader(data)
		if repeat && len(data) > 0 {
			big := bytes.Repeat(data, 8192/len(data)+1) // fewer, larger copies: faster
			src = &fuzzRepeat{data: big}
		}
		cnt := &fuzzCounter{r: src}
		rep, err := parseReply(cnt)
		if cnt.n > maxReply {
			t.Fatalf("read %d bytes, more than maxReply %d", cnt.n, maxReply)
		}
		code, wellFormed := fuzzStatusCode(data)
		var se *statusError
		if wellFormed && code != 0 && !errors.As(err, &se) {
			t.Fatalf("status code %d: got %+v, %v; want a *statusError", code, rep, err)
		}
		if errors.As(err, &se) && (se.Code == 0 || !wellFormed || se.Code != code) {
			t.Fatalf("statusError %+v from status line of %q", se, data)
		}
		if err != nil {
			if rep != (reply{}) {
				t.Fatalf("error %v with a reply %+v", err, rep)
			}
			return
		}
		if !wellFormed || code != 0 {
			t.Fatalf("a verdict %+v from status code %d (well-formed %v) in %q", rep, code, wellFormed, data)
		}
		if !strings.HasPrefix(rep.Version, "1.") {
			t.Fatalf("version %q", rep.Version)
		}
		for _, x := range []float64{rep.Score, rep.Threshold} {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("non-finite number in %+v", rep)
			}
		}
		if !bytes.Contains(bytes.ToLower(data), []byte("spam")) {
			t.Fatalf("a verdict without a Spam header: %q", data)
		}
		if len(rep.Body) > maxReply {
			t.Fatalf("body of %d bytes", len(rep.Body))
		}
		for _, names := range [][]string{parseSymbols(rep.Body), parseReport(rep.Body)} {
			if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
				t.Fatalf("names not sorted and distinct: %q", names)
			}
			for _, n := range names {
				if n == "" || n != strings.TrimSpace(n) {
					t.Fatalf("bad name %q in %q", n, names)
				}
			}
		}
		for _, n := range parseReport(rep.Body) {
			if !fuzzRuleName.MatchString(n) {
				t.Fatalf("REPORT rule name %q", n)
			}
		}
	})
}
