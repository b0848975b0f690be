package icap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fpsafe/fpsafe/scoring/enginetest"
)

// fakeReq is one request as a fake ICAP server read it.
type fakeReq struct {
	method  string
	h       header
	preview bool   // the request had a Preview header
	ieof    bool   // the preview was the whole body
	body    []byte // the body read so far (the preview, or all of it)
	bodyHdr []byte // the encapsulated HTTP headers
}

// fakeHandler answers one request on c (it may read the rest of the body with more). It
// returns false to close the connection.
type fakeHandler func(c net.Conn, br *bufio.Reader, r *fakeReq) bool

// fakeOptions is a normal OPTIONS answer with the given extra header lines.
func fakeOptions(extra string) string {
	return "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: \"FAKE-1\"\r\nAllow: 204\r\n" + extra + "Encapsulated: null-body=0\r\n\r\n"
}

// newFake starts an in-process ICAP server: OPTIONS are answered with options (a whole
// answer), RESPMOD requests are read (up to the preview's end) and given to h.
func newFake(t testing.TB, options string, h fakeHandler) *enginetest.Server {
	return newFakeCounted(t, options, h, nil)
}

// newFakeCounted is newFake with its connections counted by cc (when not nil).
func newFakeCounted(t testing.TB, options string, h fakeHandler, cc *connCounter) *enginetest.Server {
	b := func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := readFakeRequest(br)
			if err != nil {
				return
			}
			if r.method == "OPTIONS" {
				if _, err := io.WriteString(c, options); err != nil {
					return
				}
				continue
			}
			if !h(c, br, r) {
				return
			}
		}
	}
	if cc != nil {
		b = cc.wrap(b)
	}
	return enginetest.NewServer(t, b)
}

// readFakeRequest reads a request's head and its body up to the first zero chunk.
func readFakeRequest(br *bufio.Reader) (*fakeReq, error) {
	resp, err := readRequestHead(br)
	if err != nil {
		return nil, err
	}
	r := &fakeReq{method: resp.method, h: resp.h}
	_, r.preview = r.h["Preview"]
	secs, err := parseEncapsulated(r.h.get("Encapsulated"))
	if err != nil {
		return nil, err
	}
	last := secs[len(secs)-1]
	r.bodyHdr = make([]byte, last.offset)
	if _, err := io.ReadFull(br, r.bodyHdr); err != nil {
		return nil, err
	}
	if last.name == "null-body" {
		return r, nil
	}
	r.body, r.ieof, err = readFakeChunks(br)
	return r, err
}

type reqHead struct {
	method string
	h      header
}

func readRequestHead(br *bufio.Reader) (*reqHead, error) {
	line, err := readLine(br, nil)
	if err != nil {
		return nil, err
	}
	method, _, _ := strings.Cut(line, " ")
	budget := maxHeader
	h, err := readHeader(br, &budget)
	if err != nil {
		return nil, err
	}
	return &reqHead{method, h}, nil
}

// readFakeChunks reads chunks up to the zero chunk, and reports whether it said ieof.
func readFakeChunks(br *bufio.Reader) ([]byte, bool, error) {
	var body []byte
	for {
		line, err := readLine(br, nil)
		if err != nil {
			return nil, false, err
		}
		sz, ext, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
		if err != nil {
			return nil, false, err
		}
		if n == 0 {
			if _, err := readLine(br, nil); err != nil {
				return nil, false, err
			}
			return body, strings.TrimSpace(ext) == "ieof", nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, false, err
		}
		body = append(body, b...)
		if _, err := readLine(br, nil); err != nil {
			return nil, false, err
		}
	}
}

// readAll makes sure the whole body has been read: after a preview that did not end the
// body it asks for the rest with 100 Continue.
func (r *fakeReq) readAll(c net.Conn, br *bufio.Reader) error {
	if !r.preview || r.ieof {
		return nil
	}
	if _, err := io.WriteString(c, "ICAP/1.0 100 Continue\r\n\r\n"); err != nil {
		return err
	}
	rest, _, err := readFakeChunks(br)
	r.body = append(r.body, rest...)
	r.ieof = true
	return err
}

// echo answers 200 with the body as it was received (after extra ICAP header lines).
func echo(c net.Conn, r *fakeReq, extra string, body []byte) error {
	hdr := "HTTP/1.1 200 OK\r\nContent-Type: message/rfc822\r\n\r\n"
	var b bytes.Buffer
	fmt.Fprintf(&b, "ICAP/1.0 200 OK\r\nISTag: \"FAKE-1\"\r\n%sEncapsulated: res-hdr=0, res-body=%d\r\n\r\n%s", extra, len(hdr), hdr)
	for len(body) > 0 {
		n := min(len(body), 1000)
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	_, err := c.Write(b.Bytes())
	return err
}

// connCounter counts a fake server's connections and the most open at once.
type connCounter struct {
	mu              sync.Mutex
	open, max, seen int
}

func (cc *connCounter) wrap(h func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		cc.mu.Lock()
		cc.open++
		cc.seen++
		cc.max = max(cc.max, cc.open)
		cc.mu.Unlock()
		defer func() { cc.mu.Lock(); cc.open--; cc.mu.Unlock() }()
		h(c)
	}
}

func (cc *connCounter) stats() (seen, most int) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.seen, cc.max
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
