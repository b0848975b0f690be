package icap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/enginetest"
)

const faultDeadline = 2 * time.Second

// scanWithin scans with a faultDeadline context and fails the test when the scan outlives
// it by more than a little.
func scanWithin(t *testing.T, c *Client, raw []byte) (scoring.Verdict, error) {
	t.Helper()
	return scanFor(t, c, raw, faultDeadline)
}

// okDeadline bounds scans that should succeed: generous, for a loaded machine.
const okDeadline = 10 * time.Second

func scanFor(t *testing.T, c *Client, raw []byte, d time.Duration) (scoring.Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	v, err := c.Scan(ctx, msg(raw))
	if took := time.Since(start); took > d+2*time.Second { // slack for a loaded machine, as in the clamd tests
		t.Errorf("scan took %s, deadline %s", took, d)
	}
	return v, err
}

// hold keeps a fault server's connection open until the server is closed.
func hold(c net.Conn) {
	go io.Copy(io.Discard, c)
	buf := make([]byte, 1)
	for {
		if _, err := c.Read(buf); err != nil { // returns when the server closes c
			return
		}
	}
}

// Every broken answer is an error (or a timeout) within the deadline, never a verdict.
func TestFaults(t *testing.T) {
	big := testmsg.Big(200 << 10) // larger than any preview: the body goes after 100 Continue
	respmodFault := func(answer string, then func(net.Conn)) fakeHandler {
		return func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			if err := r.readAll(c, br); err != nil {
				return false
			}
			io.WriteString(c, answer)
			if then != nil {
				then(c)
			}
			return false
		}
	}
	okOptions := fakeOptions("Preview: 1024\r\n")
	cases := []struct {
		name    string
		server  func(t *testing.T) string // returns the address
		timeout bool                      // a timeout, rather than an error, is expected
		want    string                    // in the error
	}{
		{name: "refused", server: func(t *testing.T) string { return enginetest.RefusedAddr(t) }, want: "connection refused"},
		{name: "silent", server: func(t *testing.T) string { return enginetest.NewServer(t, enginetest.Silent).Addr }, timeout: true},
		{name: "garbage", server: func(t *testing.T) string { return enginetest.NewServer(t, enginetest.Garbage).Addr }, want: "not ICAP"},
		{name: "options ICAP/2.0", server: func(t *testing.T) string {
			return newFake(t, strings.Replace(okOptions, "ICAP/1.0", "ICAP/2.0", 1), nil).Addr
		}, want: "unsupported version"},
		{name: "options 404", server: func(t *testing.T) string {
			return newFake(t, "ICAP/1.0 404 ICAP Service not found\r\nISTag: \"x\"\r\nEncapsulated: null-body=0\r\n\r\n", nil).Addr
		}, want: "ICAP 404"},
		{name: "options cut short", server: func(t *testing.T) string {
			return enginetest.NewServer(t, enginetest.CloseMidReply("ICAP/1.0 200 OK\r\nMethods: RESP")).Addr
		}, want: "unexpected EOF"},
		{name: "no RESPMOD", server: func(t *testing.T) string {
			return newFake(t, strings.Replace(okOptions, "RESPMOD", "REQMOD", 1), nil).Addr
		}, want: "not RESPMOD"},
		{name: "ICAP/2.0", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/2.0 204 No Content\r\nISTag: \"x\"\r\n\r\n", nil)).Addr
		}, want: "unsupported version"},
		{name: "garbage status line", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("\x00\xffgarbage\r\nnot a reply\r\n\r\n", nil)).Addr
		}, want: "not ICAP"},
		{name: "hang after headers", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/1.0 200 OK\r\nISTag: \"x\"\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", hold)).Addr
		}, timeout: true},
		{name: "closed mid-chunk", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/1.0 200 OK\r\nISTag: \"x\"\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n1000\r\nFrom: someone", nil)).Addr
		}, want: "unexpected EOF"},
		{name: "closed before answering", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("", nil)).Addr
		}, want: "closed before any answer"},
		{name: "500", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/1.0 500 Server Error\r\nISTag: \"x\"\r\nEncapsulated: null-body=0\r\n\r\n", nil)).Addr
		}, want: "ICAP 500"},
		{name: "403 without a threat", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/1.0 403 Forbidden\r\nISTag: \"x\"\r\nEncapsulated: null-body=0\r\n\r\n", nil)).Addr
		}, want: "access denied"},
		{name: "endless headers", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/1.0 200 OK\r\n", func(c net.Conn) {
				line := "X-Filler: " + strings.Repeat("a", 100) + "\r\n"
				for {
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			})).Addr
		}, want: "header block longer"},
		{name: "endless body", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/1.0 200 OK\r\nISTag: \"x\"\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", func(c net.Conn) {
				chunk := "8000\r\n" + strings.Repeat("b", 0x8000) + "\r\n"
				for {
					if _, err := io.WriteString(c, chunk); err != nil {
						return
					}
				}
			})).Addr
		}, want: "longer than the message"},
		{name: "encapsulated HTTP 500", server: func(t *testing.T) string {
			return newFake(t, okOptions, respmodFault("ICAP/1.0 200 OK\r\nISTag: \"x\"\r\nEncapsulated: res-hdr=0, null-body=31\r\n\r\nHTTP/1.1 500 Internal Error\r\n\r\n", nil)).Addr
		}, want: "HTTP status 500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, scoring.EngineConfig{Address: tc.server(t), Service: "/avscan"})
			for _, raw := range [][]byte{testmsg.Ham(), big} {
				v, err := scanWithin(t, c, raw)
				if err == nil {
					t.Fatalf("got %+v, want an error", v)
				}
				if tc.timeout != errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v: timeout = %v, want %v", err, !tc.timeout, tc.timeout)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "icap inet:127.0.0.1:") {
					t.Errorf("error %q, want it to name the address and say %q", err, tc.want)
				}
			}
		})
	}
}

