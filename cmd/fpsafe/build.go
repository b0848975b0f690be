package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/clamd"
	"github.com/fpsafe/fpsafe/scoring/command"
	"github.com/fpsafe/fpsafe/scoring/icap"
	"github.com/fpsafe/fpsafe/scoring/rspamd"
	"github.com/fpsafe/fpsafe/scoring/spamd"
)

// newEngine builds one engine client from its config.
func newEngine(c scoring.EngineConfig) (scoring.Engine, error) {
	switch c.Type {
	case "clamd":
		return clamd.New(c)
	case "spamd":
		return spamd.New(c)
	case "rspamd":
		return rspamd.New(c)
	case "icap":
		return icap.New(c)
	case "command":
		return command.New(c)
	}
	return nil, fmt.Errorf("engine %q: unknown type %q", c.Name, c.Type)
}

// openStore opens the configured allowlist store, or returns nil when there is none.
func openStore(ctx context.Context, c allowlist.StoreConfig, log *slog.Logger) (allowlist.Store, error) {
	switch {
	case c.File != "":
		return allowlist.NewFileStore(c.File, log)
	case c.Redis != "":
		return allowlist.NewRedisStore(ctx, c, log)
	}
	return nil, nil
}

// buildPipeline wires a config into the pipeline shared by serve and check. store may be
// nil (no allowlist).
func buildPipeline(c *Config, log *slog.Logger, store allowlist.Store) (*policy.Pipeline, error) {
	var engines []scoring.Configured
	for _, ec := range c.Engines {
		e, err := newEngine(ec)
		if err != nil {
			return nil, err
		}
		engines = append(engines, scoring.Configured{Engine: e, Config: ec})
	}
	p := &policy.Pipeline{
		Engines: scoring.NewAggregator(engines, c.Scoring, log),
		Config:  c.Policy,
		Log:     log,
	}
	if store != nil || c.Auth.Enabled {
		a, err := allowlist.NewAuthenticator(c.Auth)
		if err != nil {
			return nil, err
		}
		p.Identifier = a
	}
	if store != nil {
		p.Allowlist = store
	}
	return p, nil
}
