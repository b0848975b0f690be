package scoring

import (
	"context"
	"fmt"
	"net"
	"strings"
)

// ParseAddress turns a Postfix-style address, "inet:HOST:PORT" or "unix:/path", into a
// network and address for net.Dial. A bare "HOST:PORT" is taken as inet.
func ParseAddress(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		p := strings.TrimPrefix(addr, "unix:")
		if p == "" {
			return "", "", fmt.Errorf("address %q: empty socket path", addr)
		}
		return "unix", p, nil
	case strings.HasPrefix(addr, "inet:"):
		addr = strings.TrimPrefix(addr, "inet:")
	case strings.Contains(addr, "://"):
		return "", "", fmt.Errorf("address %q: want inet:HOST:PORT or unix:/path", addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("address %q: want inet:HOST:PORT or unix:/path: %w", addr, err)
	}
	return "tcp", addr, nil
}

// Dial connects to a Postfix-style address within ctx's deadline, and sets that deadline
// on the connection so that no read or write outlives it.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	network, address, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return c, nil
}
