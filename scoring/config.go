package scoring

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
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
	Type           string        `toml:"type"`    // clamd, spamd, rspamd, icap, command
	Address        string        `toml:"address"` // inet:HOST:PORT, unix:/path, http:// URL (rspamd), icap:// URL (icap); none for command
	Timeout        time.Duration `toml:"timeout"`
	MaxSize        bytesize.Size `toml:"max_size"`
	Weight         *float64      `toml:"weight"` // nil = the type's default
	MaxConcurrency int           `toml:"max_concurrency"`

	// type = "icap" (scoring/icap; see docs/engines.md).

	// Service is the ICAP service path ("/avscan") when Address is inet:HOST:PORT or
	// unix:/path; an icap:// address carries it instead. "" = "/avscan".
	Service string `toml:"service,omitempty"`
	// VirusHeaders are the ICAP response headers that name a threat (X-Infection-Found's
	// "Threat=" or the whole value); nil = X-Infection-Found, X-Virus-ID.
	VirusHeaders []string `toml:"virus_headers,omitempty"`
	// ViolationHeaders are headers in X-Violations-Found's format (a count, then four
	// lines per threat); nil = X-Violations-Found.
	ViolationHeaders []string `toml:"violation_headers,omitempty"`

	// type = "command" (scoring/command; see docs/engines.md).

	// Command is the program and its arguments, run without a shell. The message goes to
	// standard input, or, when an argument contains "{file}", to a 0600 temp file whose
	// path replaces the placeholder.
	Command []string `toml:"command,omitempty"`
	// ExitCodes maps exit statuses ("0") to outcomes (clean, virus, spam, suspicious,
	// error); an unmapped status is an error. nil = clamdscan's 0 clean, 1 virus, 2 error.
	ExitCodes map[string]string `toml:"exit_codes,omitempty"`
	// Patterns are checked in order against the program's output; the first that matches
	// gives the outcome (see the command package for how it combines with the exit code).
	Patterns []CommandPattern `toml:"patterns,omitempty"`
	// ScorePattern is a regexp whose first group is the program's spam score; a clean run
	// whose score reaches Threshold is spam.
	ScorePattern string  `toml:"score_pattern,omitempty"`
	Threshold    float64 `toml:"threshold,omitzero"` // native spam threshold; 0 = 5
	// MaxOutput bounds the output kept (standard output and error together); the rest is
	// read and discarded so the program never blocks. 0 = 64 KiB.
	MaxOutput bytesize.Size `toml:"max_output,omitzero"`
}

// CommandPattern is one [[engine]] patterns entry of a command engine: when Match (a Go
// regexp) matches the output, the outcome is Outcome, and Detail's matches (its first
// group, or the whole match) are the verdict's details, e.g. the virus names.
type CommandPattern struct {
	Match   string `toml:"match"`
	Outcome string `toml:"outcome"`
	Detail  string `toml:"detail,omitempty"`
}

// TypeDefaults are an engine type's defaults, chosen from measurements on the lab machine
// (see docs/engines.md): spamd needs ~0.8 s for a 5 MB message and ~0.1 s for a small one;
// clamd streams 5 MB in ~50 ms and refuses more than its StreamMaxLength (25M by default);
// rspamd scans 5 MB in ~26 ms and caps messages at 50 MB itself; c-icap with clamd behind
// it adds a temp file and a clamd SCAN per message; a command engine starts a process per
// message.
type TypeDefaults struct {
	Timeout        time.Duration
	MaxSize        bytesize.Size
	Weight         float64
	MaxConcurrency int
	Scored         bool // the type gives spam scores
}

