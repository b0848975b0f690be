package milter

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"
)

// Listen opens the configured listener. A unix socket left behind by a previous run is
// removed first (only if it is a socket), then given the configured mode and group.
func Listen(c Config) (net.Listener, error) {
	network, addr, err := parseListen(c.Listen)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if fi, err := os.Lstat(addr); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("listen %s: %s exists and is not a socket", c.Listen, addr)
			}
			os.Remove(addr)
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", c.Listen, err)
	}
	if network == "unix" {
		if err := socketPerms(addr, c.SocketMode, c.SocketGroup); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: %w", c.Listen, err)
		}
	}
	return ln, nil
}

func socketPerms(path, mode, group string) error {
	m, err := strconv.ParseUint(mode, 8, 32)
	if err != nil {
		return fmt.Errorf("socket mode %q: %w", mode, err)
	}
	if err := os.Chmod(path, os.FileMode(m)); err != nil {
		return err
	}
	if group == "" {
		return nil
	}
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, lerr := user.LookupGroup(group)
		if lerr != nil {
			return fmt.Errorf("socket group %q: %w", group, lerr)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return os.Chown(path, -1, gid)
}

// tracker wraps a listener: it bounds concurrent connections, sets an idle read deadline
// before every read (go-milter has no timeouts of its own), and keeps the set of open
// connections so that Shutdown can drain them.
type tracker struct {
	net.Listener
	idle  time.Duration
	slots chan struct{}
	// accepted hands each new connection to the session go-milter creates for it:
	// go-milter's Serve calls NewMilter right after Accept, on the same goroutine.
	accepted chan *trackedConn

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	wg    sync.WaitGroup
}

func newTracker(ln net.Listener, idle time.Duration, max int) *tracker {
	return &tracker{Listener: ln, idle: idle, slots: make(chan struct{}, max), conns: map[*trackedConn]struct{}{}, accepted: make(chan *trackedConn, 1)}
}

func (t *tracker) Accept() (net.Conn, error) {
	t.slots <- struct{}{}
	c, err := t.Listener.Accept()
	if err != nil {
		<-t.slots
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t, r: bufio.NewReaderSize(c, 4096)}
	t.mu.Lock()
	t.conns[tc] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	select {
	case <-t.accepted: // a connection NewMilter never claimed (cannot happen with go-milter v0.5.0)
	default:
	}
	t.accepted <- tc
	return tc, nil
}

// claim returns the connection just accepted, for the session being created, or nil when
// NewMilter is called for another reason.
func (t *tracker) claim() *trackedConn {
	select {
	case c := <-t.accepted:
		return c
	default:
		return nil
	}
}

// count is the number of open MTA connections.
func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// closeAll closes every open MTA connection.
func (t *tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Conn.Close()
	}
}

// trackedConn buffers reads, so that go-milter's two reads per packet (length, then
// payload) cost one system call, and refreshes the idle deadline at most once a second
// rather than on every read (a deadline change takes the runtime's timer locks).
type trackedConn struct {
	net.Conn
	t       *tracker
	r       *bufio.Reader
	renewed time.Time
	once    sync.Once
	// onClose runs when go-milter closes the connection, on the session's goroutine: the
	// MTA went away (crash, network, idle timeout) possibly in the middle of a message.
	onClose func()
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(c.renewed) > time.Second {
		c.renewed = now
		c.Conn.SetReadDeadline(now.Add(c.t.idle))
	}
	return c.r.Read(p)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.onClose != nil {
			c.onClose()
		}
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
		<-c.t.slots
		c.t.wg.Done()
	})
	return err
}
