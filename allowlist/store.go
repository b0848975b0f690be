package allowlist

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store is where an allowlist lives: a TOML file (FileStore) or Redis (RedisStore), for a
// fleet of MTAs sharing one list. Lookups are always served from an in-memory snapshot;
// a store that cannot reach its backend keeps serving the last good snapshot.
type Store interface {
	// Snapshot is the list in force now; never nil once the store is open.
	Snapshot() *List
	// Lookup answers from the current snapshot (policy.Allowlist).
	Lookup(id Identity, rcpts []string, now time.Time) *Match
	// Add, Remove and Import change the list and append to its audit trail.
	Add(e Entry, who string) error
	Remove(id, who, reason string) error
	Import(entries []Entry, who, reason string) error
	// Reload re-reads the backend now (SIGHUP); an invalid list is refused and the last
	// good one stays.
	Reload() error
	// Run keeps the snapshot fresh until ctx ends.
	Run(ctx context.Context) error
	// LoadedAt is when the current snapshot was loaded; LastError why the last refresh
	// failed (nil when it succeeded).
	LoadedAt() time.Time
	LastError() error
	// Audit returns the audit trail, oldest first.
	Audit() ([]AuditRecord, error)
}

// StoreConfig is the [allowlist] section. At most one of File and Redis is set; neither
// means no allowlist.
type StoreConfig struct {
	File    string        `toml:"file"`    // path of the TOML list
	Redis   string        `toml:"redis"`   // redis://[user:password@]host:port/db, rediss:// for TLS
	Refresh time.Duration `toml:"refresh"` // Redis: full reload period, besides change notifications
	Prefix  string        `toml:"prefix"`  // Redis: key prefix, e.g. "fpsafe:allowlist"
}

// DefaultStoreConfig returns the [allowlist] defaults.
func DefaultStoreConfig() StoreConfig {
	return StoreConfig{Refresh: 30 * time.Second, Prefix: "fpsafe:allowlist"}
}

// Validate checks the section.
func (c StoreConfig) Validate() error {
	if c.File != "" && c.Redis != "" {
		return errors.New("allowlist: set file or redis, not both")
	}
	if c.Refresh < time.Second {
		return fmt.Errorf("allowlist.refresh = %s: must be at least 1s", c.Refresh)
	}
	if c.Prefix == "" {
		return errors.New("allowlist.prefix: must not be empty")
	}
	return nil
}

// Enabled reports whether an allowlist is configured.
func (c StoreConfig) Enabled() bool { return c.File != "" || c.Redis != "" }
