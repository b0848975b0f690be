package main

import (
	"fmt"
	"log/slog"

	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/clamd"
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
	}
	return nil, fmt.Errorf("engine %q: unknown type %q", c.Name, c.Type)
}

// buildPipeline wires a config into the pipeline shared by serve and check.
func buildPipeline(c *Config, log *slog.Logger) (*policy.Pipeline, error) {
	var engines []scoring.Configured
	for _, ec := range c.Engines {
		e, err := newEngine(ec)
		if err != nil {
			return nil, err
		}
		engines = append(engines, scoring.Configured{Engine: e, Config: ec})
	}
	return &policy.Pipeline{
		Engines: scoring.NewAggregator(engines, c.Scoring, log),
		Config:  c.Policy,
		Log:     log,
	}, nil
}
