package scoring_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/enginetest"
)

func msg() *mail.Message { return testmsg.Parse(testmsg.Ham(), mail.Envelope{}) }

func cfgFor(name, typ string) scoring.EngineConfig {
	return scoring.EngineConfig{Name: name, Type: typ, Address: "inet:127.0.0.1:1"}.WithDefaults()
}

func agg(engines ...scoring.Configured) *scoring.Aggregator {
	return scoring.NewAggregator(engines, scoring.DefaultConfig(), nil)
}

func fake(name, typ string, v scoring.Verdict, delay time.Duration) scoring.Configured {
	return scoring.Configured{Engine: &enginetest.Engine{EngineName: name, Verdict: v, Delay: delay}, Config: cfgFor(name, typ)}
}

// The engines run in parallel: three engines of 1 s each take 1 s, not 3 s (fake clock).
func TestParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := agg(
			fake("clamd", "clamd", scoring.Verdict{Outcome: scoring.Clean}, time.Second),
			fake("spamd", "spamd", scoring.Verdict{Outcome: scoring.Spam, Score: 10, Threshold: 5}, time.Second),
			fake("rspamd", "rspamd", scoring.Verdict{Outcome: scoring.Clean, Score: 1, Threshold: 15}, time.Second),
		)
		start := time.Now()
		vs := a.Scan(context.Background(), msg())
		if d := time.Since(start); d != time.Second {
			t.Fatalf("3 engines of 1s took %s; want 1s (parallel)", d)
		}
		if len(vs) != 3 || vs[0].Engine != "clamd" || vs[1].Engine != "spamd" || vs[2].Engine != "rspamd" {
			t.Fatalf("verdicts out of order: %+v", vs)
		}
		if !vs[1].Scored || vs[1].Normalized != 10 || vs[0].Scored {
			t.Fatalf("normalization: spamd %+v clamd %+v", vs[1], vs[0])
		}
		if vs[1].Duration != time.Second {
			t.Fatalf("duration %s", vs[1].Duration)
		}
	})
}

// A slow engine is cut off at its timeout; a client that ignores its context entirely is
// cut off too, and the others' answers are kept.
func TestDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		slowCfg := cfgFor("slow", "spamd")
		slowCfg.Timeout = 2 * time.Second
		a := agg(
			fake("fast", "clamd", scoring.Verdict{Outcome: scoring.Clean}, 10*time.Millisecond),
			scoring.Configured{Engine: &enginetest.Engine{EngineName: "slow", Verdict: scoring.Verdict{Outcome: scoring.Clean}, Delay: time.Hour}, Config: slowCfg},
			scoring.Configured{Engine: deaf{block}, Config: cfgFor("deaf", "rspamd")},
		)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		vs := a.Scan(ctx, msg())
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("scan took %s, want the 3s deadline", d)
		}
		if vs[0].Outcome != scoring.Clean || vs[1].Outcome != scoring.Timeout || vs[2].Outcome != scoring.Timeout {
			t.Fatalf("outcomes %s %s %s", vs[0].Outcome, vs[1].Outcome, vs[2].Outcome)
		}
		if vs[1].Duration != 2*time.Second {
			t.Fatalf("slow engine cut at %s, want its 2s timeout", vs[1].Duration)
		}
	})
}

// deaf ignores its context until the test ends.
type deaf struct{ block chan struct{} }

func (deaf) Name() string { return "deaf" }
func (d deaf) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	<-d.block
	return scoring.Verdict{Outcome: scoring.Clean}, nil
}

func TestErrorsBecomeVerdicts(t *testing.T) {
	big := cfgFor("small", "clamd")
	big.MaxSize = 100
	a := agg(
		scoring.Configured{Engine: &enginetest.Engine{EngineName: "err", Err: errors.New("clamd inet:x: connection refused")}, Config: cfgFor("err", "clamd")},
		scoring.Configured{Engine: &enginetest.Engine{EngineName: "panic", Panic: true}, Config: cfgFor("panic", "spamd")},
		scoring.Configured{Engine: &enginetest.Engine{EngineName: "small", Verdict: scoring.Verdict{Outcome: scoring.Clean}}, Config: big},
		scoring.Configured{Engine: &enginetest.Engine{EngineName: "empty"}, Config: cfgFor("empty", "rspamd")},
	)
	vs := a.Scan(context.Background(), msg())
	want := []struct {
		o      scoring.Outcome
		reason string
	}{{scoring.Error, "connection refused"}, {scoring.Error, "panic"}, {scoring.Skipped, "above max_size 100B"}, {scoring.Error, "no outcome"}}
	for i, w := range want {
		if vs[i].Outcome != w.o || !strings.Contains(vs[i].Reason, w.reason) {
			t.Errorf("%s: got %s (%s), want %s (%s)", vs[i].Engine, vs[i].Outcome, vs[i].Reason, w.o, w.reason)
		}
	}
	if e := a.States(); len(e) != 4 {
		t.Fatalf("states %v", e)
	}
}

