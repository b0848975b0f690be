// Package clamd is fpsafe's client for ClamAV's clamd. Each scan opens its own connection
// and streams the whole message (header and body, so that clamd's mail parser decodes the
// attachments) with the z-framed INSTREAM command; there is no IDSESSION, whose gain is
// small and whose deadlock rules are strict.
//
// The client answers only Clean or Virus. Whether a signature belongs to a doubtful family
// (Heuristics.*, PUA.*, ...) is the aggregator's call, not the client's. Everything that is
// not a real answer (refused, cut short, garbage, an ERROR reply) is an error, never Clean.
package clamd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

const (
	// chunkSize is the INSTREAM chunk length: large enough to keep system calls few, small
	// enough that the limit is checked often.
	chunkSize = 32 << 10
	// maxReply bounds what is read of a reply, so that a server speaking garbage cannot
	// exhaust memory. Real replies are a few dozen bytes per signature.
	maxReply = 1 << 20
)

// Client talks to one clamd. It holds no connection and no mutable state, so one Client
// serves any number of concurrent scans.
type Client struct {
	name    string
	addr    string
	limit   int64
	timeout time.Duration
}

// New returns a client for the engine configured by cfg. cfg.Address is "inet:HOST:PORT"
// or "unix:/path". cfg.MaxSize is also the stream limit: the client never sends more, as
// clamd would refuse it anyway, so keep max_size at or below clamd's StreamMaxLength (both
// default to 25 MiB). cfg.Timeout bounds every call whose context has no earlier deadline.
func New(cfg scoring.EngineConfig) (*Client, error) {
	d := scoring.Defaults["clamd"]
	if cfg.Name == "" {
		cfg.Name = "clamd"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = d.MaxSize
	}
	if _, _, err := scoring.ParseAddress(cfg.Address); err != nil {
		return nil, fmt.Errorf("clamd engine %q: %w", cfg.Name, err)
	}
	return &Client{name: cfg.Name, addr: cfg.Address, limit: int64(cfg.MaxSize), timeout: cfg.Timeout}, nil
}

// Name is the engine's configured name; it implements scoring.Engine.
func (c *Client) Name() string { return c.name }

// Scan streams m to clamd and returns Clean, or Virus with the signature names in Details.
// It implements scoring.Engine. A message above the stream limit is an error wrapping
// ErrTooLarge, whether the client or clamd noticed it.
func (c *Client) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	if size := m.Size(); size > c.limit {
		return scoring.Verdict{}, fmt.Errorf("clamd %s: message of %d bytes above the stream limit of %d bytes: %w",
			c.addr, size, c.limit, ErrTooLarge)
	}
	r, err := m.Open()
	if err != nil {
		return scoring.Verdict{}, fmt.Errorf("clamd %s: open message: %w", c.addr, err)
	}
	defer r.Close()
	reply, err := c.roundTrip(ctx, "INSTREAM", r)
	if err != nil {
		return scoring.Verdict{}, err
	}
	v, err := parseScan(reply)
	if err != nil {
		return scoring.Verdict{}, fmt.Errorf("clamd %s: %w", c.addr, err)
	}
	return v, nil
}

// Ping checks that clamd answers PONG; it implements scoring.Pinger, which the circuit
// breaker uses to probe the engine before trusting it again.
func (c *Client) Ping(ctx context.Context) error {
	reply, err := c.roundTrip(ctx, "PING", nil)
	if err != nil {
		return err
	}
	if err := parsePing(reply); err != nil {
		return fmt.Errorf("clamd %s: %w", c.addr, err)
	}
	return nil
}

// Version returns clamd's version line, e.g. "ClamAV 1.4.6/27512/Sun Nov 29 09:30:00 2026"
// (engine/database/date; without an official database only "ClamAV 1.4.6"). Operators
// want it in health output to see how old the signatures are.
func (c *Client) Version(ctx context.Context) (string, error) {
	reply, err := c.roundTrip(ctx, "VERSION", nil)
	if err != nil {
		return "", err
	}
	v, err := parseVersion(reply)
	if err != nil {
		return "", fmt.Errorf("clamd %s: %w", c.addr, err)
	}
	return v, nil
}

// roundTrip sends one z-framed command on a new connection, with payload as INSTREAM
// chunks when it is not nil, and returns clamd's whole reply: clamd closes the connection
// after answering a command outside IDSESSION. The reply is read while the payload is being
// written, so that an early answer (clamd's size-limit error, after which it closes the
// connection) is seen rather than lost behind a broken pipe.
func (c *Client) roundTrip(ctx context.Context, cmd string, payload io.Reader) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := scoring.Dial(ctx, c.addr)
	if err != nil {
		return nil, c.fail(ctx, "connect", err)
	}
	defer conn.Close()
	// Dial set the deadline; this makes a cancelled ctx end blocked reads and writes too.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	type result struct {
		data []byte
		err  error
	}
	read := make(chan result, 1)
	go func() {
		data, err := io.ReadAll(io.LimitReader(conn, maxReply+1))
		read <- result{data, err}
	}()

	werr := c.send(conn, cmd, payload)
	if werr != nil && !isNetError(werr) {
		return nil, werr // the message could not be read or is too large: no reply to wait for
	}
	r := <-read
	if len(r.data) > maxReply {
		return nil, fmt.Errorf("clamd %s: %s reply longer than %d bytes", c.addr, cmd, maxReply)
	}
	if werr != nil || r.err != nil {
		// clamd may have said why before closing: its words beat a broken pipe.
		if e := errorFrame(r.data); e != nil {
			return nil, fmt.Errorf("clamd %s: %w", c.addr, e)
		}
		if werr != nil {
			return nil, c.fail(ctx, "send "+cmd, werr)
		}
		what := "read " + cmd + " reply"
		if len(r.data) > 0 {
			what += fmt.Sprintf(" (after %q)", clip(r.data))
		}
		return nil, c.fail(ctx, what, r.err)
	}
	return r.data, nil
}

// send writes the command and, for INSTREAM, the chunks and the zero-length terminator.
// Errors writing to conn are *net.OpError; any other error is local (the message).
func (c *Client) send(conn net.Conn, cmd string, payload io.Reader) error {
	if _, err := conn.Write([]byte("z" + cmd + "\x00")); err != nil || payload == nil {
		return err
	}
	buf := make([]byte, 4+chunkSize)
	var sent int64
	for {
		n, err := io.ReadFull(payload, buf[4:])
		if n > 0 {
			sent += int64(n)
			if sent > c.limit {
				return fmt.Errorf("clamd %s: message longer than the stream limit of %d bytes: %w", c.addr, c.limit, ErrTooLarge)
			}
			binary.BigEndian.PutUint32(buf, uint32(n))
			if _, werr := conn.Write(buf[:4+n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("clamd %s: read message: %w", c.addr, err)
		}
	}
	_, err := conn.Write([]byte{0, 0, 0, 0})
	return err
}

// fail wraps a network error, adding ctx's error when ctx ended, so that the aggregator
// reports a deadline as a timeout and callers can test for context.Canceled.
func (c *Client) fail(ctx context.Context, what string, err error) error {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded // the conn's deadline fired just before ctx's timer
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("clamd %s: %s: %w: %w", c.addr, what, cerr, err)
	}
	return fmt.Errorf("clamd %s: %s: %w", c.addr, what, err)
}

func isNetError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}
