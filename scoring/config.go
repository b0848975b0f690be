package scoring

import (
	"fmt"
	"path"
	"time"

	"github.com/fpsafe/fpsafe/internal/bytesize"
)

// Config is the [scoring] section: how verdicts are read and how engines are protected.
type Config struct {
	// SuspiciousSignatures are patterns (path.Match syntax, e.g. "PUA.*") of AV signature
	// names known for false positives: a hit on one is Suspicious (tag), not Virus.
	SuspiciousSignatures []string `toml:"suspicious_signatures"`
	// BreakerFailures consecutive failures open an engine's circuit breaker.
	BreakerFailures int `toml:"breaker_failures"`
	// BreakerCooldown is how long an open breaker skips its engine before probing it.
	BreakerCooldown time.Duration `toml:"breaker_cooldown"`
}

// DefaultSuspiciousSignatures are ClamAV's heuristic, PUA and phishing families and the
// third-party databases best known for false positives on business mail.
var DefaultSuspiciousSignatures = []string{
	"Heuristics.*", "PUA.*", "Phishing.*", "Email.Phishing.*",
	"Sanesecurity.*", "SecuriteInfo.*", "Porcupine.*", "winnow.*", "Foxhole.*", "MiscreantPunch.*",
}

// DefaultConfig returns the [scoring] defaults.
func DefaultConfig() Config {
	return Config{
		SuspiciousSignatures: append([]string(nil), DefaultSuspiciousSignatures...),
		BreakerFailures:      5,
		BreakerCooldown:      30 * time.Second,
	}
}

// Validate checks the section.
func (c Config) Validate() error {
	for _, p := range c.SuspiciousSignatures {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("scoring.suspicious_signatures: bad pattern %q: %w", p, err)
		}
	}
	if c.BreakerFailures < 1 {
		return fmt.Errorf("scoring.breaker_failures = %d: must be at least 1", c.BreakerFailures)
	}
	if c.BreakerCooldown <= 0 {
		return fmt.Errorf("scoring.breaker_cooldown = %s: must be positive", c.BreakerCooldown)
	}
	return nil
}

// EngineConfig is one [[engine]] table. Type-specific clients read what they need from it.
type EngineConfig struct {
	Name           string        `toml:"name"`
	Type           string        `toml:"type"`    // clamd, spamd, rspamd
	Address        string        `toml:"address"` // inet:HOST:PORT, unix:/path, or http:// URL (rspamd)
	Timeout        time.Duration `toml:"timeout"`
	MaxSize        bytesize.Size `toml:"max_size"`
	Weight         *float64      `toml:"weight"` // nil = the type's default
	MaxConcurrency int           `toml:"max_concurrency"`
}

// TypeDefaults are an engine type's defaults, chosen from measurements on the lab machine
// (see docs/engines.md): spamd needs ~0.8 s for a 5 MB message and ~0.1 s for a small one;
// clamd streams 5 MB in ~50 ms and refuses more than its StreamMaxLength (25M by default);
// rspamd scans 5 MB in ~26 ms and caps messages at 50 MB itself.
type TypeDefaults struct {
	Timeout        time.Duration
	MaxSize        bytesize.Size
	Weight         float64
	MaxConcurrency int
	Scored         bool // the type gives spam scores
}

// Defaults per engine type.
var Defaults = map[string]TypeDefaults{
	"clamd":  {Timeout: 5 * time.Second, MaxSize: 25 << 20, Weight: 1, MaxConcurrency: 10},
	"spamd":  {Timeout: 6 * time.Second, MaxSize: 5 << 20, Weight: 1, MaxConcurrency: 4, Scored: true},
	"rspamd": {Timeout: 5 * time.Second, MaxSize: 50 << 20, Weight: 1, MaxConcurrency: 16, Scored: true},
}

// WithDefaults fills the zero fields of e from its type's defaults.
func (e EngineConfig) WithDefaults() EngineConfig {
	d, ok := Defaults[e.Type]
	if !ok {
		return e
	}
	if e.Timeout == 0 {
		e.Timeout = d.Timeout
	}
	if e.MaxSize == 0 {
		e.MaxSize = d.MaxSize
	}
	if e.Weight == nil {
		w := d.Weight
		e.Weight = &w
	}
	if e.MaxConcurrency == 0 {
		e.MaxConcurrency = d.MaxConcurrency
	}
	if e.Name == "" {
		e.Name = e.Type
	}
	return e
}

// Validate checks one engine table; i is its position, for messages.
func (e EngineConfig) Validate() error {
	where := fmt.Sprintf("engine %q", e.Name)
	if _, ok := Defaults[e.Type]; !ok {
		return fmt.Errorf("%s: unknown type %q (want clamd, spamd or rspamd)", where, e.Type)
	}
	if e.Address == "" {
		return fmt.Errorf("%s: address is required", where)
	}
	if e.Timeout <= 0 {
		return fmt.Errorf("%s: timeout %s must be positive", where, e.Timeout)
	}
	if e.Weight != nil && *e.Weight < 0 {
		return fmt.Errorf("%s: weight %g must not be negative", where, *e.Weight)
	}
	if e.MaxConcurrency < 1 {
		return fmt.Errorf("%s: max_concurrency %d must be at least 1", where, e.MaxConcurrency)
	}
	return nil
}

// Suspicious reports whether an AV signature name belongs to a false-positive family.
func (c Config) Suspicious(signature string) bool {
	for _, p := range c.SuspiciousSignatures {
		if ok, _ := path.Match(p, signature); ok {
			return true
		}
	}
	return false
}
