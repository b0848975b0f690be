package main

// reload re-reads the config file and the allowlist on SIGHUP, and reopens the decision
// log (logrotate). An invalid config or allowlist is refused with its reason and the
// running one stays; a valid one replaces the pipeline for the next messages without
// dropping any session. [milter], [metrics] and [log] changes need a restart.
func (d *daemon) reload() {
	if d.decLog != nil {
		if err := d.decLog.Reopen(); err != nil {
			d.log.Error("SIGHUP: decision log not reopened", "err", err)
		}
	}
	old, store := d.cfg, d.store.Load()
	if store.Store != nil {
		if err := store.Reload(); err != nil {
			d.log.Error("SIGHUP: allowlist reload refused; the last good list stays", "err", err)
		} else {
			d.log.Info("SIGHUP: allowlist reloaded", "allowlist", describeStore(old.Allowlist), "entries", store.Snapshot().Len())
		}
	}
	if old.path == "" {
		d.log.Info("SIGHUP: running on the embedded default config; nothing else to reload")
		return
	}
	cfg, err := LoadConfig(old.path)
	if err != nil {
		d.log.Error("SIGHUP: new config refused; the running config stays", "err", err)
		return
	}
	if cfg.Milter != old.Milter || cfg.Metrics != old.Metrics || cfg.Log != old.Log {
		d.log.Warn("SIGHUP: [milter], [metrics] and [log] changes take effect only after a restart")
		cfg.Milter, cfg.Metrics, cfg.Log = old.Milter, old.Metrics, old.Log
	}
	next := store
	if cfg.Allowlist != old.Allowlist {
		if next, err = startStore(cfg.Allowlist, d.log); err != nil {
			d.log.Error("SIGHUP: new [allowlist] refused; the running config stays", "err", err)
			return
		}
	}
	pipe, err := buildPipeline(cfg, d.log, next.Store)
	if err != nil {
		if next != store {
			next.stop()
		}
		d.log.Error("SIGHUP: new config refused; the running config stays", "err", err)
		return
	}
	d.pipe.Store(pipe)
	d.srv.SetDecider(pipe)
	if next != store {
		d.store.Store(next)
		store.stop()
	}
	d.cfg = cfg
	d.log.Info("SIGHUP: config reloaded", "config", cfg.Source(), "engines", len(cfg.Engines), "allowlist", describeStore(cfg.Allowlist))
}
