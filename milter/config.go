// Package milter attaches fpsafe to Postfix and Sendmail: it turns milter protocol events
// into a mail.Message (envelope, macros, headers in order, spooled body), hands it to a
// Decider, and turns the Decision back into milter actions. It holds no filtering logic,
// and it never answers reject, discard or tempfail: every message ends with CONTINUE at
// end-of-message, which both MTAs treat as accept (after any header edits or quarantine).
package milter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fpsafe/fpsafe/internal/bytesize"
)

// Config is the [milter] section.
type Config struct {
	// Listen is "inet:HOST:PORT" or "unix:/path", as in Postfix's smtpd_milters.
	Listen string `toml:"listen"`
	// SocketMode and SocketGroup apply to a unix socket ("0660", a group name or gid).
	SocketMode  string `toml:"socket_mode"`
	SocketGroup string `toml:"socket_group"`
	// AllowRemote permits an inet listen address that is not loopback.
	AllowRemote bool `toml:"allow_remote"`
	// DecisionTimeout bounds the time from end-of-message to fpsafe's answer. It must stay
	// under the MTA's own limit: Sendmail's T=R (10 s by default) and Postfix's
	// milter_content_timeout (300 s). Engines get a slice of it.
	DecisionTimeout time.Duration `toml:"decision_timeout"`
	// IdleTimeout closes an MTA connection that sends nothing for that long.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxConnections bounds concurrent MTA connections; more wait in the listen queue.
	MaxConnections int `toml:"max_connections"`
	// SpoolDir holds bodies above SpoolMemory, in files mode 0600 ("" = a private
	// directory under the system temp dir).
	SpoolDir    string        `toml:"spool_dir"`
	SpoolMemory bytesize.Size `toml:"spool_memory"`
	// SpoolMemoryTotal bounds the body bytes kept in memory by all messages in flight
	// together; past it, bodies go to spool files whatever their size. It keeps the
	// resident memory of a burst of large messages bounded.
	SpoolMemoryTotal bytesize.Size `toml:"spool_memory_total"`
	// RequestMacros asks the MTA, during negotiation, for the macros fpsafe reads (queue id,
	// client address, SASL login), so that no MTA configuration is needed for them.
	RequestMacros bool `toml:"request_macros"`
	// FastProtocol tells the MTA not to wait for fpsafe's reply to each event before
	// end-of-message (SMFIP_NR_*): one round trip per message part less. Turn it off only
	// for an MTA that refuses the negotiation (Postfix < 2.6, Sendmail < 8.14).
	FastProtocol bool `toml:"fast_protocol"`
}

// DefaultConfig returns the [milter] defaults.
func DefaultConfig() Config {
	return Config{
		Listen:           "inet:127.0.0.1:8890",
		SocketMode:       "0660",
		DecisionTimeout:  8 * time.Second,
		IdleTimeout:      10 * time.Minute,
		MaxConnections:   512,
		SpoolMemory:      1 << 20,
		SpoolMemoryTotal: 32 << 20,
		RequestMacros:    true,
		FastProtocol:     true,
	}
}

// Validate checks the section.
func (c Config) Validate() error {
	network, addr, err := parseListen(c.Listen)
	if err != nil {
		return fmt.Errorf("milter.listen: %w", err)
	}
	if network == "tcp" && !c.AllowRemote {
		host, _, _ := strings.Cut(addr, ":")
		if i := strings.LastIndex(addr, ":"); i >= 0 {
			host = strings.Trim(addr[:i], "[]")
		}
		ip, err := netip.ParseAddr(host)
		if host != "localhost" && (err != nil || !ip.IsLoopback()) {
			return fmt.Errorf("milter.listen = %q: not a loopback address; the milter protocol has no authentication, so set allow_remote = true only behind a firewall", c.Listen)
		}
	}
	if _, err := strconv.ParseUint(c.SocketMode, 8, 32); err != nil {
		return fmt.Errorf("milter.socket_mode = %q: want an octal mode such as \"0660\"", c.SocketMode)
	}
	if c.DecisionTimeout <= 0 || c.DecisionTimeout > 290*time.Second {
		return fmt.Errorf("milter.decision_timeout = %s: must be positive and under Postfix's milter_content_timeout (300s)", c.DecisionTimeout)
	}
	if c.IdleTimeout < time.Second {
		return fmt.Errorf("milter.idle_timeout = %s: must be at least 1s", c.IdleTimeout)
	}
	if c.SpoolMemoryTotal < c.SpoolMemory {
		return fmt.Errorf("milter.spool_memory_total = %s: must not be below spool_memory %s", c.SpoolMemoryTotal, c.SpoolMemory)
	}
	if c.MaxConnections < 1 {
		return fmt.Errorf("milter.max_connections = %d: must be at least 1", c.MaxConnections)
	}
	return nil
}

// parseListen splits a listen address into a network and an address for net.Listen.
func parseListen(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "unix:") && len(s) > len("unix:"):
		return "unix", strings.TrimPrefix(s, "unix:"), nil
	case strings.HasPrefix(s, "inet:"):
		addr = strings.TrimPrefix(s, "inet:")
		if i := strings.LastIndex(addr, "@"); i >= 0 { // Sendmail's inet:PORT@HOST
			addr = addr[i+1:] + ":" + addr[:i]
		}
		if _, _, err := splitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("%q: %w", s, err)
		}
		return "tcp", addr, nil
	}
	return "", "", fmt.Errorf("%q: want inet:HOST:PORT or unix:/path", s)
}

func splitHostPort(a string) (string, int, error) {
	i := strings.LastIndex(a, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("missing port")
	}
	p, err := strconv.Atoi(a[i+1:])
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", a[i+1:])
	}
	return a[:i], p, nil
}
