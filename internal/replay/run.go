package replay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"sync"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// Config is one configuration messages are decided under.
type Config struct {
	Name     string                 // how reports name it: the file, or "embedded default config"
	Pipeline *policy.Pipeline       // as `fpsafe check` builds it; its Engines are not used with NoEngines
	Scoring  scoring.Config         // [scoring], for the aggregators replay builds around recorded verdicts
	Engines  []scoring.EngineConfig // [[engine]] tables (defaults filled)
	Timeout  time.Duration          // the decision deadline of one message ([milter] decision_timeout)
}

// Options says how to replay.
type Options struct {
	// Configs are the configs to decide under: the first is the baseline, a second one is
	// compared with it.
	Configs []Config
	// NoEngines rebuilds every message's verdicts from its header (HeaderVerdicts) instead of
	// asking the configs' engines.
	NoEngines bool
	// Workers decide messages in parallel; 0 = GOMAXPROCS.
	Workers int
	// SpoolDir and SpoolMemory bound the memory of one message ([milter] spool_dir and
	// spool_memory): bodies above SpoolMemory (0 = 1 MiB) go to a temp file in SpoolDir
	// ("" = the system temp dir), removed after the decision.
	SpoolDir    string
	SpoolMemory int64
	// Progress receives progress lines, at the start, every ProgressInterval (default 1 s)
	// and at the end; nil = none. ProgressTTY rewrites one line with \r instead.
	Progress         io.Writer
	ProgressInterval time.Duration
	ProgressTTY      bool
	// Log receives the pipelines' warnings; nil = discard.
	Log *slog.Logger
}

// outcome of one message: its decisions under each config.
type outcome struct {
	index     int
	name      string
	messageID string
	subject   string
	from      string
	problem   string // malformed header, read error
	unread    bool   // the message could not be read (open or I/O error): no decision
	recorded  string // where --no-engines found the verdicts ("" = none)
	decisions []policy.Decision
}