// Through the aggregator, a fault is an error or timeout verdict, never clean.
func TestFaultVerdicts(t *testing.T) {
	for name, addr := range map[string]string{
		"refused": enginetest.RefusedAddr(t),
		"silent":  enginetest.NewServer(t, enginetest.Silent).Addr,
		"garbage": enginetest.NewServer(t, enginetest.Garbage).Addr,
	} {
		cfg := scoring.EngineConfig{Name: "icap", Type: "icap", Address: addr, Timeout: faultDeadline}.WithDefaults()
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		agg := scoring.NewAggregator([]scoring.Configured{{Engine: c, Config: cfg}}, scoring.DefaultConfig(), nil)
		vs := agg.Scan(context.Background(), msg(testmsg.Ham()))
		if vs[0].Outcome != scoring.Error && vs[0].Outcome != scoring.Timeout {
			t.Errorf("%s: got %+v, want error or timeout", name, vs[0])
		}
	}
}

// How answers that are not faults are read, against a fake server.
func TestAnswers(t *testing.T) {
	big := testmsg.Big(100 << 10)
	cases := []struct {
		name    string
		raw     []byte
		h       fakeHandler
		want    scoring.Outcome
		details []string
	}{
		{name: "204 after preview", raw: big, h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			if !r.preview || r.ieof || len(r.body) != 1024 {
				panic("want a 1024-byte preview without ieof")
			}
			io.WriteString(c, "ICAP/1.0 204 No Content\r\nISTag: \"FAKE-1\"\r\n\r\n")
			return true
		}, want: scoring.Clean, details: []string{"istag=FAKE-1"}},
		{name: "unchanged echo", raw: big, h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			if r.readAll(c, br) != nil {
				return false
			}
			return echo(c, r, "", r.body) == nil
		}, want: scoring.Clean, details: []string{"istag=FAKE-1"}},
		{name: "replaced body", raw: big, h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			if r.readAll(c, br) != nil {
				return false
			}
			return echo(c, r, "", []byte("<html>blocked</html>")) == nil
		}, want: scoring.Virus, details: []string{"unnamed threat (body replaced)"}},
		{name: "one byte changed", raw: big, h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			if r.readAll(c, br) != nil {
				return false
			}
			r.body[len(r.body)/2] ^= 1
			return echo(c, r, "", r.body) == nil
		}, want: scoring.Virus, details: []string{"unnamed threat (body replaced)"}},
		{name: "X-Virus-ID", raw: testmsg.Ham(), h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			return echo(c, r, "X-Virus-ID: EICAR-AV-Test\r\n", []byte("blocked")) == nil
		}, want: scoring.Virus, details: []string{"EICAR-AV-Test"}},
		{name: "policy violation", raw: testmsg.Ham(), h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			return echo(c, r, "X-Infection-Found: Type=2; Resolution=2; Threat=Encrypted.Zip;\r\n", []byte("blocked")) == nil
		}, want: scoring.Suspicious, details: []string{"Encrypted.Zip"}},
		{name: "violations list", raw: testmsg.Ham(), h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			io.WriteString(c, "ICAP/1.0 403 Forbidden\r\nISTag: \"x\"\r\nX-Violations-Found: 2\r\n\ta.exe\r\n\tWin.Trojan.A\r\n\t1\r\n\t2\r\n\tb.doc\r\n\tDoc.Macro.B\r\n\t2\r\n\t2\r\nEncapsulated: null-body=0\r\n\r\n")
			return false
		}, want: scoring.Virus, details: []string{"Win.Trojan.A", "Doc.Macro.B"}},
		{name: "HTTP 403 page", raw: testmsg.Ham(), h: func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			io.WriteString(c, "ICAP/1.0 200 OK\r\nISTag: \"x\"\r\nEncapsulated: res-hdr=0, res-body=26\r\n\r\nHTTP/1.1 403 Forbidden\r\n\r\n5\r\nnope!\r\n0\r\n\r\n")
			return true
		}, want: scoring.Virus, details: []string{"unnamed threat (HTTP 403 block page)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, scoring.EngineConfig{Address: newFake(t, fakeOptions("Preview: 1024\r\n"), tc.h).Addr})
			v, err := scanFor(t, c, tc.raw, okDeadline)
			if err != nil {
				t.Fatal(err)
			}
			if v.Outcome != tc.want || strings.Join(v.Details, "|") != strings.Join(tc.details, "|") {
				t.Fatalf("got %+v, want %s %q", v, tc.want, tc.details)
			}
		})
	}
}

