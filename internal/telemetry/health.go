package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fpsafe/fpsafe/scoring"
)

// Readiness is what /readyz reports: each engine's state, the allowlist snapshot's age
// and the sessions in flight. Ready is false only when fpsafe cannot serve its purpose;
// engines with open breakers do not make it unready, since fpsafe then fails open.
type Readiness struct {
	Ready     bool                `json:"ready"`
	Engines   []EngineReadiness   `json:"engines"`
	Allowlist *AllowlistReadiness `json:"allowlist,omitempty"`
	InFlight  int64               `json:"sessions_in_flight"`
}

// EngineReadiness is one engine's state.
type EngineReadiness struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Breaker  string `json:"breaker"`
	InFlight int    `json:"in_flight"`
}

// AllowlistReadiness describes the allowlist snapshot in force.
type AllowlistReadiness struct {
	Source     string  `json:"source"`
	Entries    int     `json:"entries"`
	LoadedAt   string  `json:"loaded_at,omitempty"`
	AgeSeconds float64 `json:"age_seconds"`
	LastError  string  `json:"last_error,omitempty"`
}

// EngineStates reads the current engines' states; the aggregator can change on reload.
type EngineStates func() []scoring.EngineState

// RegisterEngineStates exports fpsafe_engine_breaker_open{engine,type} (1 when the breaker
// is open or half-open) and fpsafe_engine_in_flight{engine}.
func (r *Recorder) RegisterEngineStates(f EngineStates) {
	r.reg.MustRegister(&stateCollector{f: f,
		open:     prometheus.NewDesc("fpsafe_engine_breaker_open", "1 when the engine's circuit breaker is open or half-open (engine skipped or probed).", []string{"engine", "type", "state"}, nil),
		inFlight: prometheus.NewDesc("fpsafe_engine_in_flight", "Scans in flight per engine.", []string{"engine"}, nil),
	})
}

type stateCollector struct {
	f        EngineStates
	open     *prometheus.Desc
	inFlight *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.open; ch <- c.inFlight }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.f() {
		v := 0.0
		if s.Breaker != scoring.Closed {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, v, s.Name, s.Type, string(s.Breaker))
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight), s.Name)
	}
}

// Handler serves /metrics, /healthz (the process answers) and /readyz (the JSON of ready();
// status 503 when not ready).
func (r *Recorder) Handler(ready func() Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		rd := ready()
		w.Header().Set("Content-Type", "application/json")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rd)
	})
	return mux
}

// Serve runs the metrics and health listener until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics %s: %w", ln.Addr(), err)
	}
	return nil
}
