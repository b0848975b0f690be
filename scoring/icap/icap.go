// Package icap is fpsafe's ICAP client (RFC 3507), for anti-virus servers that speak ICAP:
// c-icap with its virus_scan service, and the commercial gateways' scanners. Each message
// is sent as the body of an HTTP response (RESPMOD) and the server's answer is read as a
// verdict, never as a change: whatever body the server sends back is read (bounded) only
// to tell whether it replaced the message, then dropped. fpsafe never modifies a body.
//
// The client asks the service's OPTIONS on first use and again when they expire (the
// server's Options-TTL, 5 minutes when it sends none, and at once when an answer carries
// a new ISTag): Preview, Allow: 204, Max-Connections, Methods and ISTag. It sends a
// preview when the server asks for one, finishes after "100 Continue", takes 204 as
// clean, and keeps connections alive in a pool of at most min(max_concurrency,
// Max-Connections). Every failure to get a complete ICAP/1.0 answer is an error, never
// Clean.
package icap

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

const (
	// DefaultService is the service path when the address names none: c-icap's (and many
	// clients') alias for its virus_scan service.
	DefaultService = "/avscan"
	// DefaultPort is ICAP's registered port.
	DefaultPort = "1344"
	// DefaultOptionsTTL is how long OPTIONS are trusted when the server sends no Options-TTL.
	DefaultOptionsTTL = 5 * time.Minute
	// minOptionsTTL keeps a server that says "Options-TTL: 0" from doubling every request.
	minOptionsTTL = 10 * time.Second
	// optionsRetry is how long stale OPTIONS are used after a failed refresh.
	optionsRetry = 30 * time.Second
	// chunkSize is the length of the body chunks sent.
	chunkSize = 32 << 10
)

// Options are what the service's OPTIONS answer said.
type Options struct {
	ISTag          string        // the service's state tag: it changes with its signatures
	Service        string        // the Service header, e.g. "C-ICAP/0.5.10 server - Antivirus service"
	Methods        []string      // e.g. RESPMOD, REQMOD
	Preview        int           // bytes to send first; -1 when the server wants no preview
	Allow204       bool          // the server may answer 204 outside a preview
	MaxConnections int           // 0 when the server set no limit
	TTL            time.Duration // how long these options are valid
	Fetched        time.Time
}

// Client scans messages with one ICAP service. It is safe for concurrent use.
type Client struct {
	name    string
	addr    string // as configured, for messages
	uri     string // icap://host[:port]/service[?args], the request URI
	host    string // the Host header
	timeout time.Duration
	maxConc int
	det     detector
	pool    *pool

	mu       sync.Mutex
	opts     Options
	have     bool
	expires  time.Time
	fetching chan struct{} // one OPTIONS request at a time
}

// New builds a client for cfg. cfg.Address is icap://HOST[:PORT]/SERVICE (port 1344 by
// default; the service may carry arguments, "?allow204=on"), or inet:HOST:PORT or
// unix:/path with the path in cfg.Service (DefaultService when empty). cfg should carry
// its defaults (cfg.WithDefaults()); MaxConcurrency caps the connections.
func New(cfg scoring.EngineConfig) (*Client, error) {
	network, dialAddr, uri, host, err := parseTarget(cfg.Address, cfg.Service)
	if err != nil {
		return nil, fmt.Errorf("icap engine %q: %w", cfg.Name, err)
	}
	c := &Client{
		name:     cmp.Or(cfg.Name, "icap"),
		addr:     cfg.Address,
		uri:      uri,
		host:     host,
		timeout:  cmp.Or(cfg.Timeout, scoring.Defaults["icap"].Timeout),
		maxConc:  max(cmp.Or(cfg.MaxConcurrency, scoring.Defaults["icap"].MaxConcurrency), 1),
		det:      newDetector(cfg.VirusHeaders, cfg.ViolationHeaders),
		fetching: make(chan struct{}, 1),
	}
	var d net.Dialer
	c.pool = newPool(c.maxConc, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, network, dialAddr)
	})
	return c, nil
}

