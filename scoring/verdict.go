// Package scoring asks the configured engines (clamd, spamd, rspamd, ...) about a message,
// all at once, and turns what they say into verdicts that policy can weigh. Engines that
// fail, stall or talk nonsense become verdicts too (outcome error, timeout or skipped):
// the Aggregator never returns an error, so no caller can forget to fail open.
//
// Each engine's wire client lives in a subpackage (scoring/clamd, scoring/spamd,
// scoring/rspamd); scoring/enginetest has fakes and fault servers for tests.
package scoring

import (
	"context"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
)

// Outcome is what one engine concluded about one message.
type Outcome string

// The outcomes. Clean, Spam, Suspicious and Virus are answers; Error, Timeout and Skipped
// mean the engine gave none, and the message counts as not scanned by it.
const (
	Clean      Outcome = "clean"
	Spam       Outcome = "spam"
	Suspicious Outcome = "suspicious" // doubtful: tags, never quarantines on its own
	Virus      Outcome = "virus"
	Error      Outcome = "error"
	Timeout    Outcome = "timeout"
	Skipped    Outcome = "skipped" // not asked, e.g. the message is above the engine's max_size
)

// Answered reports whether the engine actually gave a verdict on the message.
func (o Outcome) Answered() bool {
	return o == Clean || o == Spam || o == Suspicious || o == Virus
}

// Scale is the normalized score that stands for "exactly at this engine's own spam
// threshold". Native scores are mapped linearly so that every engine's threshold lands on
// Scale, then clamped to [MinNormalized, MaxNormalized] so that one engine's extreme
// score (SpamAssassin gives GTUBE 1000) cannot outvote the others alone.
const (
	Scale         = 5.0
	MinNormalized = -2 * Scale
	MaxNormalized = 4 * Scale
)

// Verdict is one engine's answer about one message, in the engine's own terms (Score,
// Threshold) and on fpsafe's common scale (Normalized).
type Verdict struct {
	Engine     string        `json:"engine"`
	Type       string        `json:"type,omitempty"`
	Outcome    Outcome       `json:"outcome"`
	Scored     bool          `json:"-"`                   // the engine gives spam scores (spamd, rspamd); AV engines do not
	Score      float64       `json:"score"`               // native score
	Threshold  float64       `json:"threshold,omitempty"` // native spam threshold
	Normalized float64       `json:"normalized"`          // Score on the common scale (see Scale)
	Weight     float64       `json:"weight"`              // from the engine's config
	Details    []string      `json:"details,omitempty"`   // virus names, rule symbols, ISTag...
	Reason     string        `json:"reason,omitempty"`    // why an error, timeout or skip happened
	Duration   time.Duration `json:"-"`
}

// Normalize maps a native score onto the common scale given the engine's threshold.
func Normalize(score, threshold float64) float64 {
	if threshold <= 0 {
		threshold = Scale
	}
	n := score / threshold * Scale
	return min(max(n, MinNormalized), MaxNormalized)
}

// Engine is one scanner. Scan must honour ctx's deadline. It returns an error only when it
// has no answer (connection refused, garbage reply, ...); the Aggregator turns that error
// into a Verdict, so engines never build failure verdicts themselves.
type Engine interface {
	Name() string
	Scan(ctx context.Context, m *mail.Message) (Verdict, error)
}

// Pinger is implemented by engines with a cheap health command (clamd PING, spamd PING,
// rspamd /ping). The circuit breaker uses it to probe an engine before trusting it again.
type Pinger interface {
	Ping(ctx context.Context) error
}
