//go:build soak

package soak

// The SMTP client, sink and ledger: a trimmed copy of internal/e2e (ledger_test.go,
// sink_test.go), which is a _test package and cannot be imported.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"testing"
	"time"
)

// sendSMTP offers one message over its own connection; any error counts as a rejection.
func sendSMTP(addr, from, rcpt string, raw []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(120 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if err := c.Hello("client.soak.test"); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("DATA write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	c.Quit()
	return nil
}

// sink is a minimal SMTP server that records envelope recipients of what it receives.
type sink struct {
	Addr   string
	ln     net.Listener
	mu     sync.Mutex
	byRcpt map[string]int
	wg     sync.WaitGroup
}

func startSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	s := &sink{Addr: ln.Addr().String(), ln: ln, byRcpt: map[string]int{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); defer c.Close(); s.session(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *sink) session(c net.Conn) {
	r := bufio.NewReader(c)
	reply := func(format string, args ...any) bool {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := fmt.Fprintf(c, format+"\r\n", args...)
		return err == nil
	}
	if !reply("220 sink.soak.test ESMTP fpsafe soak sink") {
		return
	}
	var rcpts []string
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		ok := true
		switch strings.ToUpper(verb) {
		case "EHLO":
			ok = reply("250-sink.soak.test\r\n250-8BITMIME\r\n250 SIZE 67108864")
		case "HELO":
			ok = reply("250 sink.soak.test")
		case "MAIL", "RSET":
			rcpts = nil
			ok = reply("250 2.1.0 Ok")
		case "RCPT":
			_, p, _ := strings.Cut(arg, ":")
			p = strings.TrimSpace(p)
			if i := strings.IndexByte(p, '>'); strings.HasPrefix(p, "<") && i > 0 {
				p = p[1:i]
			}
			rcpts = append(rcpts, p)
			ok = reply("250 2.1.5 Ok")
		case "DATA":
			if !reply("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			for {
				l, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				if bytes.Equal(l, []byte(".\r\n")) || bytes.Equal(l, []byte(".\n")) {
					break
				}
			}
			s.mu.Lock()
			for _, rc := range rcpts {
				s.byRcpt[strings.ToLower(rc)]++
			}
			s.mu.Unlock()
			rcpts = nil
			ok = reply("250 2.0.0 Ok: stored")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			ok = reply("250 2.0.0 Ok")
		}
		if !ok {
			return
		}
	}
}

func (s *sink) copies(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byRcpt[strings.ToLower(rcpt)]
}

// Outcomes of an offered message.
const (
	outPending   = ""
	outDelivered = "delivered"
	outHeld      = "held"
	outRejected  = "rejected"
	outMissing   = "missing"
)

type offer struct {
	Kind   string // ham, gtube, eicar
	Rcpt   string
	Err    error
	Out    string
	Copies int
}

type ledger struct {
	mu     sync.Mutex
	offers []*offer
}

func (l *ledger) newOffer(kind string) *offer {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := &offer{Kind: kind, Rcpt: fmt.Sprintf("soak-%06d@rcpt.soak.test", len(l.offers)+1)}
	l.offers = append(l.offers, o)
	return o
}

func (l *ledger) all() []*offer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*offer(nil), l.offers...)
}

type counts struct{ offered, delivered, held, rejected, missing, dup int }

func (l *ledger) counts() counts {
	var c counts
	for _, o := range l.all() {
		c.offered++
		switch o.Out {
		case outDelivered:
			c.delivered++
		case outHeld:
			c.held++
		case outRejected:
			c.rejected++
		default:
			c.missing++
		}
		if o.Copies > 1 {
			c.dup++
		}
	}
	return c
}

func (c counts) balanced() bool {
	return c.offered == c.delivered+c.held && c.rejected == 0 && c.missing == 0
}
