package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/telemetry"
	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// drainTimeout bounds how long SIGTERM waits for messages in flight.
const drainTimeout = 30 * time.Second

// daemon is a running `fpsafe serve`: the milter server, the config in force, the pipeline
// and the allowlist store it keeps fresh. The pipeline and the store change on SIGHUP while
// /metrics and /readyz read them, hence the atomic pointers.
type daemon struct {
	cfg      *Config
	log      *slog.Logger
	srv      *milter.Server
	pipe     atomic.Pointer[policy.Pipeline]
	store    atomic.Pointer[runningStore]
	decLog   *telemetry.LogFile // nil when decisions go to the operational log
	recorder *telemetry.Recorder
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
	if code, err := d.start(); err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return code
	}
	defer func() { d.store.Load().stop() }()
	ln, err := milter.Listen(cfg.Milter)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 1
	}
	stopMetrics, err := d.serveMetrics()
	if err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "fpsafe serve:", err)
		return 1
	}
	defer stopMetrics()
	log.Info("fpsafe listening", "listen", cfg.Milter.Listen, "metrics", cfg.Metrics.Listen, "config", cfg.Source(),
		"engines", len(cfg.Engines), "allowlist", describeStore(cfg.Allowlist), "version", version)
	return d.run(ln)
}

// start builds everything but the listeners; the int is the exit status on error.
func (d *daemon) start() (int, error) {
	decisions := d.log
	if p := d.cfg.Log.Decisions; p != "" {
		f, err := telemetry.OpenLogFile(p)
		if err != nil {
			return 1, err
		}
		d.decLog = f
		decisions = slog.New(slog.NewJSONHandler(f, nil))
	}
	d.recorder = telemetry.New(decisions)
	store, err := startStore(d.cfg.Allowlist, d.log)
	if err != nil {
		return 2, err
	}
	d.store.Store(store)
	pipe, err := buildPipeline(d.cfg, d.log, store.Store)
	if err != nil {
		return 2, err
	}
	d.pipe.Store(pipe)
	if d.srv, err = milter.New(d.cfg.Milter, pipe, d.log); err != nil {
		return 1, err
	}
	d.srv.OnDecision = d.recorder.Record
	d.gauges()
	return 0, nil
}

// gauges registers what is read at scrape time.
func (d *daemon) gauges() {
	r := d.recorder
	r.GaugeFunc("fpsafe_sessions_in_flight", "Messages between MAIL FROM and end-of-message.", func() float64 { return float64(d.srv.InFlight()) })
	r.GaugeFunc("fpsafe_spool_bytes", "Body bytes held for messages in flight (memory and spool files).", func() float64 { return float64(d.srv.SpoolBytes()) })
	r.GaugeFunc("fpsafe_allowlist_snapshot_age_seconds", "Age of the allowlist snapshot in force (0 without an allowlist).", func() float64 {
		if st := d.store.Load(); st.Store != nil && !st.LoadedAt().IsZero() {
			return time.Since(st.LoadedAt()).Seconds()
		}
		return 0
	})
	r.RegisterEngineStates(func() []scoring.EngineState { return d.pipe.Load().Engines.States() })
}

// serveMetrics starts the [metrics] listener, if configured.
func (d *daemon) serveMetrics() (stop func(), err error) {
	if d.cfg.Metrics.Listen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", d.cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := telemetry.Serve(ctx, ln, d.recorder.Handler(d.readiness), d.log); err != nil {
			d.log.Error("metrics listener stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// readiness is what /readyz reports.
func (d *daemon) readiness() telemetry.Readiness {
	rd := telemetry.Readiness{Ready: true, InFlight: d.srv.InFlight()}
	for _, s := range d.pipe.Load().Engines.States() {
		rd.Engines = append(rd.Engines, telemetry.EngineReadiness{Name: s.Name, Type: s.Type, Breaker: string(s.Breaker), InFlight: s.InFlight})
	}
	if st := d.store.Load(); st.Store != nil {
		snap := st.Snapshot()
		a := &telemetry.AllowlistReadiness{Source: snap.Source(), Entries: snap.Len()}
		if t := st.LoadedAt(); !t.IsZero() {
			a.LoadedAt, a.AgeSeconds = t.UTC().Format(time.RFC3339), time.Since(t).Seconds()
		}
		if err := st.LastError(); err != nil {
			a.LastError = err.Error()
		}
		rd.Allowlist = a
	}
	return rd
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
			if d.decLog != nil {
				d.decLog.Close()
			}
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