// parseTarget turns an engine address and service into what to dial and the request URI.
func parseTarget(addr, service string) (network, dialAddr, uri, host string, err error) {
	if strings.HasPrefix(addr, "icap://") {
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
			return "", "", "", "", fmt.Errorf("address %q: want icap://HOST[:PORT]/SERVICE", addr)
		}
		path := u.EscapedPath()
		if u.RawQuery != "" {
			path += "?" + u.RawQuery
		}
		if strings.Trim(path, "/") == "" {
			path = cmp.Or(service, DefaultService)
		} else if service != "" {
			return "", "", "", "", fmt.Errorf("address %q names a service and service = %q names another: keep one", addr, service)
		}
		host = u.Host
		dialAddr = u.Host
		if u.Port() == "" {
			dialAddr = net.JoinHostPort(u.Hostname(), DefaultPort)
		}
		network = "tcp"
		service = path
	} else {
		network, dialAddr, err = scoring.ParseAddress(addr)
		if err != nil {
			return "", "", "", "", fmt.Errorf("%w (or icap://HOST[:PORT]/SERVICE)", err)
		}
		host = dialAddr
		if network == "unix" {
			host = "localhost"
		}
		service = cmp.Or(service, DefaultService)
	}
	if !strings.HasPrefix(service, "/") {
		service = "/" + service
	}
	if strings.ContainsAny(service, " \t\r\n") {
		return "", "", "", "", fmt.Errorf("service %q: no spaces or line breaks allowed", service)
	}
	return network, dialAddr, "icap://" + host + service, host, nil
}

// Name is the engine's configured name; it implements scoring.Engine.
func (c *Client) Name() string { return c.name }

// URI is the request URI, e.g. "icap://127.0.0.1:1344/avscan".
func (c *Client) URI() string { return c.uri }

// CloseIdleConnections closes pooled connections not in use, e.g. when the engine is
// dropped on a reload. The client stays usable.
func (c *Client) CloseIdleConnections() { c.pool.closeIdle(false) }

// Scan sends m to the service and returns Clean (with "istag=..." as its detail), Virus
// with the threat names, or Suspicious for policy and container violations
// (X-Infection-Found Type=1 or 2). It implements scoring.Engine.
func (c *Client) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	o, err := c.options(ctx)
	if err != nil {
		return scoring.Verdict{}, err
	}
	if len(o.Methods) > 0 && !hasToken(o.Methods, "RESPMOD") {
		return scoring.Verdict{}, fmt.Errorf("icap %s: service %s offers %s, not RESPMOD", c.addr, c.uri, strings.Join(o.Methods, ", "))
	}
	v, err := c.respmod(ctx, m, o, true)
	if errors.Is(err, errStale) && ctx.Err() == nil {
		v, err = c.respmod(ctx, m, o, false) // the server closed the idle connection: once more, on a new one
	}
	return v, err
}

// Ping asks the service's OPTIONS (and keeps them); it implements scoring.Pinger, the
// circuit breaker's health probe.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	o, err := c.fetchOptions(ctx)
	if err != nil {
		return err
	}
	c.store(o)
	if len(o.Methods) > 0 && !hasToken(o.Methods, "RESPMOD") {
		return fmt.Errorf("icap %s: service %s offers %s, not RESPMOD", c.addr, c.uri, strings.Join(o.Methods, ", "))
	}
	return nil
}

// Options returns the service's OPTIONS, asking the server when they are missing or old.
func (c *Client) Options(ctx context.Context) (Options, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.options(ctx)
}

