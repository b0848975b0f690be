package scoring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fpsafe/fpsafe/internal/bytesize"
	"github.com/fpsafe/fpsafe/internal/mail"
)

// Configured pairs an engine with its (defaults-filled) config.
type Configured struct {
	Engine Engine
	Config EngineConfig
}

// Aggregator asks every configured engine about a message in parallel and returns one
// verdict per engine. It protects the pipeline from its engines: each scan is bounded by
// the caller's deadline and the engine's timeout, limited to max_concurrency scans in
// flight, skipped above max_size, and skipped while the engine's circuit breaker is open.
type Aggregator struct {
	cfg     Config
	engines []*guarded
	log     *slog.Logger
}

type guarded struct {
	Engine
	cfg     EngineConfig
	scored  bool
	slots   chan struct{}
	breaker *breaker
}

// NewAggregator builds an aggregator. log may be nil.
func NewAggregator(engines []Configured, cfg Config, log *slog.Logger) *Aggregator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Aggregator{cfg: cfg, log: log}
	for _, c := range engines {
		ec := c.Config.WithDefaults()
		a.engines = append(a.engines, &guarded{
			Engine:  c.Engine,
			cfg:     ec,
			scored:  Defaults[ec.Type].Scored,
			slots:   make(chan struct{}, max(ec.MaxConcurrency, 1)),
			breaker: &breaker{threshold: cfg.BreakerFailures, cooldown: cfg.BreakerCooldown},
		})
	}
	return a
}

// Len is the number of configured engines.
func (a *Aggregator) Len() int { return len(a.engines) }

// EngineState is an engine's health as readiness and metrics report it.
type EngineState struct {
	Name     string
	Type     string
	Breaker  BreakerState
	InFlight int
}

// States reports every engine's breaker state and scans in flight.
func (a *Aggregator) States() []EngineState {
	var s []EngineState
	for _, g := range a.engines {
		s = append(s, EngineState{g.cfg.Name, g.cfg.Type, g.breaker.state(), len(g.slots)})
	}
	return s
}

// Scan asks every engine about m at once and waits for all of them, or for ctx's deadline.
// The message's latency is the slowest engine's, not the sum. It never fails: an engine
// with no answer yields a verdict whose outcome says why.
func (a *Aggregator) Scan(ctx context.Context, m *mail.Message) []Verdict {
	out := make([]Verdict, len(a.engines))
	size := m.Size()
	var wg sync.WaitGroup
	for i, g := range a.engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = a.scanOne(ctx, g, m, size)
		}()
	}
	wg.Wait()
	return out
}

// scanOne runs one guarded scan and fills the common verdict fields.
func (a *Aggregator) scanOne(ctx context.Context, g *guarded, m *mail.Message, size int64) Verdict {
	start := time.Now()
	v := a.guard(ctx, g, m, size)
	v.Engine, v.Type, v.Weight = g.cfg.Name, g.cfg.Type, *g.cfg.Weight
	v.Scored = g.scored && v.Outcome.Answered()
	if v.Duration == 0 {
		v.Duration = time.Since(start)
	}
	if sigs := Signatures(v.Details); v.Outcome == Virus && len(sigs) > 0 && allSuspicious(a.cfg, sigs) {
		v.Outcome = Suspicious
	}
	if v.Scored && v.Normalized == 0 {
		v.Normalized = Normalize(v.Score, v.Threshold)
	}
	return v
}

func allSuspicious(c Config, sigs []string) bool {
	for _, s := range sigs {
		if !c.Suspicious(s) {
			return false
		}
	}
	return true
}

// guard applies size, breaker, concurrency and deadline rules around one engine's Scan.
func (a *Aggregator) guard(ctx context.Context, g *guarded, m *mail.Message, size int64) Verdict {
	if g.cfg.MaxSize > 0 && size > int64(g.cfg.MaxSize) {
		return Verdict{Outcome: Skipped, Reason: fmt.Sprintf("size %s above max_size %s", bytesize.Size(size), g.cfg.MaxSize)}
	}
	ok, probe := g.breaker.allow(time.Now())
	if !ok {
		return Verdict{Outcome: Error, Reason: "circuit open"}
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		g.breaker.release(probe) // busy is back-pressure, not a fault of the engine
		return Verdict{Outcome: Timeout, Reason: fmt.Sprintf("no free slot (max_concurrency %d)", g.cfg.MaxConcurrency)}
	}
	v := a.call(ctx, g, m, probe)
	g.breaker.record(v.Outcome.Answered(), time.Now())
	if !v.Outcome.Answered() {
		a.log.Warn("engine gave no verdict", "engine", g.cfg.Name, "outcome", v.Outcome, "reason", v.Reason, "queue_id", m.QueueID)
	}
	return v
}

// call runs Scan in its own goroutine so that a client that ignores ctx still cannot hold
// the message past the deadline. The slot is released only when Scan really returns, so a
// stuck engine applies back-pressure instead of piling up connections.
func (a *Aggregator) call(ctx context.Context, g *guarded, m *mail.Message, probe bool) Verdict {
	type result struct {
		v   Verdict
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-g.slots }()
		defer func() {
			if p := recover(); p != nil {
				a.log.Error("engine panicked", "engine", g.cfg.Name, "panic", p)
				done <- result{err: fmt.Errorf("panic: %v", p)}
			}
		}()
		if p, ok := g.Engine.(Pinger); ok && probe {
			if err := p.Ping(ctx); err != nil {
				done <- result{err: fmt.Errorf("circuit probe: %w", err)}
				return
			}
		}
		v, err := g.Engine.Scan(ctx, m)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return failure(ctx, r.err)
		}
		if !r.v.Outcome.Answered() && r.v.Outcome != "" {
			return r.v
		}
		if r.v.Outcome == "" {
			return Verdict{Outcome: Error, Reason: "engine returned no outcome"}
		}
		return r.v
	case <-ctx.Done():
		return failure(ctx, ctx.Err())
	}
}

// failure is the one place where an engine error becomes a verdict.
func failure(ctx context.Context, err error) Verdict {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Verdict{Outcome: Timeout, Reason: "no answer before the deadline"}
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return Verdict{Outcome: Timeout, Reason: err.Error()}
	}
	return Verdict{Outcome: Error, Reason: err.Error()}
}
