package main

import (
	"log/slog"

	"github.com/fpsafe/fpsafe/milter"
)

// reload re-reads the config file on SIGHUP. An invalid config is refused with its reason
// and the running one stays; a valid one replaces the pipeline for the next messages
// without dropping any session. Listener settings need a restart.
func reload(old *Config, srv *milter.Server, log *slog.Logger) *Config {
	if old.path == "" {
		log.Info("SIGHUP: running on the embedded default config; nothing to reload")
		return old
	}
	cfg, err := LoadConfig(old.path)
	if err != nil {
		log.Error("SIGHUP: new config refused; the running config stays", "err", err)
		return old
	}
	pipe, err := buildPipeline(cfg, log)
	if err != nil {
		log.Error("SIGHUP: new config refused; the running config stays", "err", err)
		return old
	}
	if cfg.Milter != old.Milter {
		log.Warn("SIGHUP: [milter] changes take effect only after a restart")
		cfg.Milter = old.Milter
	}
	srv.SetDecider(pipe)
	log.Info("SIGHUP: config reloaded", "config", cfg.Source(), "engines", len(cfg.Engines))
	return cfg
}