// bound gives ctx the configured timeout when it has no deadline of its own.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// options returns fresh OPTIONS, fetching them when needed. While one scan refreshes
// them, the others go on with the old ones; a failed refresh keeps the old ones for
// optionsRetry (the scan itself will tell whether the server is gone).
func (c *Client) options(ctx context.Context) (Options, error) {
	c.mu.Lock()
	o, have, fresh := c.opts, c.have, c.have && time.Now().Before(c.expires)
	c.mu.Unlock()
	if fresh {
		return o, nil
	}
	if have {
		select {
		case c.fetching <- struct{}{}:
		default:
			return o, nil
		}
	} else {
		select {
		case c.fetching <- struct{}{}:
		case <-ctx.Done():
			return Options{}, c.fail(ctx, "wait for OPTIONS", ctx.Err())
		}
	}
	defer func() { <-c.fetching }()
	c.mu.Lock()
	if c.have && time.Now().Before(c.expires) {
		o = c.opts
		c.mu.Unlock()
		return o, nil
	}
	c.mu.Unlock()
	n, err := c.fetchOptions(ctx)
	if err != nil {
		if have {
			c.mu.Lock()
			c.expires = time.Now().Add(optionsRetry)
			c.mu.Unlock()
			return o, nil
		}
		return Options{}, err
	}
	c.store(n)
	return n, nil
}

// store keeps o and resizes the pool to min(max_concurrency, Max-Connections).
func (c *Client) store(o Options) {
	c.mu.Lock()
	c.opts, c.have, c.expires = o, true, o.Fetched.Add(o.TTL)
	c.mu.Unlock()
	limit := c.maxConc
	if o.MaxConnections > 0 {
		limit = min(limit, o.MaxConnections)
	}
	c.pool.setLimit(limit)
}

// sawISTag expires the OPTIONS when an answer carries another ISTag: the service changed
// (new signatures, new configuration) and its options may have too.
func (c *Client) sawISTag(tag string) {
	if tag == "" {
		return
	}
	c.mu.Lock()
	if c.have && c.opts.ISTag != tag {
		c.expires = time.Time{}
	}
	c.mu.Unlock()
}

// fetchOptions sends OPTIONS and parses the answer.
func (c *Client) fetchOptions(ctx context.Context) (Options, error) {
	o, err := c.optionsOnce(ctx, true)
	if errors.Is(err, errStale) && ctx.Err() == nil {
		o, err = c.optionsOnce(ctx, false)
	}
	return o, err
}

func (c *Client) optionsOnce(ctx context.Context, reuse bool) (Options, error) {
	cn, err := c.pool.get(ctx, reuse)
	if err != nil {
		return Options{}, c.fail(ctx, "connect", err)
	}
	keep := false
	defer func() { c.pool.put(cn, keep) }()
	stop := watch(ctx, cn)
	req := "OPTIONS " + c.uri + " ICAP/1.0\r\nHost: " + c.host + "\r\nUser-Agent: fpsafe\r\nEncapsulated: null-body=0\r\n\r\n"
	if _, err := io.WriteString(cn, req); err != nil {
		return Options{}, c.failConn(ctx, cn, "send OPTIONS", err)
	}
	resp, err := readResponse(cn.br)
	if err != nil {
		return Options{}, c.failConn(ctx, cn, "read OPTIONS answer", err)
	}
	if resp.code != 200 {
		return Options{}, fmt.Errorf("icap %s: OPTIONS %s: ICAP %d %s", c.addr, c.uri, resp.code, clip(resp.reason))
	}
	if enc := resp.h.get("Encapsulated"); enc != "" {
		secs, err := parseEncapsulated(enc)
		if err != nil {
			return Options{}, fmt.Errorf("icap %s: OPTIONS: %w", c.addr, err)
		}
		if secs[len(secs)-1].name != "null-body" {
			if _, err := readEncapsulated(cn.br, secs); err != nil {
				return Options{}, c.fail(ctx, "OPTIONS", err)
			}
			if _, err := readChunked(cn.br, io.Discard, maxOptionBody); err != nil {
				return Options{}, c.fail(ctx, "read OPTIONS body", err)
			}
		}
	}
	o := parseOptions(resp.h, time.Now())
	keep = stop() && !resp.h.has("Connection", "close")
	return o, nil
}

