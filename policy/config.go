package policy

import (
	"fmt"
	"path"
	"strings"
)

// Config is the [policy] section.
type Config struct {
	// TagScore: a combined score at or above it tags the message.
	TagScore float64 `toml:"tag_score"`
	// QuarantineScore: a combined score at or above it quarantines the message, but only
	// when at least QuarantineMinEngines engines say spam.
	QuarantineScore      float64 `toml:"quarantine_score"`
	QuarantineMinEngines int     `toml:"quarantine_min_engines"`
	// SubjectPrefix is put before the Subject of tagged mail; "" leaves subjects alone.
	SubjectPrefix string `toml:"subject_prefix"`
	// StripHeaders are patterns (path.Match syntax, case-insensitive) of incoming header
	// names removed before fpsafe adds its own; X-FPSafe-* is always removed.
	StripHeaders []string `toml:"strip_headers"`
	// Mode is "enforce" (the default) or "observe": in observe mode decisions are computed,
	// logged and written into the X-FPSafe-* fields, but nothing is quarantined and neither
	// the subject nor any X-Spam-* field changes. The safe way to roll fpsafe out.
	Mode string `toml:"mode"`
}

// The policy modes.
const (
	ModeEnforce = "enforce"
	ModeObserve = "observe"
)

// DefaultConfig returns the [policy] defaults.
func DefaultConfig() Config {
	return Config{
		TagScore:             5,
		QuarantineScore:      10,
		QuarantineMinEngines: 2,
		StripHeaders:         []string{"X-Spam-*", "X-Spam"},
		Mode:                 ModeEnforce,
	}
}

// Validate checks the section.
func (c Config) Validate() error {
	if c.TagScore <= 0 {
		return fmt.Errorf("policy.tag_score = %g: must be positive", c.TagScore)
	}
	if c.QuarantineScore < c.TagScore {
		return fmt.Errorf("policy.quarantine_score = %g: must not be below tag_score %g", c.QuarantineScore, c.TagScore)
	}
	if c.QuarantineMinEngines < 1 {
		return fmt.Errorf("policy.quarantine_min_engines = %d: must be at least 1", c.QuarantineMinEngines)
	}
	if c.Mode != ModeEnforce && c.Mode != ModeObserve {
		return fmt.Errorf("policy.mode = %q: want enforce or observe", c.Mode)
	}
	if strings.ContainsAny(c.SubjectPrefix, "\r\n") {
		return fmt.Errorf("policy.subject_prefix: must be one line")
	}
	for _, p := range c.StripHeaders {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("policy.strip_headers: bad pattern %q: %w", p, err)
		}
	}
	return nil
}

// stripped reports whether an incoming header of that name is removed.
func (c Config) stripped(name string) bool {
	n := strings.ToLower(name)
	if strings.HasPrefix(n, "x-fpsafe-") {
		return true
	}
	if c.Mode == ModeObserve { // observe mode leaves every other field as it came
		return false
	}
	for _, p := range c.StripHeaders {
		if ok, _ := path.Match(strings.ToLower(p), n); ok {
			return true
		}
	}
	return false
}