func TestSuspiciousSignatures(t *testing.T) {
	a := agg(
		fake("c1", "clamd", scoring.Verdict{Outcome: scoring.Virus, Details: []string{"PUA.Win.Packer.Upx-1"}}, 0),
		fake("c2", "clamd", scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Heuristics.Encrypted.Zip"}}, 0),
		fake("c3", "clamd", scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Win.Test.EICAR_HDB-1"}}, 0),
		fake("c4", "clamd", scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Sanesecurity.Foxhole.Zip", "Win.Trojan.X"}}, 0),
	)
	vs := a.Scan(context.Background(), msg())
	for i, want := range []scoring.Outcome{scoring.Suspicious, scoring.Suspicious, scoring.Virus, scoring.Virus} {
		if vs[i].Outcome != want {
			t.Errorf("%v: %s, want %s", vs[i].Details, vs[i].Outcome, want)
		}
	}
}

// pingEngine fails scans until healthy, and counts pings.
type pingEngine struct {
	mu      sync.Mutex
	healthy bool
	scans   int
	pings   int
}

func (p *pingEngine) Name() string { return "flaky" }
func (p *pingEngine) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scans++
	if !p.healthy {
		return scoring.Verdict{}, errors.New("garbage reply")
	}
	return scoring.Verdict{Outcome: scoring.Clean}, nil
}
func (p *pingEngine) Ping(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pings++
	if !p.healthy {
		return errors.New("no PONG")
	}
	return nil
}

// After breaker_failures consecutive failures the engine is skipped until the cool-down
// ends; then a ping probes it, and a healthy engine is asked again.
func TestCircuitBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &pingEngine{}
		cfg := scoring.DefaultConfig()
		a := scoring.NewAggregator([]scoring.Configured{{Engine: e, Config: cfgFor("flaky", "clamd")}}, cfg, nil)
		for range cfg.BreakerFailures {
			if v := a.Scan(context.Background(), msg())[0]; v.Outcome != scoring.Error {
				t.Fatalf("outcome %s", v.Outcome)
			}
		}
		v := a.Scan(context.Background(), msg())[0]
		if v.Reason != "circuit open" || e.scans != cfg.BreakerFailures {
			t.Fatalf("breaker did not open: %+v after %d scans", v, e.scans)
		}
		if s := a.States()[0].Breaker; s != scoring.Open {
			t.Fatalf("state %s", s)
		}
		time.Sleep(cfg.BreakerCooldown)
		v = a.Scan(context.Background(), msg())[0] // probe: ping fails, breaker re-opens
		if e.pings != 1 || e.scans != cfg.BreakerFailures || !strings.Contains(v.Reason, "circuit probe") {
			t.Fatalf("probe: pings %d scans %d verdict %+v", e.pings, e.scans, v)
		}
		if v = a.Scan(context.Background(), msg())[0]; v.Reason != "circuit open" {
			t.Fatalf("breaker not re-opened after failed probe: %+v", v)
		}
		e.mu.Lock()
		e.healthy = true
		e.mu.Unlock()
		time.Sleep(cfg.BreakerCooldown)
		if v = a.Scan(context.Background(), msg())[0]; v.Outcome != scoring.Clean {
			t.Fatalf("healthy engine after cool-down: %+v", v)
		}
		if s := a.States()[0].Breaker; s != scoring.Closed {
			t.Fatalf("state %s after success", s)
		}
	})
}

// With max_concurrency 1, a second message waits for the slot and times out instead of
// opening another connection to a slow engine.
func TestConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := cfgFor("slow", "spamd")
		c.MaxConcurrency = 1
		c.Timeout = 3 * time.Second
		e := &enginetest.Engine{EngineName: "slow", Verdict: scoring.Verdict{Outcome: scoring.Clean}, Delay: 2 * time.Second}
		a := scoring.NewAggregator([]scoring.Configured{{Engine: e, Config: c}}, scoring.DefaultConfig(), nil)
		var wg sync.WaitGroup
		out := make([]scoring.Verdict, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), []time.Duration{3 * time.Second, 1500 * time.Millisecond}[i])
				defer cancel()
				out[i] = a.Scan(ctx, msg())[0]
			}()
			synctest.Wait()
		}
		wg.Wait()
		if out[0].Outcome != scoring.Clean || out[1].Outcome != scoring.Timeout || !strings.Contains(out[1].Reason, "no free slot") {
			t.Fatalf("got %+v / %+v", out[0], out[1])
		}
		if e.Calls() != 1 {
			t.Fatalf("engine called %d times, want 1", e.Calls())
		}
	})
}

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ score, thr, want float64 }{
		{5, 5, 5}, {15, 15, 5}, {1000, 5, scoring.MaxNormalized}, {-100, 5, scoring.MinNormalized}, {2.5, 5, 2.5}, {3, 0, 3},
	} {
		if got := scoring.Normalize(c.score, c.thr); got != c.want {
			t.Errorf("Normalize(%g, %g) = %g, want %g", c.score, c.thr, got, c.want)
		}
	}
}

// Metadata details (an ICAP server's istag=...) neither stop a PUA hit from being only
// suspicious nor show up as a virus name.
func TestSignaturesIgnoreMetadata(t *testing.T) {
	a := agg(fake("icap", "clamd", scoring.Verdict{Outcome: scoring.Virus, Details: []string{"PUA.Win.Tool", "istag=CI0001-42"}}, 0))
	v := a.Scan(context.Background(), msg())
	if v[0].Outcome != scoring.Suspicious {
		t.Fatalf("outcome %s", v[0].Outcome)
	}
	if s := scoring.Summarize(v); len(s.Suspicious) != 1 || s.Suspicious[0] != "icap: PUA.Win.Tool" {
		t.Fatalf("summary %+v", s)
	}
}