// Connections are kept alive, at most min(max_concurrency, Max-Connections) are open at
// once, and one the server closed while idle is replaced without failing the scan.
func TestPool(t *testing.T) {
	slow204 := func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
		if r.readAll(c, br) != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
		_, err := io.WriteString(c, "ICAP/1.0 204 No Content\r\nISTag: \"FAKE-1\"\r\n\r\n")
		return err == nil
	}
	t.Run("keep-alive", func(t *testing.T) {
		var cc connCounter
		s := newFakeCounted(t, fakeOptions("Preview: 1024\r\n"), slow204, &cc)
		c := newClient(t, scoring.EngineConfig{Address: s.Addr})
		for range 5 {
			if v, err := scanFor(t, c, testmsg.Big(10<<10), okDeadline); err != nil || v.Outcome != scoring.Clean {
				t.Fatalf("got %+v, %v", v, err)
			}
		}
		if seen, _ := cc.stats(); seen != 1 {
			t.Errorf("OPTIONS and 5 scans used %d connections, want 1", seen)
		}
	})
	t.Run("Max-Connections", func(t *testing.T) {
		var cc connCounter
		s := newFakeCounted(t, fakeOptions("Preview: 1024\r\nMax-Connections: 2\r\n"), slow204, &cc)
		c := newClient(t, scoring.EngineConfig{Address: s.Addr, MaxConcurrency: 10})
		if _, err := c.Options(context.Background()); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var fails atomic.Int32
		for range 8 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if v, err := c.Scan(ctx, msg(testmsg.Ham())); err != nil || v.Outcome != scoring.Clean {
					t.Errorf("got %+v, %v", v, err)
					fails.Add(1)
				}
			})
		}
		wg.Wait()
		if _, most := cc.stats(); most > 2 {
			t.Errorf("%d connections open at once, want at most 2 (Max-Connections)", most)
		}
	})
	t.Run("closed while idle", func(t *testing.T) {
		var cc connCounter
		// Answers one request per connection, then closes it without saying so.
		s := newFakeCounted(t, fakeOptions("Preview: 1024\r\n"), func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
			io.WriteString(c, "ICAP/1.0 204 No Content\r\nISTag: \"FAKE-1\"\r\n\r\n")
			return false
		}, &cc)
		c := newClient(t, scoring.EngineConfig{Address: s.Addr})
		for range 3 {
			time.Sleep(20 * time.Millisecond) // let the close reach the client
			if v, err := scanFor(t, c, testmsg.Ham(), okDeadline); err != nil || v.Outcome != scoring.Clean {
				t.Fatalf("got %+v, %v; want clean after a retry on a new connection", v, err)
			}
		}
		if seen, _ := cc.stats(); seen < 3 {
			t.Errorf("%d connections, want a new one per scan", seen)
		}
	})
}

