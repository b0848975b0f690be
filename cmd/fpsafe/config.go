package main

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/telemetry"
	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

//go:embed default.toml
var defaultConfig string

// Config is fpsafe's whole configuration file. Each package owns its section.
type Config struct {
	Milter    milter.Config          `toml:"milter"`
	Policy    policy.Config          `toml:"policy"`
	Scoring   scoring.Config         `toml:"scoring"`
	Engines   []scoring.EngineConfig `toml:"engine"`
	Auth      allowlist.AuthConfig   `toml:"auth"`
	Allowlist allowlist.StoreConfig  `toml:"allowlist"`
	Metrics   telemetry.Config       `toml:"metrics"`
	Log       LogConfig              `toml:"log"`

	path string // where it was read from; "" = embedded default
}

// LogConfig is the [log] section.
type LogConfig struct {
	Format string `toml:"format"` // text or json
	Level  string `toml:"level"`  // debug, info, warn, error
	// Decisions is the decision log: one JSON line per message, what `fpsafe explain`
	// reads. "" writes decision records into the operational log instead.
	Decisions string `toml:"decisions"`
}

// Source names where the config came from, for logs.
func (c *Config) Source() string {
	if c.path == "" {
		return "embedded default config"
	}
	return c.path
}

// defaults returns the built-in defaults of every section.
func defaults() Config {
	return Config{
		Milter:    milter.DefaultConfig(),
		Policy:    policy.DefaultConfig(),
		Scoring:   scoring.DefaultConfig(),
		Auth:      allowlist.DefaultAuthConfig(),
		Allowlist: allowlist.DefaultStoreConfig(),
		Metrics:   telemetry.DefaultConfig(),
		Log:       LogConfig{Format: "text", Level: "info"},
	}
}

// LoadConfig reads path ("" = the embedded default), refuses unknown keys with their line,
// fills engine defaults and validates every section.
func LoadConfig(path string) (*Config, error) {
	text, name := defaultConfig, "embedded default config"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		text, name = string(b), path
	}
	c, err := parseConfig(text, name)
	if err != nil {
		return nil, err
	}
	c.path = path
	return c, nil
}

func parseConfig(text, name string) (*Config, error) {
	c := defaults()
	md, err := toml.Decode(text, &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return nil, fmt.Errorf("%s:%d: unknown key %q", name, keyLine(text, k), k.String())
	}
	for i := range c.Engines {
		c.Engines[i] = c.Engines[i].WithDefaults()
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s%s: %w", name, errLine(text, err), err)
	}
	return &c, nil
}

var (
	sectionKey = regexp.MustCompile(`\b(milter|policy|scoring|log|auth|allowlist|metrics)(?:\.|: )([a-z_]+)`)
	engineName = regexp.MustCompile(`^engine "([^"]*)"`)
)

// errLine finds the line a validation error is about (":12"), or "" when it cannot tell:
// the key the message names, or the name of the engine it names.
func errLine(text string, err error) string {
	msg := err.Error()
	if m := sectionKey.FindStringSubmatch(msg); m != nil {
		if n := keyLine(text, toml.Key{m[1], m[2]}); n > 0 {
			return fmt.Sprintf(":%d", n)
		}
	}
	if m := engineName.FindStringSubmatch(msg); m != nil {
		re := regexp.MustCompile(`^\s*name\s*=\s*"` + regexp.QuoteMeta(m[1]) + `"`)
		for i, line := range strings.Split(text, "\n") {
			if re.MatchString(line) {
				return fmt.Sprintf(":%d", i+1)
			}
		}
	}
	return ""
}

// Validate checks every section and the engines as a set.
func (c *Config) Validate() error {
	errs := []error{c.Milter.Validate(), c.Policy.Validate(), c.Scoring.Validate(), c.Auth.Validate(), c.Allowlist.Validate(), c.Metrics.Validate(), c.Log.validate()}
	seen := map[string]bool{}
	for _, e := range c.Engines {
		errs = append(errs, e.Validate())
		if seen[e.Name] {
			errs = append(errs, fmt.Errorf("engine %q: name used twice", e.Name))
		}
		seen[e.Name] = true
	}
	return errors.Join(errs...)
}

func (l LogConfig) validate() error {
	if l.Format != "text" && l.Format != "json" {
		return fmt.Errorf("log.format = %q: want text or json", l.Format)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return fmt.Errorf("log.level = %q: want debug, info, warn or error", l.Level)
	}
	return nil
}

// keyLine finds the line where an undecoded key is written: the first line that assigns
// its last component after the header of its table. BurntSushi/toml does not expose key
// positions, and a typo must be reported where the admin can find it.
func keyLine(text string, k toml.Key) int {
	last := regexp.QuoteMeta(k[len(k)-1])
	assign := regexp.MustCompile(`^\s*("?)` + last + `("?)\s*=`)
	header := regexp.MustCompile(`^\s*\[\[?\s*` + regexp.QuoteMeta(strings.Join(k[:max(len(k)-1, 0)], ".")) + `\s*\]\]?`)
	table := regexp.MustCompile(`^\s*\[\[?\s*` + last + `\s*\]\]?`)
	inTable := len(k) == 1
	for i, line := range strings.Split(text, "\n") {
		if len(k) > 1 && header.MatchString(line) {
			inTable = true
		}
		if inTable && (assign.MatchString(line) || table.MatchString(line)) {
			return i + 1
		}
	}
	return 0
}
