// Package smtptest has the SMTP pieces fpsafe's end-to-end and soak tests share: a client
// that offers one message per session, and a sink that keeps what the MTAs relay to it,
// indexed by envelope recipient, for the nothing-lost ledgers.
package smtptest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// sinkHostName is the sink's greeting name: it must differ from the MTAs' own names, or
// they refuse to relay to it ("mail loops back to myself").
const sinkHostName = "sink.e2e.test"

// sinkMaxMessage bounds one message the sink accepts (the corpus stays far below).
const sinkMaxMessage = 64 << 20

// Delivery is one message the sink received.
type Delivery struct {
	From  string
	Rcpts []string
	Data  []byte // as received, dot-unstuffed, CRLF line ends
	At    time.Time
}

// Sink is a minimal SMTP server on 127.0.0.1 that keeps every message in memory, indexed by
// envelope recipient. It advertises 8BITMIME and SMTPUTF8 so that the MTAs relay 8-bit
// and SMTPUTF8 mail to it unchanged.
type Sink struct {
	Addr string
	ln   net.Listener

	mu     sync.Mutex
	byRcpt map[string][]*Delivery
	all    []*Delivery
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// StartSink starts a sink on a free port of 127.0.0.1; it is closed when the test ends.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	s := &Sink{Addr: ln.Addr().String(), ln: ln, byRcpt: map[string][]*Delivery{}, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Sink) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// session speaks just enough SMTP for Postfix's and Sendmail's clients.
func (s *Sink) session(c net.Conn) {
	r := bufio.NewReader(c)
	reply := func(format string, args ...any) bool {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := fmt.Fprintf(c, format+"\r\n", args...)
		return err == nil
	}
	if !reply("220 %s ESMTP fpsafe e2e sink", sinkHostName) {
		return
	}
	var from string
	var rcpts []string
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		ok := true
		switch strings.ToUpper(verb) {
		case "EHLO":
			ok = reply("250-%s\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE %d", sinkHostName, sinkMaxMessage)
		case "HELO":
			ok = reply("250 %s", sinkHostName)
		case "MAIL":
			from, rcpts = pathArg(arg), nil
			ok = reply("250 2.1.0 Ok")
		case "RCPT":
			rcpts = append(rcpts, pathArg(arg))
			ok = reply("250 2.1.5 Ok")
		case "DATA":
			if len(rcpts) == 0 {
				ok = reply("503 5.5.1 No valid recipients")
				break
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			data, err := readData(r)
			if err != nil {
				reply("552 5.3.4 %v", err)
				return
			}
			s.store(&Delivery{From: from, Rcpts: rcpts, Data: data, At: time.Now()})
			from, rcpts = "", nil
			ok = reply("250 2.0.0 Ok: stored")
		case "RSET":
			from, rcpts = "", nil
			ok = reply("250 2.0.0 Ok")
		case "NOOP":
			ok = reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			ok = reply("502 5.5.2 Command not recognized")
		}
		if !ok {
			return
		}
	}
}

// pathArg returns the address of "FROM:<a@b> PARAMS" or "TO:<a@b>".
func pathArg(arg string) string {
	_, p, _ := strings.Cut(arg, ":")
	p = strings.TrimSpace(p)
	if i := strings.IndexByte(p, '>'); strings.HasPrefix(p, "<") && i > 0 {
		return p[1:i]
	}
	addr, _, _ := strings.Cut(p, " ")
	return addr
}

// readData reads the DATA section up to the lone dot and undoes dot-stuffing.
func readData(r *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		if bytes.Equal(line, []byte(".\r\n")) || bytes.Equal(line, []byte(".\n")) {
			return b.Bytes(), nil
		}
		if len(line) > 1 && line[0] == '.' {
			line = line[1:]
		}
		if b.Len()+len(line) > sinkMaxMessage {
			return nil, fmt.Errorf("message above %d bytes", sinkMaxMessage)
		}
		b.Write(line)
	}
}

func (s *Sink) store(d *Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, d)
	for _, r := range d.Rcpts {
		k := strings.ToLower(r)
		s.byRcpt[k] = append(s.byRcpt[k], d)
	}
}

// Copies returns the messages delivered to rcpt.
func (s *Sink) Copies(rcpt string) []*Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Delivery(nil), s.byRcpt[strings.ToLower(rcpt)]...)
}

// Others returns deliveries to recipients not in known (bounces, double bounces, ...).
func (s *Sink) Others(known map[string]bool) []*Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Delivery
	for _, d := range s.all {
		foreign := true
		for _, r := range d.Rcpts {
			if known[strings.ToLower(r)] {
				foreign = false
			}
		}
		if foreign {
			out = append(out, d)
		}
	}
	return out
}