// parseOptions reads the headers of an OPTIONS answer.
func parseOptions(h header, now time.Time) Options {
	o := Options{
		ISTag:    unquote(h.get("ISTag")),
		Service:  clip(h.get("Service")),
		Preview:  -1,
		Allow204: h.has("Allow", "204"),
		TTL:      DefaultOptionsTTL,
		Fetched:  now,
	}
	for _, m := range strings.Split(h.get("Methods"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			o.Methods = append(o.Methods, m)
		}
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h.get("Preview"))); err == nil && n >= 0 {
		o.Preview = min(n, 1<<20)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h.get("Max-Connections"))); err == nil && n > 0 {
		o.MaxConnections = n
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h.get("Options-TTL"))); err == nil && n >= 0 {
		o.TTL = max(time.Duration(n)*time.Second, minOptionsTTL)
	}
	return o
}

// errStale marks a failure on a reused connection before any answer: the server most
// likely closed it while it was idle, and the request can be sent again on a new one.
var errStale = errors.New("stale keep-alive connection")

// respmod sends one RESPMOD request for m and reads the verdict.
func (c *Client) respmod(ctx context.Context, m *mail.Message, o Options, reuse bool) (scoring.Verdict, error) {
	body, err := m.Open()
	if err != nil {
		return scoring.Verdict{}, fmt.Errorf("icap %s: open message: %w", c.addr, err)
	}
	defer body.Close()
	size := m.Size()

	cn, err := c.pool.get(ctx, reuse)
	if err != nil {
		return scoring.Verdict{}, c.fail(ctx, "connect", err)
	}
	keep := false
	defer func() { c.pool.put(cn, keep) }()
	stop := watch(ctx, cn)

	sent := sha256.New()
	src := io.TeeReader(body, sent)
	bw := bufio.NewWriterSize(cn, chunkSize+64)
	hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: message/rfc822\r\nContent-Length: %d\r\n\r\n", size)
	fmt.Fprintf(bw, "RESPMOD %s ICAP/1.0\r\nHost: %s\r\nUser-Agent: fpsafe\r\nAllow: 204\r\n", c.uri, c.host)
	if o.Preview >= 0 {
		fmt.Fprintf(bw, "Preview: %d\r\n", o.Preview)
	}
	fmt.Fprintf(bw, "Encapsulated: res-hdr=0, res-body=%d\r\n\r\n%s", len(hdr), hdr)

	s := &sender{cn: cn}
	var resp *response
	rest := src
	if o.Preview >= 0 {
		buf := make([]byte, o.Preview+1)
		n, err := io.ReadFull(src, buf)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return scoring.Verdict{}, fmt.Errorf("icap %s: read message: %w", c.addr, err)
		}
		ieof := n <= o.Preview
		if !ieof {
			rest = io.MultiReader(bytes.NewReader(buf[o.Preview:n]), src)
			n = o.Preview
		}
		writeChunk(bw, buf[:n])
		if ieof {
			bw.WriteString("0; ieof\r\n\r\n")
			s.state = sentAll
		} else {
			bw.WriteString("0\r\n\r\n")
			s.state = sentPreview
		}
		if err := bw.Flush(); err != nil {
			return scoring.Verdict{}, c.failConn(ctx, cn, "send preview", err)
		}
		resp, err = readResponse(cn.br)
		if err != nil {
			return scoring.Verdict{}, c.failConn(ctx, cn, "read preview answer", err)
		}
		if resp.code == 100 {
			if ieof {
				return scoring.Verdict{}, fmt.Errorf("icap %s: %w: 100 Continue after the whole message (ieof)", c.addr, errProtocol)
			}
			resp = nil
		}
	}
	if resp == nil {
		// Write the rest while reading: a server may answer (and stream its answer) before
		// it has read everything, and must not wait on us while we wait on it.
		s.start(bw, rest)
		resp, err = readResponse(cn.br)
		if err != nil {
			s.abort()
			return scoring.Verdict{}, c.failConn(ctx, cn, "read answer", err)
		}
	}
	v, drained, err := c.answer(cn, resp, size, sent, s)
	s.abort() // a no-op unless answer failed before the writer was done
	if err != nil {
		return scoring.Verdict{}, c.fail(ctx, "RESPMOD", err)
	}
	keep = stop() && drained && s.state != sentPart && !resp.h.has("Connection", "close")
	return v, nil
}

