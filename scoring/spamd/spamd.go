// Package spamd is fpsafe's client for SpamAssassin's spamd. It speaks the SPAMC/1.5
// protocol itself, one connection per message, so that no spamc process is forked per
// message and every byte on the wire is bounded by the caller's deadline.
//
// By default it sends SYMBOLS, which gives the verdict, the score and the rule names in
// one short reply; CHECK (verdict only) and REPORT (rule table as text) can be chosen.
package spamd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// Command is the SPAMC request sent for each message; it decides what Details hold.
type Command string

// The commands the client can send. All of them return the verdict and the score.
const (
	Check   Command = "CHECK"   // verdict and score only: Details stay empty
	Symbols Command = "SYMBOLS" // plus the names of the rules that hit (the default)
	Report  Command = "REPORT"  // plus a text report; Details are the rule names from it
)

// Option changes how a Client talks to spamd.
type Option func(*Client) error

// WithCommand selects the request command (Symbols by default).
func WithCommand(cmd Command) Option {
	return func(c *Client) error {
		switch cmd {
		case Check, Symbols, Report:
			c.cmd = cmd
			return nil
		}
		return fmt.Errorf("unsupported command %q (want CHECK, SYMBOLS or REPORT)", cmd)
	}
}

// WithUser sends a User header, so that spamd applies that user's preferences (when it
// runs without -x). Empty means no header: spamd uses its own user.
func WithUser(user string) Option {
	return func(c *Client) error {
		if strings.ContainsFunc(user, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("user %q: spaces and control characters are not allowed", user)
		}
		c.user = user
		return nil
	}
}

// Client scans messages with one spamd. It is safe for concurrent use; each call opens its
// own connection, as spamd serves one request per connection.
type Client struct {
	name    string
	addr    string
	timeout time.Duration
	cmd     Command
	user    string
}

// New returns a client for cfg.Address ("inet:HOST:PORT" or "unix:/path"). cfg should have
// its defaults filled (cfg.WithDefaults()); cfg.Timeout bounds calls whose context has no
// earlier deadline.
func New(cfg scoring.EngineConfig, opts ...Option) (*Client, error) {
	if _, _, err := scoring.ParseAddress(cfg.Address); err != nil {
		return nil, fmt.Errorf("spamd %q: %w", cfg.Name, err)
	}
	c := &Client{name: cfg.Name, addr: cfg.Address, timeout: cfg.Timeout, cmd: Symbols}
	if c.timeout <= 0 {
		c.timeout = scoring.Defaults["spamd"].Timeout
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("spamd %q: %w", cfg.Name, err)
		}
	}
	return c, nil
}

// Name implements scoring.Engine.
func (c *Client) Name() string { return c.name }

// Scan sends the whole message to spamd and returns its verdict: Spam when spamd says
// True/Yes, Clean otherwise, with spamd's score and threshold. Anything short of a complete
// EX_OK reply is an error, never a clean verdict.
func (c *Client) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	rep, err := c.scan(ctx, m)
	if err != nil {
		return scoring.Verdict{}, c.wrap(ctx, err)
	}
	v := scoring.Verdict{Outcome: scoring.Clean, Score: rep.Score, Threshold: rep.Threshold}
	if rep.Spam {
		v.Outcome = scoring.Spam
	}
	switch c.cmd {
	case Symbols:
		v.Details = parseSymbols(rep.Body)
	case Report:
		v.Details = parseReport(rep.Body)
	}
	return v, nil
}

func (c *Client) scan(ctx context.Context, m *mail.Message) (reply, error) {
	conn, done, err := c.dial(ctx)
	if err != nil {
		return reply{}, err
	}
	defer done()
	werr := c.send(conn, m)
	var me *messageError
	if errors.As(werr, &me) {
		return reply{}, werr // our side is at fault: spamd has nothing to say
	}
	if werr == nil {
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			werr = cw.CloseWrite()
		}
	}
	rep, rerr := parseReply(conn)
	var se *statusError
	switch {
	case werr != nil && errors.As(rerr, &se):
		return reply{}, fmt.Errorf("%w (after write error: %v)", rerr, werr) // spamd refused early
	case werr != nil:
		return reply{}, werr
	}
	return rep, rerr
}

// messageError is a failure to read the message itself, not a fault of spamd.
type messageError struct{ err error }

func (e *messageError) Error() string { return e.err.Error() }
func (e *messageError) Unwrap() error { return e.err }

// sourceReader remembers the message reader's own failures, to tell them from the
// connection's in io.CopyN's single error.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// send writes the request and exactly Content-length bytes of message. The length comes
// from m.Size(), which must equal what m.Open() yields; a mismatch is an error rather than
// a request spamd would misread (it would wait for missing bytes or cut the message).
func (c *Client) send(w io.Writer, m *mail.Message) error {
	size := m.Size()
	r, err := m.Open()
	if err != nil {
		return &messageError{fmt.Errorf("open message: %w", err)}
	}
	defer r.Close()
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, "%s SPAMC/1.5\r\nContent-length: %d\r\n", c.cmd, size)
	if c.user != "" {
		fmt.Fprintf(bw, "User: %s\r\n", c.user)
	}
	bw.WriteString("\r\n")
	src := &sourceReader{r: r}
	n, err := io.CopyN(bw, src, size)
	if src.err != nil {
		return &messageError{fmt.Errorf("read message: %w", src.err)}
	}
	if errors.Is(err, io.EOF) {
		return &messageError{fmt.Errorf("message is %d bytes but its size says %d", n, size)}
	}
	if err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k > 0 {
		return &messageError{fmt.Errorf("message is longer than its size %d", size)}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	return nil
}

// Ping sends PING and expects PONG: a cheap health check that loads no message.
func (c *Client) Ping(ctx context.Context) error {
	conn, done, err := c.dial(ctx)
	if err != nil {
		return c.wrap(ctx, err)
	}
	defer done()
	if _, err := io.WriteString(conn, "PING SPAMC/1.5\r\n\r\n"); err != nil {
		return c.wrap(ctx, err)
	}
	_, msg, err := readStatus(bufio.NewReader(&capped{r: conn, n: 4096}))
	if err == nil && msg != "PONG" {
		err = fmt.Errorf("PING answered %q, want PONG", clip(msg))
	}
	return c.wrap(ctx, err)
}

// dial connects within ctx's deadline (or the configured timeout if that is sooner) and
// makes sure the connection is abandoned as soon as ctx ends, deadline or not. done closes
// the connection and releases the context.
func (c *Client) dial(ctx context.Context) (net.Conn, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	conn, err := scoring.Dial(ctx, c.addr)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return conn, func() { stop(); conn.Close(); cancel() }, nil
}

// wrap adds the engine's address and, when the caller's context ended, its cause, so that
// the aggregator can tell a timeout from a broken engine.
func (c *Client) wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("spamd %s: %w: %w", c.addr, ctx.Err(), err)
	}
	return fmt.Errorf("spamd %s: %w", c.addr, err)
}