// Defaults per engine type.
var Defaults = map[string]TypeDefaults{
	"clamd":   {Timeout: 5 * time.Second, MaxSize: 25 << 20, Weight: 1, MaxConcurrency: 10},
	"spamd":   {Timeout: 6 * time.Second, MaxSize: 5 << 20, Weight: 1, MaxConcurrency: 4, Scored: true},
	"rspamd":  {Timeout: 5 * time.Second, MaxSize: 50 << 20, Weight: 1, MaxConcurrency: 16, Scored: true},
	"icap":    {Timeout: 5 * time.Second, MaxSize: 25 << 20, Weight: 1, MaxConcurrency: 10},
	"command": {Timeout: 10 * time.Second, MaxSize: 25 << 20, Weight: 1, MaxConcurrency: 4},
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
		return fmt.Errorf("%s: unknown type %q (want clamd, spamd, rspamd, icap or command)", where, e.Type)
	}
	if e.Address == "" && e.Type != "command" {
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
	if err := e.validateTypeKeys(); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

// Outcomes a command engine's exit_codes and patterns may name.
var commandOutcomes = map[string]bool{
	string(Clean): true, string(Virus): true, string(Spam): true, string(Suspicious): true, string(Error): true,
}

// validateTypeKeys checks the keys that belong to one engine type, and that no other
// type's keys are set (a typo in type would silently drop them).
func (e EngineConfig) validateTypeKeys() error {
	icapKeys := e.Service != "" || e.VirusHeaders != nil || e.ViolationHeaders != nil
	cmdKeys := e.Command != nil || e.ExitCodes != nil || e.Patterns != nil || e.ScorePattern != "" || e.Threshold != 0 || e.MaxOutput != 0
	if icapKeys && e.Type != "icap" {
		return fmt.Errorf("service, virus_headers and violation_headers are for type icap, not %s", e.Type)
	}
	if cmdKeys && e.Type != "command" {
		return fmt.Errorf("command, exit_codes, patterns, score_pattern, threshold and max_output are for type command, not %s", e.Type)
	}
	switch e.Type {
	case "icap":
		return e.validateICAP()
	case "command":
		return e.validateCommand()
	}
	return nil
}

func (e EngineConfig) validateICAP() error {
	if strings.HasPrefix(e.Address, "icap://") {
		u, err := url.Parse(e.Address)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
			return fmt.Errorf("address %q: want icap://HOST[:PORT]/SERVICE, inet:HOST:PORT or unix:/path", e.Address)
		}
		if e.Service != "" && strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("address %q names a service and service = %q names another: keep one", e.Address, e.Service)
		}
	} else if _, _, err := ParseAddress(e.Address); err != nil {
		return fmt.Errorf("%w (or icap://HOST[:PORT]/SERVICE)", err)
	}
	for _, h := range append(append([]string(nil), e.VirusHeaders...), e.ViolationHeaders...) {
		if h == "" || strings.ContainsAny(h, " \t:\r\n") {
			return fmt.Errorf("header name %q is not a header name", h)
		}
	}
	return nil
}

func (e EngineConfig) validateCommand() error {
	if e.Address != "" {
		return fmt.Errorf("address %q: a command engine has no address, it runs command", e.Address)
	}
	if len(e.Command) == 0 || e.Command[0] == "" {
		return fmt.Errorf("command is required, e.g. [\"/usr/bin/clamdscan\", \"--no-summary\", \"-\"]")
	}
	if strings.Contains(e.Command[0], "{file}") {
		return fmt.Errorf("command[0] %q: {file} may only stand in an argument", e.Command[0])
	}
	for code, out := range e.ExitCodes {
		n, err := strconv.Atoi(code)
		if err != nil || n < 0 || n > 255 {
			return fmt.Errorf("exit_codes: %q is not an exit status (0-255)", code)
		}
		if !commandOutcomes[out] {
			return fmt.Errorf("exit_codes: %q = %q: want clean, virus, spam, suspicious or error", code, out)
		}
	}
	for i, p := range e.Patterns {
		if p.Match == "" {
			return fmt.Errorf("patterns[%d]: match is required", i)
		}
		if _, err := regexp.Compile(p.Match); err != nil {
			return fmt.Errorf("patterns[%d]: match: %w", i, err)
		}
		if p.Detail != "" {
			if _, err := regexp.Compile(p.Detail); err != nil {
				return fmt.Errorf("patterns[%d]: detail: %w", i, err)
			}
		}
		if !commandOutcomes[p.Outcome] {
			return fmt.Errorf("patterns[%d]: outcome %q: want clean, virus, spam, suspicious or error", i, p.Outcome)
		}
	}
	if e.ScorePattern != "" {
		re, err := regexp.Compile(e.ScorePattern)
		if err != nil {
			return fmt.Errorf("score_pattern: %w", err)
		}
		if re.NumSubexp() < 1 {
			return fmt.Errorf("score_pattern %q: needs a group around the score, e.g. \"score=([-0-9.]+)\"", e.ScorePattern)
		}
	}
	if e.Threshold < 0 {
		return fmt.Errorf("threshold %g must not be negative", e.Threshold)
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
