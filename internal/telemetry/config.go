package telemetry

import (
	"fmt"
	"net"
	"net/netip"
)

// Config is the [metrics] section.
type Config struct {
	// Listen is HOST:PORT for /metrics, /healthz and /readyz; "" turns the listener off.
	Listen string `toml:"listen"`
	// AllowRemote permits a listen address that is not loopback.
	AllowRemote bool `toml:"allow_remote"`
}

// DefaultConfig listens on loopback only.
func DefaultConfig() Config { return Config{Listen: "127.0.0.1:9890"} }

// Validate checks the section.
func (c Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen = %q: want HOST:PORT: %w", c.Listen, err)
	}
	ip, perr := netip.ParseAddr(host)
	if !c.AllowRemote && host != "localhost" && (perr != nil || !ip.IsLoopback()) {
		return fmt.Errorf("metrics.listen = %q: not a loopback address; set allow_remote = true to expose metrics", c.Listen)
	}
	return nil
}