// What of the message a request carried.
const (
	sentAll     = iota + 1 // all of it
	sentPreview            // the preview only: the server answered without asking for the rest
	sentPart               // the writer failed part-way: the server answered before reading it all
)

// sender writes the part of the request after the preview, concurrently with the reading
// of the answer.
type sender struct {
	cn    *conn
	done  chan error // nil when no writer is running
	state int
	err   error // reading the message failed
}

func (s *sender) start(w *bufio.Writer, r io.Reader) {
	s.done = make(chan error, 1)
	go func() { s.done <- writeBody(w, r) }()
}

// finish waits for the writer, once the answer is complete, and says what was sent. A
// writer still blocked then means that the server answered without reading everything:
// a past write deadline unblocks it, and fails only writes not yet made.
func (s *sender) finish() (int, error) {
	if s.done != nil {
		s.cn.SetWriteDeadline(time.Unix(1, 0))
		err := <-s.done
		s.done = nil
		s.state = sentAll
		if err != nil {
			s.state = sentPart
			if !isNetError(err) {
				s.err = err
			}
		}
	}
	return s.state, s.err
}

// abort stops a writer that is still running, by closing the connection.
func (s *sender) abort() {
	if s.done != nil {
		s.cn.Close()
		s.finish()
	}
}

// answer turns a final RESPMOD answer into a verdict. For a 200 it reads the encapsulated
// HTTP status and the body (hashing it, bounded, then dropping it) to tell whether the
// server replaced the message. drained reports whether the connection is at the end of
// the answer, ready for another request.
func (c *Client) answer(cn *conn, resp *response, size int64, sent hash.Hash, s *sender) (v scoring.Verdict, drained bool, err error) {
	tag := unquote(resp.h.get("ISTag"))
	c.sawISTag(tag)
	found := c.det.find(resp.h)
	switch resp.code {
	case 204:
		state, err := s.finish()
		if err != nil {
			return v, false, err
		}
		enc := resp.h.get("Encapsulated")
		drained = enc == "" || strings.EqualFold(strings.ReplaceAll(enc, " ", ""), "null-body=0")
		if found.any() {
			return detection(found), drained, nil
		}
		if state == sentPart {
			return v, false, errors.New("204 before the whole message was sent")
		}
		return clean(tag), drained, nil // after the whole message, or after a preview
	case 200:
		if found.any() { // the body is the server's block page: not worth reading
			if _, err := s.finish(); err != nil {
				return v, false, err
			}
			return detection(found), false, nil
		}
		secs, err := parseEncapsulated(resp.h.get("Encapsulated"))
		if err != nil {
			return v, false, err
		}
		e, err := readEncapsulated(cn.br, secs)
		if err != nil {
			return v, false, err
		}
		got := sha256.New()
		var n int64
		switch e.body {
		case "res-body":
			// An unmodified echo is as long as the message; a block page is short. A body
			// longer than both is no answer we understand.
			n, err = readChunked(cn.br, got, size+bodySlack)
			if errors.Is(err, errTooLong) {
				return v, false, fmt.Errorf("answer body longer than the message plus %d bytes", bodySlack)
			}
			if err != nil {
				return v, false, fmt.Errorf("read answer body: %w", err)
			}
			drained = true
		case "null-body":
			drained = true
		default:
			return v, false, fmt.Errorf("%w: %s in a RESPMOD answer", errProtocol, e.body)
		}
		state, err := s.finish()
		if err != nil {
			return v, false, err
		}
		switch {
		case e.httpStatus == 0:
			return v, false, fmt.Errorf("%w: 200 answer without an encapsulated HTTP response", errProtocol)
		case e.httpStatus == 403:
			return unnamed("HTTP 403 block page"), drained, nil
		case e.httpStatus != 200:
			return v, false, fmt.Errorf("encapsulated HTTP status %d without a threat name", e.httpStatus)
		case state != sentAll:
			return v, false, errors.New("200 answer before the whole message was sent")
		}
		if e.body != "res-body" || n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
			return unnamed("body replaced"), drained, nil
		}
		return clean(tag), drained, nil
	case 201, 403:
		// 403 is c-icap's answer to an ACL denial as well as some servers' block, and
		// Symantec answers 201 for what it blocked or repaired: only a named threat is a
		// detection; without one, the status alone must not quarantine mail.
		if _, err := s.finish(); err != nil {
			return v, false, err
		}
		if found.any() {
			return detection(found), false, nil
		}
		return v, false, fmt.Errorf("ICAP %d %s without a threat name (access denied?)", resp.code, clip(resp.reason))
	}
	return v, false, fmt.Errorf("ICAP %d %s", resp.code, clip(resp.reason))
}

