// Package rspamd is fpsafe's client for rspamd's HTTP protocol: it posts each message to
// /checkv2 with the SMTP envelope as request headers and turns the JSON reply into a
// scoring.Verdict. rspamd's action, not its score alone, decides the outcome, so that the
// operator's rspamd thresholds keep their meaning inside fpsafe.
package rspamd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// idleTimeout is how long an unused pooled connection is kept. rspamd 3.4 closes every
// connection after its reply, but a newer rspamd or an HTTP balancer in front may keep
// them open; 30 s saves reconnects under steady mail flow without hoarding sockets.
const idleTimeout = 30 * time.Second

// Client scans messages with one rspamd normal worker (or controller, or proxy). It is
// safe for concurrent use; its connection pool is its own, never http.DefaultClient's.
type Client struct {
	name string
	base string // scheme://host[:port][/prefix], no trailing slash
	addr string // as configured, for messages
	// timeout bounds calls whose ctx has no deadline (the aggregator always sets one).
	timeout time.Duration
	tr      *http.Transport
	hc      *http.Client
}

// New builds a client for cfg.Address, which is an http:// or https:// URL, inet:HOST:PORT
// (meaning http://HOST:PORT) or unix:/path. cfg should already carry its defaults
// (cfg.WithDefaults()); MaxConcurrency caps the connections to rspamd.
func New(cfg scoring.EngineConfig) (*Client, error) {
	base, sock, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("rspamd %s: %w", cfg.Name, err)
	}
	conns := max(cfg.MaxConcurrency, 1)
	var d net.Dialer
	tr := &http.Transport{
		Proxy:               nil, // loopback or LAN scanner: never through an environment proxy
		DialContext:         d.DialContext,
		MaxConnsPerHost:     conns,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     idleTimeout,
		DisableCompression:  true, // rspamd sends plain JSON; a gzip bomb cannot slip past the cap
	}
	if sock != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
	}
	return &Client{
		name:    cfg.Name,
		base:    base,
		addr:    cfg.Address,
		timeout: cmp.Or(cfg.Timeout, scoring.Defaults["rspamd"].Timeout),
		tr:      tr,
		hc:      &http.Client{Transport: tr, CheckRedirect: noRedirect},
	}, nil
}

// parseAddress returns the base URL and, for unix:/path, the socket to dial.
func parseAddress(addr string) (base, sock string, err error) {
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return "", "", fmt.Errorf("address %q: %w", addr, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", "", fmt.Errorf("address %q: want http://HOST:PORT, inet:HOST:PORT or unix:/path", addr)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", "", fmt.Errorf("address %q: no user, query or fragment allowed", addr)
		}
		return strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), "", nil
	}
	network, address, err := scoring.ParseAddress(addr)
	if err != nil {
		return "", "", err
	}
	if network == "unix" {
		return "http://rspamd", address, nil // the host only fills the Host header
	}
	return "http://" + address, "", nil
}

// noRedirect refuses redirects: a scanner that redirects is misconfigured, and following
// one would re-send the message somewhere the operator never configured.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Name returns the engine's configured name.
func (c *Client) Name() string { return c.name }

// CloseIdleConnections closes pooled connections that are not in use, e.g. when the
// engine is removed on a configuration reload. The client stays usable.
func (c *Client) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// Scan posts m to /checkv2 and returns rspamd's verdict. Every failure to get a complete,
// well-formed answer (refused, HTTP error, timeout, garbage) is an error, never Clean.
func (c *Client) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	body, err := m.Open()
	if err != nil {
		return scoring.Verdict{}, fmt.Errorf("rspamd %s: open message: %w", c.addr, err)
	}
	// The transport closes body, possibly after Do returns: no Close of ours may race it.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/checkv2", body)
	if err != nil {
		body.Close()
		return scoring.Verdict{}, fmt.Errorf("rspamd %s: %w", c.addr, err)
	}
	req.ContentLength = m.Size() // must match what Open yields, or the transport fails the scan
	// A pooled connection that the server closed meanwhile fails before anything is written;
	// GetBody lets the transport replay the request on a fresh one. Scanning is idempotent.
	req.GetBody = m.Open
	setEnvelope(req.Header, m)
	b, err := c.do(req)
	if err != nil {
		return scoring.Verdict{}, err
	}
	v, err := parseReply(b)
	if err != nil {
		return scoring.Verdict{}, fmt.Errorf("rspamd %s: %w", c.addr, err)
	}
	return v, nil
}

// setEnvelope adds the envelope fields that are known as rspamd request headers.
func setEnvelope(h http.Header, m *mail.Message) {
	set := func(k, v string) {
		if v = clean(v); v != "" {
			h.Add(k, v)
		}
	}
	set("From", m.Env.MailFrom)
	for _, r := range m.Env.Rcpts {
		set("Rcpt", r)
	}
	if m.Env.ClientIP.IsValid() {
		set("IP", m.Env.ClientIP.Unmap().String())
	}
	set("Helo", m.Env.Helo)
	set("Hostname", m.Env.ClientName)
	set("Queue-Id", m.QueueID)
	set("User", m.Env.AuthUser)
}

// clean drops control characters (CR and LF above all), which net/http refuses in header
// values: a stray one from the MTA must not cost the message its scan.
func clean(v string) string {
	if strings.IndexFunc(v, isCtl) < 0 {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if isCtl(r) {
			return -1
		}
		return r
	}, v))
}

func isCtl(r rune) bool { return r < 0x20 || r == 0x7f }

// Ping asks rspamd's /ping for "pong": the circuit breaker's cheap health probe.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/ping", nil)
	if err != nil {
		return fmt.Errorf("rspamd %s: %w", c.addr, err)
	}
	b, err := c.do(req)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(b)); s != "pong" {
		return fmt.Errorf("rspamd %s: ping: unexpected reply %q", c.addr, truncate(s, 64))
	}
	return nil
}

// bound gives ctx the configured timeout when it has no deadline of its own.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// do sends req and returns the body of a 200 reply, read up to maxReply bytes. Any other
// status is an error carrying rspamd's JSON "error" field when there is one.
func (c *Client) do(req *http.Request) ([]byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rspamd %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return nil, fmt.Errorf("rspamd %s: read reply: %w", c.addr, err)
	}
	if len(b) > maxReply {
		return nil, fmt.Errorf("rspamd %s: %w", c.addr, errTooLong)
	}
	if resp.StatusCode != http.StatusOK {
		msg := resp.Status
		if e := errorField(b); e != "" {
			msg += ": " + e
		}
		return nil, fmt.Errorf("rspamd %s: %s %s: HTTP %s", c.addr, req.Method, req.URL.Path, msg)
	}
	return b, nil
}

// errTooLong is a reply above maxReply bytes.
var errTooLong = errors.New("reply longer than " + strconv.Itoa(maxReply) + " bytes")

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
