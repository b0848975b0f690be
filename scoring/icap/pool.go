package icap

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// idleTimeout is how long an unused connection is kept for the next request. c-icap keeps
// idle connections for 600 s (KeepAliveTimeout) by default; other servers less. A request
// on a connection that the server closed meanwhile is retried once on a new one.
const idleTimeout = 30 * time.Second

// conn is one ICAP connection with its read buffer.
type conn struct {
	net.Conn
	br     *bufio.Reader
	reused bool // it carried a request before: a failure before any answer may be a stale connection
	idle   time.Time
}

// pool holds keep-alive connections to one server and caps how many are open at once
// (in use and idle together) at limit: min(max_concurrency, the server's Max-Connections).
type pool struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu     sync.Mutex
	limit  int
	busy   int
	idle   []*conn
	wake   chan struct{} // closed (and replaced) whenever a connection is given back
	closed bool
}

func newPool(limit int, dial func(ctx context.Context) (net.Conn, error)) *pool {
	return &pool{dial: dial, limit: max(limit, 1), wake: make(chan struct{})}
}

// setLimit changes the cap; connections above it are closed as they are given back.
func (p *pool) setLimit(n int) {
	p.mu.Lock()
	p.limit = max(n, 1)
	p.signal()
	p.mu.Unlock()
}

// get returns an idle connection when reuse is true and one is there, or dials a new one;
// it waits for a free slot when limit connections are in use, until ctx ends. Without
// reuse (a retry after a stale connection) the idle connections are closed: they are
// most likely as stale as the one that failed.
func (p *pool) get(ctx context.Context, reuse bool) (*conn, error) {
	for {
		p.mu.Lock()
		if p.busy < p.limit {
			p.busy++
			var c *conn
			now := time.Now()
			for len(p.idle) > 0 && c == nil {
				ic := p.idle[len(p.idle)-1]
				p.idle = p.idle[:len(p.idle)-1]
				if reuse && now.Sub(ic.idle) < idleTimeout {
					c = ic
				} else {
					ic.Close()
				}
			}
			for p.busy+len(p.idle) > p.limit && len(p.idle) > 0 { // keep the total under the cap
				p.idle[0].Close()
				p.idle = p.idle[1:]
			}
			p.mu.Unlock()
			if c != nil {
				c.reused = true
				return c, nil
			}
			nc, err := p.dial(ctx)
			if err != nil {
				p.put(nil, false)
				return nil, err
			}
			return &conn{Conn: nc, br: bufio.NewReaderSize(nc, 32<<10)}, nil
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// put gives a connection back: kept for the next request when keep is true and there is
// room, closed otherwise. c may be nil (a failed dial).
func (p *pool) put(c *conn, keep bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy--
	if c != nil {
		if keep && !p.closed && p.busy+len(p.idle) < p.limit && c.SetDeadline(time.Time{}) == nil {
			c.idle = time.Now()
			p.idle = append(p.idle, c)
		} else {
			c.Close()
		}
	}
	p.signal()
}

// closeIdle closes the idle connections; with final, later ones are closed when given back.
func (p *pool) closeIdle(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		c.Close()
	}
	p.idle = nil
	if final {
		p.closed = true
	}
}

func (p *pool) signal() {
	close(p.wake)
	p.wake = make(chan struct{})
}