// Run replays every message of src and returns the report. The error is the source's
// (e.g. an mbox that stopped being readable); the report then covers what was read.
func Run(ctx context.Context, src *Source, opt Options) (*Report, error) {
	if len(opt.Configs) == 0 {
		return nil, fmt.Errorf("replay: no config")
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if opt.SpoolMemory <= 0 {
		opt.SpoolMemory = 1 << 20
	}
	total := -1
	if opt.Progress != nil {
		if n, err := src.Count(); err == nil {
			total = n
		}
	}
	r := &runner{opt: opt, sameEngines: len(opt.Configs) > 1 && sameEngines(opt.Configs[0].Engines, opt.Configs[1].Engines)}
	rep := newReport(src, opt)
	prog := newProgress(opt, total)
	start := time.Now()

	jobs := make(chan job, workers)
	results := make(chan outcome, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				results <- r.decide(ctx, j)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for o := range results {
			rep.add(o)
			prog.step(rep.Messages + rep.Unreadable)
		}
	}()

	srcErr := src.each(func(it item) bool {
		if ctx.Err() != nil {
			return false
		}
		j := job{item: it}
		if it.r != nil { // an mbox message must be read before the next one
			sp := mail.NewSpool(opt.SpoolDir, opt.SpoolMemory)
			j.msg, j.problem, j.err = readMessage(it.r, sp)
		}
		jobs <- j
		return true
	})
	close(jobs)
	wg.Wait()
	close(results)
	<-done
	rep.finish(time.Since(start))
	prog.end(rep.Messages+rep.Unreadable, rep.Elapsed)
	if srcErr == nil {
		srcErr = ctx.Err()
	}
	return rep, srcErr
}

type job struct {
	item
	msg     *mail.Message // read already (mbox)
	problem string
	err     error
}

type runner struct {
	opt         Options
	sameEngines bool // compared configs ask the same engines: the second reuses the first's verdicts
}

// decide reads (if needed) and decides one message under every config.
func (r *runner) decide(ctx context.Context, j job) outcome {
	o := outcome{index: j.index, name: j.name}
	m, problem, err := j.msg, j.problem, j.err
	if m == nil {
		f, oerr := os.Open(j.file)
		if oerr != nil {
			o.unread, o.problem = true, oerr.Error()
			return o
		}
		m, problem, err = readMessage(f, mail.NewSpool(r.opt.SpoolDir, r.opt.SpoolMemory))
		f.Close()
	}
	defer m.Body.Remove()
	if err != nil { // not a malformed message but one that could not be read: not decided
		o.unread, o.problem = true, err.Error()
		return o
	}
	o.problem = problem
	o.messageID = display(m.Get("Message-ID"))
	o.subject = display(m.Get("Subject"))
	o.from = display(m.Get("From"))
	m.Env = Envelope(m)
	m.QueueID = j.name

	var recorded []scoring.Verdict
	if r.opt.NoEngines {
		recorded, o.recorded = HeaderVerdicts(m)
	}
	for i, c := range r.opt.Configs {
		var d policy.Decision
		switch {
		case r.opt.NoEngines && recorded == nil:
			d = c.Pipeline.Unscanned(m, "no verdict recorded in the message (X-FPSafe-Report, X-Spam-*)")
		case r.opt.NoEngines:
			d = r.run(ctx, c, m, recorded)
		case i > 0 && r.sameEngines:
			d = r.run(ctx, c, m, o.decisions[0].Verdicts)
		default:
			d = r.run(ctx, c, m, nil)
		}
		o.decisions = append(o.decisions, d)
	}
	return o
}

// run decides m under c: with c's own engines when recorded is nil, else with Recorded
// engines answering the recorded verdicts through an aggregator built on c's [scoring]
// section and, for the engines c names, c's engine settings (weight, max_size).
func (r *runner) run(ctx context.Context, c Config, m *mail.Message, recorded []scoring.Verdict) policy.Decision {
	p := *c.Pipeline
	if recorded != nil {
		engines := make([]scoring.Configured, 0, len(recorded))
		for _, v := range recorded {
			engines = append(engines, scoring.Configured{Engine: Recorded{V: cleanRecorded(v)}, Config: recordedConfig(v, c.Engines)})
		}
		p.Engines = scoring.NewAggregator(engines, c.Scoring, slog.New(slog.DiscardHandler))
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 8 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return p.Run(dctx, m)
}

// cleanRecorded prepares a verdict to be answered again. An AV engine's (unscored)
// "suspicious" is a virus hit that the suspicious_signatures in force then turned down: it
// goes back to "virus", and the aggregator re-classifies it under the replayed [scoring].
func cleanRecorded(v scoring.Verdict) scoring.Verdict {
	if !v.Scored && v.Outcome == scoring.Suspicious && len(v.Details) > 0 {
		v.Outcome = scoring.Virus
	}
	return v
}

// recordedConfig is the engine config a recorded verdict is replayed under: the replayed
// config's own table for an engine of that name and kind, else one made from the verdict
// (its weight, no size limit).
func recordedConfig(v scoring.Verdict, own []scoring.EngineConfig) scoring.EngineConfig {
	for _, ec := range own {
		if ec.Name == v.Engine && scoring.Defaults[ec.Type].Scored == v.Scored {
			return ec.WithDefaults()
		}
	}
	typ := "clamd" // the aggregator reads "gives scores" from the type
	if v.Scored {
		typ = "spamd"
	}
	w := v.Weight
	return scoring.EngineConfig{Name: v.Engine, Type: typ, Timeout: time.Minute, Weight: &w, MaxConcurrency: 1}
}

// sameEngines reports whether two configs ask the same engines the same way: the same
// [[engine]] tables, in the same order, but for weight and max_concurrency (which change
// how a verdict counts or how fast it comes, not what it is).
func sameEngines(a, b []scoring.EngineConfig) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(e scoring.EngineConfig) scoring.EngineConfig {
		e.Weight, e.MaxConcurrency = nil, 0
		return e
	}
	for i := range a {
		if !reflect.DeepEqual(key(a[i]), key(b[i])) {
			return false
		}
	}
	return true
}

// progress prints how far a run is.
type progress struct {
	w        io.Writer
	tty      bool
	every    time.Duration
	total    int
	start    time.Time
	last     time.Time
	lastDone int
}

func newProgress(opt Options, total int) *progress {
	if opt.Progress == nil {
		return nil
	}
	p := &progress{w: opt.Progress, tty: opt.ProgressTTY, every: opt.ProgressInterval, total: total, start: time.Now()}
	if p.every <= 0 {
		p.every = time.Second
	}
	p.last = p.start
	p.print(0, 0)
	return p
}

func (p *progress) step(done int) {
	if p == nil {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.print(done, now.Sub(p.start))
	}
}

func (p *progress) end(done int, elapsed time.Duration) {
	if p == nil {
		return
	}
	p.print(done, elapsed)
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) print(done int, elapsed time.Duration) {
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	of := ""
	if p.total >= 0 {
		pct := 100.0
		if p.total > 0 {
			pct = float64(done) * 100 / float64(p.total)
		}
		of = fmt.Sprintf("/%d (%.0f%%)", p.total, pct)
	}
	line := fmt.Sprintf("replay: %d%s messages, %.0f msg/s, %s", done, of, rate, elapsed.Round(100*time.Millisecond))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(p.w, line)
}
