package main

// reload re-reads the config file and the allowlist on SIGHUP. An invalid config or
// allowlist is refused with its reason and the running one stays; a valid one replaces the
// pipeline for the next messages without dropping any session. [milter] changes need a
// restart.
func (d *daemon) reload() {
	old := d.cfg
	if d.store.Store != nil {
		if err := d.store.Reload(); err != nil {
			d.log.Error("SIGHUP: allowlist reload refused; the last good list stays", "err", err)
		} else {
			d.log.Info("SIGHUP: allowlist reloaded", "allowlist", describeStore(old.Allowlist), "entries", d.store.Snapshot().Len())
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
	if cfg.Milter != old.Milter {
		d.log.Warn("SIGHUP: [milter] changes take effect only after a restart")
		cfg.Milter = old.Milter
	}
	store := d.store
	if cfg.Allowlist != old.Allowlist {
		if store, err = startStore(cfg.Allowlist, d.log); err != nil {
			d.log.Error("SIGHUP: new [allowlist] refused; the running config stays", "err", err)
			return
		}
	}
	pipe, err := buildPipeline(cfg, d.log, store.Store)
	if err != nil {
		if store != d.store {
			store.stop()
		}
		d.log.Error("SIGHUP: new config refused; the running config stays", "err", err)
		return
	}
	d.srv.SetDecider(pipe)
	if store != d.store {
		d.store.stop()
		d.store = store
	}
	d.cfg = cfg
	d.log.Info("SIGHUP: config reloaded", "config", cfg.Source(), "engines", len(cfg.Engines), "allowlist", describeStore(cfg.Allowlist))
}
