package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fpsafe/fpsafe/milter"
)

// drainTimeout bounds how long SIGTERM waits for messages in flight.
const drainTimeout = 30 * time.Second

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
	if cfg.path == "" {
		log.Warn("no -config given: running on the embedded default config (no engines, no allowlist); every message is delivered as unscanned")
	}
	pipe, err := buildPipeline(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 2
	}
	srv, err := milter.New(cfg.Milter, pipe, log)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 1
	}
	ln, err := milter.Listen(cfg.Milter)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 1
	}
	log.Info("fpsafe listening", "listen", cfg.Milter.Listen, "config", cfg.Source(), "engines", len(cfg.Engines), "version", version)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	for {
		select {
		case err := <-served:
			if err != nil {
				log.Error("milter server stopped", "err", err)
				return 1
			}
			return 0
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				cfg = reload(cfg, srv, log)
				continue
			}
			log.Info("stopping: draining messages in flight", "signal", sig.String(), "in_flight", srv.InFlight(), "deadline", drainTimeout)
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			err := srv.Shutdown(ctx)
			cancel()
			if err != nil {
				log.Warn("shutdown deadline passed", "err", err)
			}
			<-served
			log.Info("stopped")
			return 0
		}
	}
}
