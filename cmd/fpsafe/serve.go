package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/milter"
)

// drainTimeout bounds how long SIGTERM waits for messages in flight.
const drainTimeout = 30 * time.Second

// daemon is a running `fpsafe serve`: the milter server, the config in force and the
// allowlist store it keeps fresh.
type daemon struct {
	cfg   *Config
	log   *slog.Logger
	srv   *milter.Server
	store *runningStore
}

// runningStore is an allowlist store kept fresh by its Run goroutine.
type runningStore struct {
	allowlist.Store // nil when no allowlist is configured
	cancel          context.CancelFunc
	ended           chan struct{}
}

func cmdServe(args []string, stderr io.Writer) int {
	fs, cfgPath := newFlagSet("serve", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	routeStdLog(log)
	allowlist.SetRedisLogger(log)
	if cfg.path == "" {
		log.Warn("no -config given: running on the embedded default config (no engines, no allowlist); every message is delivered as unscanned")
	}
	d := &daemon{cfg: cfg, log: log}
	if d.store, err = startStore(cfg.Allowlist, log); err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 2
	}
	defer func() { d.store.stop() }()
	pipe, err := buildPipeline(cfg, log, d.store.Store)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 2
	}
	if d.srv, err = milter.New(cfg.Milter, pipe, log); err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 1
	}
	ln, err := milter.Listen(cfg.Milter)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 1
	}
	log.Info("fpsafe listening", "listen", cfg.Milter.Listen, "config", cfg.Source(), "engines", len(cfg.Engines),
		"allowlist", describeStore(cfg.Allowlist), "version", version)
	return d.run(ln)
}

// run serves until SIGTERM/SIGINT, reloading on SIGHUP.
func (d *daemon) run(ln net.Listener) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- d.srv.Serve(ln) }()
	for {
		select {
		case err := <-served:
			if err != nil {
				d.log.Error("milter server stopped", "err", err)
				return 1
			}
			return 0
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reload()
				continue
			}
			d.log.Info("stopping: draining messages in flight", "signal", sig.String(), "in_flight", d.srv.InFlight(), "deadline", drainTimeout)
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			err := d.srv.Shutdown(ctx)
			cancel()
			if err != nil {
				d.log.Warn("shutdown deadline passed", "err", err)
			}
			<-served
			d.log.Info("stopped")
			return 0
		}
	}
}

// startStore opens the configured allowlist store and keeps it fresh in the background.
func startStore(c allowlist.StoreConfig, log *slog.Logger) (*runningStore, error) {
	ctx, cancel := context.WithCancel(context.Background())
	store, err := openStore(ctx, c, log)
	if err != nil {
		cancel()
		return nil, err
	}
	rs := &runningStore{Store: store, cancel: cancel, ended: make(chan struct{})}
	if store == nil {
		close(rs.ended)
		return rs, nil
	}
	go func() {
		defer close(rs.ended)
		if err := store.Run(ctx); err != nil {
			log.Error("allowlist store stopped", "err", err)
		}
	}()
	return rs, nil
}

// stop ends the store's refresh loop and waits for it.
func (rs *runningStore) stop() {
	rs.cancel()
	<-rs.ended
}

func describeStore(c allowlist.StoreConfig) string {
	switch {
	case c.File != "":
		return "file " + c.File
	case c.Redis != "":
		return "redis " + allowlist.RedactURL(c.Redis)
	}
	return "none"
}
