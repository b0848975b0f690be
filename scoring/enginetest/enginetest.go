// Package enginetest has fakes for testing fpsafe against misbehaving engines, like
// net/http/httptest: in-process fault servers that refuse, stay silent, speak garbage,
// close mid-reply or answer late, and fake engines with canned verdicts. They add to the
// tests against real daemons; they never replace them.
package enginetest

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// Behaviour is what a fault server does with each connection it accepts.
type Behaviour func(c net.Conn)

// Server is a TCP fault server on 127.0.0.1.
type Server struct {
	Addr string // "inet:127.0.0.1:PORT"
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn []*heldConn
}

// NewServer starts a fault server; it is closed when the test ends.
func NewServer(t testing.TB, b Behaviour) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: "inet:" + ln.Addr().String(), ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hc := &heldConn{Conn: c, done: make(chan struct{})}
			s.mu.Lock()
			s.conn = append(s.conn, hc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); defer hc.Close(); b(hc) }()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// heldConn lets a behaviour wait until the server is closed.
type heldConn struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *heldConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conn {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// RefusedAddr returns an inet address where nothing listens: connections are refused.
func RefusedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return "inet:" + a
}

// Silent accepts, reads whatever comes, and never answers; it keeps the connection open
// (even after the client half-closes) until the server is closed.
func Silent(c net.Conn) {
	io.Copy(io.Discard, c)
	if h, ok := c.(*heldConn); ok {
		<-h.done
	}
}

// Reply reads until the client half-closes or `after` passes, then writes reply.
func Reply(reply string, after time.Duration) Behaviour {
	return func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(after))
		io.Copy(io.Discard, c)
		c.Write([]byte(reply))
	}
}

// Garbage answers with bytes that are no protocol at all.
func Garbage(c net.Conn) { Reply("\x00\xffgarbage\r\nnot a reply\r\n\x00", 200*time.Millisecond)(c) }

// CloseMidReply writes the first part of a reply and closes the connection.
func CloseMidReply(partial string) Behaviour { return Reply(partial, 200*time.Millisecond) }

// Late answers reply only after delay: after any sane deadline.
func Late(reply string, delay time.Duration) Behaviour {
	return func(c net.Conn) {
		go io.Copy(io.Discard, c)
		time.Sleep(delay)
		c.Write([]byte(reply))
	}
}

// Engine is a fake engine: it returns Verdict (or Err) after Delay, honouring ctx.
type Engine struct {
	EngineName string
	Verdict    scoring.Verdict
	Err        error
	Delay      time.Duration
	Panic      bool

	mu    sync.Mutex
	calls int
}

// Name implements scoring.Engine.
func (e *Engine) Name() string { return e.EngineName }

// Calls is the number of Scan calls so far.
func (e *Engine) Calls() int { e.mu.Lock(); defer e.mu.Unlock(); return e.calls }

// Scan implements scoring.Engine.
func (e *Engine) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	if e.Panic {
		panic("enginetest: panic on purpose")
	}
	if e.Delay > 0 {
		select {
		case <-time.After(e.Delay):
		case <-ctx.Done():
			return scoring.Verdict{}, ctx.Err()
		}
	}
	return e.Verdict, e.Err
}