// A new ISTag in an answer makes the client ask OPTIONS again.
func TestISTagChange(t *testing.T) {
	var options atomic.Int32
	tag := atomic.Value{}
	tag.Store("T1")
	s := enginetest.NewServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := readFakeRequest(br)
			if err != nil {
				return
			}
			cur := tag.Load().(string)
			if r.method == "OPTIONS" {
				options.Add(1)
				io.WriteString(c, "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: \""+cur+"\"\r\nPreview: 0\r\nEncapsulated: null-body=0\r\n\r\n")
				continue
			}
			if r.readAll(c, br) != nil {
				return
			}
			io.WriteString(c, "ICAP/1.0 204 No Content\r\nISTag: \""+cur+"\"\r\n\r\n")
		}
	})
	c := newClient(t, scoring.EngineConfig{Address: s.Addr})
	scanTag := func() string {
		v, err := scanFor(t, c, testmsg.Ham(), okDeadline)
		if err != nil || v.Outcome != scoring.Clean || len(v.Details) != 1 {
			t.Fatalf("got %+v, %v", v, err)
		}
		return v.Details[0]
	}
	if d := scanTag(); d != "istag=T1" {
		t.Fatalf("details %q, want istag=T1", d)
	}
	tag.Store("T2") // a signature update
	if d := scanTag(); d != "istag=T2" {
		t.Fatalf("details %q, want istag=T2", d)
	}
	scanTag()
	if n := options.Load(); n != 2 {
		t.Errorf("%d OPTIONS requests, want 2 (first use, then after the ISTag changed)", n)
	}
	o, err := c.Options(context.Background())
	if err != nil || o.ISTag != "T2" || o.Preview != 0 {
		t.Errorf("Options = %+v, %v; want ISTag T2, Preview 0", o, err)
	}
}

// OPTIONS are asked again when their TTL has passed, and Options-TTL is read.
func TestOptionsTTL(t *testing.T) {
	var options atomic.Int32
	s := enginetest.NewServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := readFakeRequest(br)
			if err != nil {
				return
			}
			if r.method == "OPTIONS" {
				options.Add(1)
				io.WriteString(c, fakeOptions("Options-TTL: 120\r\nPreview: 0\r\n"))
				continue
			}
			if r.readAll(c, br) != nil {
				return
			}
			io.WriteString(c, "ICAP/1.0 204 No Content\r\nISTag: \"FAKE-1\"\r\n\r\n")
		}
	})
	c := newClient(t, scoring.EngineConfig{Address: s.Addr})
	for range 3 {
		if v, err := scanFor(t, c, testmsg.Ham(), okDeadline); err != nil || v.Outcome != scoring.Clean {
			t.Fatalf("got %+v, %v", v, err)
		}
	}
	o, _ := c.Options(context.Background())
	if n := options.Load(); n != 1 || o.TTL != 2*time.Minute {
		t.Fatalf("%d OPTIONS, TTL %s; want 1 and 2m", n, o.TTL)
	}
	c.mu.Lock()
	c.expires = time.Now().Add(-time.Second) // as if 2 minutes had passed
	c.mu.Unlock()
	if v, err := scanFor(t, c, testmsg.Ham(), okDeadline); err != nil || v.Outcome != scoring.Clean {
		t.Fatalf("got %+v, %v", v, err)
	}
	if n := options.Load(); n != 2 {
		t.Errorf("%d OPTIONS after the TTL, want 2", n)
	}
	for h, want := range map[string]time.Duration{"": DefaultOptionsTTL, "0": minOptionsTTL, "3600": time.Hour, "junk": DefaultOptionsTTL} {
		if got := parseOptions(header{"Options-Ttl": {h}}, time.Now()).TTL; got != want {
			t.Errorf("Options-TTL %q: %s, want %s", h, got, want)
		}
	}
}

// A 201 (Symantec's answer for what it blocked) names its threat in headers like a 403.
func TestCreated201(t *testing.T) {
	s := newFake(t, fakeOptions(""), func(c net.Conn, br *bufio.Reader, r *fakeReq) bool {
		io.WriteString(c, "ICAP/1.0 201 Created\r\nISTag: \"x\"\r\nX-Violations-Found: 1\r\n\tstdin\r\n\tEICAR Test String\r\n\t11101\r\n\t2\r\nEncapsulated: null-body=0\r\n\r\n")
		return false
	})
	c := newClient(t, scoring.EngineConfig{Address: s.Addr})
	if v, err := scanFor(t, c, testmsg.Ham(), okDeadline); err != nil || v.Outcome != scoring.Virus || strings.Join(v.Details, "|") != "EICAR Test String" {
		t.Fatalf("got %+v, %v; want virus EICAR Test String", v, err)
	}
}
