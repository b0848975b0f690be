package spamd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/enginetest"
)

const gtubeReply = "SPAMD/1.1 0 EX_OK\r\nContent-length: 18\r\nSpam: True ; 1003.3 / 5.0\r\n\r\nMISSING_DATE,GTUBE\r\n\r\n"

// TestFaults checks that every kind of broken server gives an error, within the deadline
// plus slack, and never a verdict.
func TestFaults(t *testing.T) {
	const deadline = 500 * time.Millisecond
	cases := []struct {
		name string
		addr func(t testing.TB) string
	}{
		{"refused", enginetest.RefusedAddr},
		{"silent", silent(true)},
		{"closed without reply", serve(enginetest.Silent)},
		{"garbage", serve(enginetest.Garbage)},
		{"status only", serve(enginetest.CloseMidReply("SPAMD/1.1 0 EX_OK\r\n"))},
		{"mid status", serve(enginetest.CloseMidReply("SPAMD/1.1 0 EX"))},
		{"mid header", serve(enginetest.CloseMidReply("SPAMD/1.1 0 EX_OK\r\nContent-length: 23\r\nSpam: Tr"))},
		{"mid body", serve(enginetest.CloseMidReply(gtubeReply[:80]))},
		{"no blank line", serve(enginetest.CloseMidReply("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1003.3 / 5.0\r\n"))},
		{"error status", serve(enginetest.Reply("SPAMD/1.0 76 Bad header line: (Content-Length mismatch)\r\n", time.Second))},
		{"late", serve(enginetest.Late(gtubeReply, 3*time.Second))},
		{"endless", serve(endless)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, tc.addr(t))
			start := time.Now()
			v, err := scan(t, c, testmsg.Spam(), deadline)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("got verdict %+v, want an error", v)
			}
			if v.Outcome != "" {
				t.Errorf("error came with outcome %q", v.Outcome)
			}
			if took > deadline+2*time.Second {
				t.Errorf("error after %s, deadline %s", took, deadline)
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			if c.Ping(ctx) == nil {
				t.Error("Ping: want an error")
			}
			t.Logf("%s in %s", err, took.Round(time.Millisecond))
		})
	}
}

// silent holds each connection open without a word until the test ends, after reading the
// request (read) or without reading anything. enginetest.Silent closes the connection once
// the client half-closes, as this client does after the message.
func silent(read bool) func(t testing.TB) string {
	return func(t testing.TB) string {
		done := make(chan struct{})
		s := enginetest.NewServer(t, func(c net.Conn) {
			if read {
				io.Copy(io.Discard, c)
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
			}
		})
		t.Cleanup(func() { close(done) })
		return s.Addr
	}
}

// TestStuckWrite checks that a server that stops reading cannot hold a large message's
// write past the deadline.
func TestStuckWrite(t *testing.T) {
	c := newClient(t, silent(false)(t))
	m := testmsg.Parse(testmsg.Ham(), mail.Envelope{})
	m.Body = zeroBody(1 << 30) // far more than socket buffers hold
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	v, err := c.Scan(ctx, m)
	if err == nil || time.Since(start) > 2500*time.Millisecond {
		t.Fatalf("got %+v, %v after %s; want an error within the deadline", v, err, time.Since(start))
	}
	t.Logf("%v", err)
}

func serve(b enginetest.Behaviour) func(t testing.TB) string {
	return func(t testing.TB) string { return enginetest.NewServer(t, b).Addr }
}

// endless answers a valid status line and then headers without end.
func endless(c net.Conn) {
	go io.Copy(io.Discard, c)
	io.WriteString(c, "SPAMD/1.1 0 EX_OK\r\n")
	line := []byte("X-Filler: " + strings.Repeat("x", 1000) + "\r\n")
	for range 10_000 { // 10 MB, ten times the client's cap
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

// TestCancel checks that cancelling a context without a deadline stops a scan at once.
func TestCancel(t *testing.T) {
	c := newClient(t, silent(true)(t))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Scan(ctx, testmsg.Parse(testmsg.Ham(), mail.Envelope{}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancel took %s", took)
	}
}

// TestRequest records what the client sends: the SPAMC request line, an exact
// Content-length, the User header and the message byte for byte.
func TestRequest(t *testing.T) {
	got := make(chan string, 1)
	srv := enginetest.NewServer(t, func(c net.Conn) {
		b, _ := io.ReadAll(c) // the client half-closes
		got <- string(b)
		io.WriteString(c, gtubeReply)
	})
	raw := testmsg.Big(100 << 10)
	c := newClient(t, srv.Addr, WithUser("alice"))
	v, err := scan(t, c, raw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v.Outcome != scoring.Spam || v.Score != 1003.3 || v.Threshold != 5 || strings.Join(v.Details, ",") != "GTUBE,MISSING_DATE" {
		t.Errorf("verdict %+v", v)
	}
	req := <-got
	head, body, ok := strings.Cut(req, "\r\n\r\n")
	want := "SYMBOLS SPAMC/1.5\r\nContent-length: " + strconv.Itoa(len(raw)) + "\r\nUser: alice"
	if !ok || head != want {
		t.Errorf("request head %q, want %q", head, want)
	}
	if body != string(raw) {
		t.Errorf("sent %d message bytes, want the %d-byte message unchanged", len(body), len(raw))
	}
}

// TestSizeMismatch checks that a message whose Size disagrees with its stream is refused
// before spamd could misread it, whichever way it is wrong.
func TestSizeMismatch(t *testing.T) {
	srv := enginetest.NewServer(t, enginetest.Reply(gtubeReply, 2*time.Second))
	for _, delta := range []int64{-1, 1, -200} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		v, err := newClient(t, srv.Addr).Scan(ctx, lyingMessage(testmsg.Ham(), delta))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "size") {
			t.Errorf("size off by %d: got %+v, %v; want a size error", delta, v, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("size off by %d: error took %s, want it at once", delta, took)
		}
	}
}

// zeroBody is a body of n zero bytes that costs no memory.
type zeroBody int64

func (b zeroBody) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.LimitReader(zeros{}, int64(b))), nil
}
func (b zeroBody) Size() int64   { return int64(b) }
func (b zeroBody) Remove() error { return nil }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// lyingBody reports a size delta bytes off its real length.
type lyingBody struct {
	mail.Body
	delta int64
}

func (b lyingBody) Size() int64 { return b.Body.Size() + b.delta }

func lyingMessage(raw []byte, delta int64) *mail.Message {
	m := testmsg.Parse(raw, mail.Envelope{})
	m.Body = lyingBody{m.Body, delta}
	return m
}

// TestPingRequest checks the PING exchange against a scripted server.
func TestPingRequest(t *testing.T) {
	srv := enginetest.NewServer(t, func(c net.Conn) {
		l, _ := bufio.NewReader(c).ReadString('\n')
		if l == "PING SPAMC/1.5\r\n" {
			io.WriteString(c, "SPAMD/1.5 0 PONG\r\n")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := newClient(t, srv.Addr).Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
