package policy

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// Identifier establishes who sent a message (DKIM, SPF, DMARC). It never fails: a DNS
// failure is a temperror inside the Identity.
type Identifier interface {
	Identify(ctx context.Context, m *mail.Message) allowlist.Identity
}

// ResultsWriter is implemented by Identifiers that report their findings in an
// Authentication-Results field (allowlist.Authenticator does).
type ResultsWriter interface {
	AuthservID() string
	ResultsHeader(id allowlist.Identity) string
}

// Allowlist answers whether an identity is allowlisted, from an in-memory snapshot.
type Allowlist interface {
	Lookup(id allowlist.Identity, rcpts []string, now time.Time) *allowlist.Match
}

// Pipeline runs the engines and the identity checks of one message concurrently, looks up
// the allowlist and decides. The same pipeline serves the milter, `fpsafe check` and replay,
// so what an admin tests offline is what runs live.
type Pipeline struct {
	Engines    *scoring.Aggregator // nil = no engines
	Identifier Identifier          // nil = identity from the envelope only
	Allowlist  Allowlist           // nil = no allowlist
	Config     Config
	Log        *slog.Logger // nil = discard
	Now        func() time.Time
}

// Reserve is the part of the decision deadline kept back from the engines, so that the
// decision and the milter reply still fit when an engine uses its whole slice.
func Reserve(budget time.Duration) time.Duration {
	return min(max(budget/10, 50*time.Millisecond), time.Second)
}

// Run decides about m. It returns before ctx's deadline with whatever the engines said by
// then, and it never panics: a failure inside becomes an unscanned decision.
func (p *Pipeline) Run(ctx context.Context, m *mail.Message) (d Decision) {
	defer func() {
		if r := recover(); r != nil {
			p.log().Error("pipeline panicked", "queue_id", m.QueueID, "panic", r, "stack", string(debug.Stack()))
			d = p.Unscanned(m, fmt.Sprintf("internal error: %v", r))
		}
	}()
	engineCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		engineCtx, cancel = context.WithDeadline(ctx, dl.Add(-Reserve(time.Until(dl))))
		defer cancel()
	}

	var verdicts []scoring.Verdict
	var id allowlist.Identity
	var wg sync.WaitGroup
	if p.Engines != nil && p.Engines.Len() > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdicts = p.Engines.Scan(engineCtx, m)
		}()
	}
	id = p.identify(engineCtx, m)
	wg.Wait()

	in := Input{Verdicts: verdicts, Identity: id, Header: m.Header}
	if rw, ok := p.Identifier.(ResultsWriter); ok {
		in.AuthservID, in.AuthResults = rw.AuthservID(), rw.ResultsHeader(id)
	}
	if p.Allowlist != nil {
		in.Match = p.Allowlist.Lookup(id, m.Env.Rcpts, p.now())
	}
	return Decide(in, p.Config)
}

// identify runs the Identifier, or describes the sender from the envelope alone.
func (p *Pipeline) identify(ctx context.Context, m *mail.Message) (id allowlist.Identity) {
	if p.Identifier != nil {
		return p.Identifier.Identify(ctx, m)
	}
	id = allowlist.Identity{MailFrom: m.Env.MailFrom, Helo: m.Env.Helo, ClientIP: m.Env.ClientIP}
	addrs, n, ok := mail.FromAddresses(m)
	id.FromFields = n
	if ok && n == 1 && len(addrs) == 1 {
		id.From, id.FromDomain = addrs[0], mail.AddressDomain(addrs[0])
	}
	return id
}

func (p *Pipeline) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

func (p *Pipeline) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// Unscanned is the fail-open decision: the message is delivered with verdict unscanned and
// the reason, forged fpsafe headers still stripped.
func (p *Pipeline) Unscanned(m *mail.Message, why string) Decision {
	in := Input{Header: m.Header, Failure: why}
	if rw, ok := p.Identifier.(ResultsWriter); ok {
		in.AuthservID = rw.AuthservID() // forged results are stripped even when failing open
	}
	return Decide(in, p.Config)
}