func clean(istag string) scoring.Verdict {
	v := scoring.Verdict{Outcome: scoring.Clean}
	if istag != "" {
		v.Details = []string{"istag=" + istag}
	}
	return v
}

// detection is Virus when any virus is named, else Suspicious (only policy or container
// violations). The details are the threat names only, so that the aggregator's
// suspicious_signatures and X-FPSafe-Virus see names.
func detection(f findings) scoring.Verdict {
	if len(f.viruses) > 0 {
		return scoring.Verdict{Outcome: scoring.Virus, Details: append(f.viruses, f.violations...)}
	}
	return scoring.Verdict{Outcome: scoring.Suspicious, Details: f.violations}
}

// unnamed is the verdict for a blocked or replaced message whose answer names no threat.
func unnamed(why string) scoring.Verdict {
	return scoring.Verdict{Outcome: scoring.Virus, Details: []string{"unnamed threat (" + why + ")"}}
}

// writeChunk writes one chunk; an empty one is not written (it would end the body). The
// error is the writer's sticky one: a failed write stays failed.
func writeChunk(w *bufio.Writer, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	w.WriteString(strconv.FormatInt(int64(len(p)), 16))
	w.WriteString("\r\n")
	w.Write(p)
	_, err := w.WriteString("\r\n")
	return err
}

// writeBody sends r as chunks and the final zero chunk. Errors writing to the connection
// are *net.OpError; any other error is the message's.
func writeBody(w *bufio.Writer, r io.Reader) error {
	buf := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(r, buf)
		if werr := writeChunk(w, buf[:n]); werr != nil {
			return werr
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
	}
	w.WriteString("0\r\n\r\n")
	return w.Flush()
}

// watch sets ctx's deadline on the connection and makes a cancelled ctx end blocked reads
// and writes. The returned stop reports whether ctx was still live, i.e. whether the
// connection's deadline is still only the one watch set.
func watch(ctx context.Context, cn *conn) func() bool {
	if dl, ok := ctx.Deadline(); ok {
		cn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { cn.SetDeadline(time.Unix(1, 0)) })
}

// failConn wraps an error on cn; on a reused connection with no answer yet it is errStale.
func (c *Client) failConn(ctx context.Context, cn *conn, what string, err error) error {
	if cn.reused && ctx.Err() == nil && (errors.Is(err, errNoAnswer) || isReset(err)) {
		return fmt.Errorf("icap %s: %s: %w: %w", c.addr, what, errStale, err)
	}
	return c.fail(ctx, what, err)
}

// fail wraps an error with the address, adding ctx's error when ctx ended, so that the
// aggregator reports a deadline as a timeout.
func (c *Client) fail(ctx context.Context, what string, err error) error {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded // the conn's deadline fired just before ctx's timer
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("icap %s: %s: %w: %w", c.addr, what, cerr, err)
	}
	return fmt.Errorf("icap %s: %s: %w", c.addr, what, err)
}

func isNetError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func hasToken(list []string, tok string) bool {
	for _, t := range list {
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return clip(s)
}
